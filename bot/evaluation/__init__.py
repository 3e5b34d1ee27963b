"""The seven-dimension evaluation of a change: the rubric, the judge's tool schema and the stored result,
the signals measured without a model, and the pull request review that shows them.

Everything here is pure — no model calls and no I/O — so it is tested on hand-made diffs and golden files.
"""
