"""The workflow engine seam: what a run job calls to do the actual work.

The engine (explore → plan → implement → validate → self-review → PR → evaluate) arrives in a later
release. Until then `execute` does no work and says so plainly, and the run job only drives the
status comment.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.runs import RunRecord

ENGINE_MISSING = (
    "No changes were made: the workflow engine (plan → implement → pull request) is not part of this "
    "version of Archon Bot yet. The request was validated and queued; upgrade the bot to run it."
)


@dataclass(frozen=True)
class WorkflowOutcome:
    summary: str


def execute(record: RunRecord) -> WorkflowOutcome:
    """Run the record's workflow. Currently: report that the engine is not installed."""
    return WorkflowOutcome(summary=ENGINE_MISSING)
