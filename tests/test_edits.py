"""The edit-matching rules (bot/agent/edits.py): each fallback, the uniqueness rule, the closest region, and
properties: an exact match always wins, and a fallback changes nothing outside the region it matched."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.agent.edits import (
    EditRefused,
    apply_edit,
    closest_region,
    numbered,
    split_lines,
    strip_line_numbers,
)

SOURCE = (
    "class Greeter:\n"
    "    def greet(self, name):\n"
    "        if name:\n"
    "            return f'hello {name}'\n"
    "        return 'hello'\n"
)


def numbered_copy(text: str, first: int) -> str:
    """What a model copies out of read_file's output."""
    return "\n".join(numbered(n, line) for n, line in enumerate(text.split("\n"), first))


def test_exact_match_is_applied_exactly() -> None:
    applied = apply_edit(SOURCE, "'hello'\n", "'hi'\n")
    assert applied.rules == () and applied.outcome == "exact" and applied.describe() == "applied exactly"
    assert applied.text == SOURCE.replace("'hello'\n", "'hi'\n") and applied.line == 5


def test_line_number_prefixes_are_stripped_from_both_strings() -> None:
    old = numbered_copy("        if name:\n            return f'hello {name}'", 3)
    new = numbered_copy("        if name:\n            return f'hi {name}'", 3)
    applied = apply_edit(SOURCE, old, new)
    assert applied.rules == ("line_numbers",) and applied.line == 3
    assert applied.text == SOURCE.replace("f'hello {name}'", "f'hi {name}'")
    assert applied.describe() == "applied by rule: line-number prefixes stripped"


def test_line_numbers_must_be_consecutive_prefixes_on_every_line() -> None:
    assert strip_line_numbers("     3\ta\n     4\tb\n") == "a\nb\n"
    assert strip_line_numbers("     3\ta\n     5\tb") is None
    assert strip_line_numbers("     3\ta\nb") is None
    assert strip_line_numbers("     3\ta\n     4\n     5\tc") == "a\n\nc"  # a blank line's lost tab
    assert strip_line_numbers("new line\n     4\tb", lenient=True) == "new line\nb"


def test_trailing_whitespace_and_line_endings_are_ignored() -> None:
    crlf = SOURCE.replace("\n", "\r\n")
    applied = apply_edit(crlf, "        return 'hello'   \n", "        return 'bye'\n")
    assert applied.rules == ("whitespace",)
    assert applied.text == crlf.replace("return 'hello'\r\n", "return 'bye'\r\n")
    spaced = SOURCE.replace("if name:", "if name:  ")
    applied = apply_edit(spaced, "        if name:\n", "        if name is not None:\n")
    assert applied.rules == ("whitespace",) and "if name is not None:\n" in applied.text


def test_indentation_off_by_one_level_is_reindented() -> None:
    old = "    if name:\n        return f'hello {name}'\n"
    new = "    if name:\n        name = name.title()\n        return f'hello {name}'\n"
    applied = apply_edit(SOURCE, old, new)
    assert applied.rules == ("indentation",)
    assert "        if name:\n            name = name.title()\n            return" in applied.text


def test_tabs_for_spaces_are_an_indentation_matter() -> None:
    old = "\tdef greet(self, name):\n\t\tif name:\n"
    new = "\tdef greet(self, name=None):\n\t\tif name:\n"
    applied = apply_edit(SOURCE, old, new)
    assert applied.rules == ("indentation",)
    assert applied.text == SOURCE.replace("name):", "name=None):")
    tabbed = SOURCE.replace("    ", "\t")
    applied = apply_edit(tabbed, "    return 'hello'\n", "    return 'bye'\n")
    assert applied.text == tabbed.replace("return 'hello'", "return 'bye'")


def test_rules_chain_line_numbers_then_indentation() -> None:
    old = numbered_copy("\t\treturn 'hello'", 5)
    applied = apply_edit(SOURCE, old, numbered_copy("\t\treturn 'bye'", 5))
    assert applied.rules == ("line_numbers", "indentation") and applied.outcome == "line_numbers+indentation"
    assert applied.text == SOURCE.replace("return 'hello'", "return 'bye'")


def test_non_uniform_indentation_does_not_match() -> None:
    with pytest.raises(EditRefused, match="not found"):
        apply_edit(SOURCE, "if name:\nreturn f'hello {name}'\n", "x\n")  # offsets 8 and 12


def test_ambiguous_matches_are_refused_with_their_lines() -> None:
    text = "a:\n    x = 1\nb:\n        x = 1\n"
    with pytest.raises(EditRefused, match=r"matches 2 places by rule indentation \(lines 2, 4\)"):
        apply_edit(text, "\tx = 1\n", "\tx = 2\n")
    with pytest.raises(EditRefused, match=r"occurs 2 times in f \(lines 2, 4\)"):
        apply_edit(text, "x = 1", "x = 2", path="f")
    with pytest.raises(EditRefused, match=r"matches 2 places by rule whitespace \(lines 1, 3\)"):
        apply_edit("v = 1 \nw\nv = 1\t\n", "v = 1\n", "v = 2\n")


def test_strict_mode_applies_only_exact_matches() -> None:
    with pytest.raises(EditRefused) as refused:
        apply_edit(SOURCE, "\t\treturn 'hello'\n", "x\n", forgiving=False)
    assert "forgiven" not in str(refused.value) and "lines 5-5" in str(refused.value)


def test_closest_region_is_numbered_with_context() -> None:
    first, last, similarity, excerpt = closest_region(SOURCE, "return f'helo {nam}'\n")  # type: ignore[misc]
    assert (first, last) == (4, 4) and similarity > 0.8
    assert excerpt.splitlines()[0] == numbered(2, "    def greet(self, name):")
    assert excerpt.splitlines()[-1] == numbered(5, "        return 'hello'")
    assert closest_region(SOURCE, "zzzzzzzzzzzzzzzzzzzz") is None


# --- properties


lines = st.lists(st.text(alphabet=" \tabx=:1", max_size=8), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    lines=lines, start=st.integers(0, 11), size=st.integers(1, 4), new=st.text(alphabet="ab \n", max_size=10)
)
def test_an_exact_match_is_always_preferred(lines: list[str], start: int, size: int, new: str) -> None:
    text = "\n".join(lines) + "\n"
    old = "\n".join(lines[start : start + size])
    if not old or old == new or text.count(old) != 1:
        return
    assert apply_edit(text, old, new).text == text.replace(old, new)
    assert apply_edit(text, old, new).rules == ()


@settings(max_examples=300, deadline=None)
@given(
    lines=lines,
    start=st.integers(0, 11),
    size=st.integers(1, 4),
    mangle=st.sampled_from(["numbers", "tabs", "trailing", "indent"]),
    new=st.text(alphabet="ab \n", max_size=10),
)
def test_a_fallback_never_changes_text_outside_its_region(
    lines: list[str], start: int, size: int, mangle: str, new: str
) -> None:
    text = "\n".join(lines) + "\n"
    region = lines[start : start + size]
    if not region:
        return
    old = "\n".join(_mangled(line, mangle) for line in region)
    if mangle == "numbers":
        old = numbered_copy("\n".join(region), start + 1)
    try:
        applied = apply_edit(text, old, new)
    except EditRefused:
        return
    if not applied.rules:
        return
    file_lines, result_lines = split_lines(text), split_lines(applied.text)
    first = applied.line - 1
    assert result_lines[:first] == file_lines[:first]
    matched = len(split_lines(old)) if "line_numbers" not in applied.rules else len(region)
    tail = file_lines[first + matched :]
    assert not tail or result_lines[len(result_lines) - len(tail) :] == tail


def _mangled(line: str, how: str) -> str:
    if how == "tabs":
        return line.replace("    ", "\t")
    if how == "trailing":
        return line.rstrip() + " "
    if how == "indent":
        return "    " + line
    return line
