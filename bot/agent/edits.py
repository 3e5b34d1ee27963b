"""Matching an edit's `old_string` against a file, forgivingly but safely. Pure functions over strings.

Cheap implementers copy text the way `read_file` showed it (with its line-number prefixes), with tabs for
spaces, with trailing whitespace lost, or one indentation level off. An exact match is always tried first
and always wins; only when there is none, these rules are tried in order:

1. `line_numbers`: every line of `old_string` carries a `read_file` prefix (`numbered`), with consecutive
   numbers: the prefixes are stripped from it and from the lines of `new_string` that carry one.
2. `whitespace`: whole lines compared without their line endings and trailing whitespace (the replacement
   takes the file's line endings, and loses trailing whitespace too: a sloppy copy's, never meant).
3. `indentation`: whole lines compared without any leading whitespace, tabs and spaces alike (so "tabs for
   spaces" is handled here, not by rule 2); the file's lines must all be indented by one same offset from
   `old_string`'s, and `new_string` is re-indented by that offset in the file's own style (tabs or spaces).

A loose rule applies only when it finds exactly one place; two or more are refused with their line numbers.
Whatever rule applies, only the matched region changes: the result is `text[:start] + new + text[end:]`.
When nothing matches, `closest_region` finds the most similar lines (difflib) to show the model.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

Rule = Literal["line_numbers", "whitespace", "indentation"]
RULE_TEXT: dict[str, str] = {
    "line_numbers": "line-number prefixes stripped",
    "whitespace": "line endings and trailing whitespace ignored",
    "indentation": "indentation ignored, new_string re-indented",
}
EXACT = "exact"
REFUSED = "refused"
#: How `read_file` prints line `number`; the `line_numbers` rule undoes exactly this.
_PREFIX = re.compile(r"^ *(\d+)\t")
_BARE_PREFIX = re.compile(r"^ *(\d+)$")  # a numbered empty line whose trailing tab was lost
_INDENT = re.compile(r"^[ \t]*")
DEFAULT_INDENT = 4
CONTEXT_LINES = 2
MIN_SIMILARITY = 0.4
NOT_FOUND = (
    "old_string not found in {path}; it must match the file exactly, including whitespace and "
    "indentation (line-number prefixes, trailing whitespace and a uniform indentation offset are forgiven)."
)
NOT_FOUND_STRICT = (
    "old_string not found in {path}; it must match the file exactly, including whitespace and indentation."
)
CLOSEST = "The closest text in {path} is at lines {first}-{last} ({similarity:.0%} similar):\n{excerpt}"
NOTHING_CLOSE = "Nothing in {path} resembles it; call read_file to copy the exact text."
COPY_HINT = "Copy old_string from these lines (without the line-number prefixes) and call again."
EXACT_AMBIGUOUS = (
    "old_string occurs {count} times in {path} (lines {lines}); include more surrounding lines to make it "
    "unique, or set replace_all to true to replace every occurrence"
)
LOOSE_AMBIGUOUS = (
    "old_string is not in {path} exactly, and matches {count} places by rule {rule} (lines {lines}); "
    "include more surrounding lines to make it unique. A loose match is applied only where it is unique."
)


class EditRefused(Exception):
    """The edit cannot be applied safely; the message tells the model what to send instead."""


@dataclass(frozen=True)
class Applied:
    """An applied edit: the new text, how it matched (`rules` empty: exactly) and where."""

    text: str
    rules: tuple[Rule, ...]
    count: int
    line: int

    @property
    def outcome(self) -> str:
        """`exact`, or the rules joined by `+` (for the ledger)."""
        return "+".join(self.rules) or EXACT

    def describe(self) -> str:
        if not self.rules:
            return "applied exactly"
        return "applied by rule: " + ", ".join(RULE_TEXT[rule] for rule in self.rules)


def numbered(number: int, line: str) -> str:
    """One line as `read_file` shows it (like `cat -n`)."""
    return f"{number:6}\t{line}"


def apply_edit(
    text: str, old: str, new: str, *, replace_all: bool = False, forgiving: bool = True, path: str = "file"
) -> Applied:
    """`text` with `old` replaced by `new`: exactly if `old` occurs, else (when `forgiving`) by the first
    rule that finds one unique place. Raises `EditRefused` with what the model should do."""
    count = text.count(old)
    if count == 1 or (count > 1 and replace_all):
        return Applied(text.replace(old, new), (), count, _line_of(text, text.index(old)))
    if count > 1:
        raise EditRefused(EXACT_AMBIGUOUS.format(count=count, path=path, lines=_where(text, old)))
    if forgiving:
        applied = _loose(text, old, new, replace_all=replace_all, path=path)
        if applied is not None:
            return applied
    raise EditRefused(not_found(text, old, path=path, forgiving=forgiving))


def not_found(text: str, old: str, *, path: str, forgiving: bool = True) -> str:
    head = (NOT_FOUND if forgiving else NOT_FOUND_STRICT).format(path=path)
    region = closest_region(text, strip_line_numbers(old) or old)
    if region is None:
        return f"{head} {NOTHING_CLOSE.format(path=path)}"
    first, last, similarity, excerpt = region
    shown = CLOSEST.format(path=path, first=first, last=last, similarity=similarity, excerpt=excerpt)
    return f"{head}\n{shown}\n{COPY_HINT}"


# --- the loose rules ---------------------------------------------------------------------------------


def _loose(text: str, old: str, new: str, *, replace_all: bool, path: str) -> Applied | None:
    rules: tuple[Rule, ...] = ()
    stripped = strip_line_numbers(old)
    if stripped is not None:
        new_stripped = strip_line_numbers(new, lenient=True)
        old, new, rules = stripped, new if new_stripped is None else new_stripped, ("line_numbers",)
        count = text.count(old)
        if count == 1 or (count > 1 and replace_all):
            return Applied(text.replace(old, new), rules, count, _line_of(text, text.index(old)))
        if count > 1:
            lines = _where(text, old)
            raise EditRefused(
                LOOSE_AMBIGUOUS.format(count=count, path=path, rule="line_numbers", lines=lines)
            )
    for rule in ("whitespace", "indentation"):
        found = _line_matches(text, old, new, rule)
        if len(found) > 1:
            lines = ", ".join(str(m.line) for m in found)
            raise EditRefused(LOOSE_AMBIGUOUS.format(count=len(found), path=path, rule=rule, lines=lines))
        if found:
            match = found[0]
            result = text[: match.start] + match.replacement + text[match.end :]
            return Applied(result, (*rules, rule), 1, match.line)
    return None


def strip_line_numbers(text: str, *, lenient: bool = False) -> str | None:
    """`text` without `read_file`'s prefixes, or None when it does not carry them.

    Strict (for `old_string`): every line has a prefix and the numbers are consecutive, so ordinary text
    that happens to start with a number and a tab is left alone. Lenient (for `new_string`, where the model
    may have added lines of its own): the prefix is removed from the lines that have one."""
    lines = text.split("\n")
    body = lines[:-1] if lines[-1] == "" and len(lines) > 1 else lines
    numbers = [_prefix_number(line) for line in body]
    if not _carries_prefixes(numbers, lenient=lenient):
        return None
    return "\n".join(_strip_prefix(line) for line in lines)


def _carries_prefixes(numbers: list[int | None], *, lenient: bool) -> bool:
    if lenient:
        return any(n is not None for n in numbers)
    if None in numbers:
        return False
    return all(b == a + 1 for a, b in itertools.pairwise(numbers))  # type: ignore[operator]


def _prefix_number(line: str) -> int | None:
    found = _PREFIX.match(line) or _BARE_PREFIX.match(line)
    return int(found.group(1)) if found else None


def _strip_prefix(line: str) -> str:
    if found := _PREFIX.match(line):
        return line[found.end() :]
    return "" if _BARE_PREFIX.match(line) else line


@dataclass(frozen=True)
class _Match:
    start: int
    end: int
    line: int
    replacement: str


def _line_matches(text: str, old: str, new: str, rule: str) -> list[_Match]:
    """Every place whose whole lines equal `old`'s under `rule`, with the replacement for it."""
    file_lines = split_lines(text)
    old_lines = split_lines(old)
    if not old_lines or not any(line.strip() for line in old_lines):
        return []
    key = _key(rule)
    wanted = [key(line) for line in old_lines]
    keys = [key(line) for line in file_lines]
    found = []
    for index in range(len(file_lines) - len(old_lines) + 1):
        if keys[index : index + len(old_lines)] != wanted:
            continue
        region = file_lines[index : index + len(old_lines)]
        replacement = _replacement(region, old_lines, new, rule, file_lines)
        if replacement is None:
            continue
        start = sum(len(line) for line in file_lines[:index])
        end = start + sum(len(line) for line in region)
        if not old.endswith("\n"):
            end -= len(_eol(region[-1]))  # the last line's ending stays, as an exact match would keep it
        found.append(_Match(start, end, index + 1, replacement))
    return found


def _key(rule: str) -> Callable[[str], str]:
    if rule == "whitespace":
        return lambda line: line.rstrip()
    return lambda line: line.strip()


def _replacement(
    region: list[str], old_lines: list[str], new: str, rule: str, file_lines: list[str]
) -> str | None:
    """`new` in the file's line endings, re-indented for the `indentation` rule; None when the region's
    indentation is not one uniform offset from `old`'s."""
    eol = _eol(region[0]) or _eol(region[-1]) or "\n"
    new_lines = [line.rstrip() for line in split_lines(new)]  # a loose copy's trailing blanks: never meant
    if rule == "indentation":
        style = _Style.of(file_lines)
        offset = _offset(region, old_lines, style)
        if offset is None:
            return None
        reindented = [_reindent(line, offset, style) for line in new_lines]
        if None in reindented:
            return None
        new_lines = reindented  # type: ignore[assignment]
    body = eol.join(new_lines)
    return body + eol if new.endswith("\n") else body


@dataclass(frozen=True)
class _Style:
    """How the file indents: with tabs, or with spaces `unit` wide (a model's tab stands for one unit)."""

    tabs: bool
    unit: int

    @classmethod
    def of(cls, lines: Sequence[str]) -> _Style:
        indents = [_INDENT.match(line).group() for line in lines if line.strip()]  # type: ignore[union-attr]
        tabbed = sum(i.startswith("\t") for i in indents)
        spaced = [len(i) for i in indents if i and not i.startswith("\t")]
        unit = math.gcd(*spaced) if spaced else DEFAULT_INDENT
        return cls(tabs=tabbed > len(spaced), unit=unit if unit >= 2 else DEFAULT_INDENT)

    def columns(self, indent: str) -> int:
        return sum(self.unit if char == "\t" else 1 for char in indent)

    def render(self, columns: int) -> str:
        if self.tabs:
            return "\t" * (columns // self.unit) + " " * (columns % self.unit)
        return " " * columns


def _offset(region: list[str], old_lines: list[str], style: _Style) -> int | None:
    offsets = {
        style.columns(_indent(have)) - style.columns(_indent(want))
        for have, want in zip(region, old_lines, strict=True)
        if want.strip()
    }
    return offsets.pop() if len(offsets) == 1 else None


def _reindent(line: str, offset: int, style: _Style) -> str | None:
    if not line.strip():
        return ""
    columns = style.columns(_indent(line)) + offset
    if columns < 0:
        return None
    return style.render(columns) + line.lstrip(" \t")


def _indent(line: str) -> str:
    return _INDENT.match(line).group()  # type: ignore[union-attr]


# --- helpers -----------------------------------------------------------------------------------------


def split_lines(text: str) -> list[str]:
    """Lines with their endings (`\\n` only, as the tools number them); no empty last line."""
    return re.findall(r"[^\n]*\n|[^\n]+\Z", text)


def _eol(line: str) -> str:
    if line.endswith("\r\n"):
        return "\r\n"
    return "\n" if line.endswith("\n") else ""


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _where(text: str, old: str) -> str:
    """The line numbers where `old` starts, e.g. `3, 9, 12`."""
    return ", ".join(str(_line_of(text, m.start())) for m in re.finditer(re.escape(old), text))


def closest_region(text: str, old: str) -> tuple[int, int, float, str] | None:
    """The file lines most like `old` (first, last, similarity, numbered excerpt with context), or None
    when nothing is at least `MIN_SIMILARITY` alike."""
    file_lines = [line.rstrip("\r\n") for line in split_lines(text)]
    old_lines = [line.rstrip("\r\n") for line in split_lines(old)] or [old]
    size = min(len(old_lines), len(file_lines))
    if not size:
        return None
    wanted = "\n".join(line.strip() for line in old_lines)
    matcher = difflib.SequenceMatcher(autojunk=False)
    matcher.set_seq2(wanted)
    best, best_index = 0.0, 0
    for index in range(len(file_lines) - size + 1):
        matcher.set_seq1("\n".join(line.strip() for line in file_lines[index : index + size]))
        if matcher.real_quick_ratio() <= best or matcher.quick_ratio() <= best:
            continue
        ratio = matcher.ratio()
        if ratio > best:
            best, best_index = ratio, index
    if best < MIN_SIMILARITY:
        return None
    first, last = best_index + 1, best_index + size
    low, high = max(1, first - CONTEXT_LINES), min(len(file_lines), last + CONTEXT_LINES)
    excerpt = "\n".join(numbered(n, file_lines[n - 1]) for n in range(low, high + 1))
    return first, last, best, excerpt
