"""A repository's conventions for contributors, as the models read them. Pure.

Many repositories keep guidance for people and coding agents: `AGENTS.md`, `CLAUDE.md`, `CONTRIBUTING.md`,
`.github/copilot-instructions.md`. A run passes them (from the default branch) to the explore, plan and
implement prompts (`repo.conventions`) and to the judge, so the change follows the repository's style, layout
and test commands. They are written by whoever can push, and may be long or try to steer the model, so each
is bounded (`MAX_FILE_CHARS`, `MAX_TOTAL_CHARS`, with a note where text was cut) and fenced as repository
text (`bot.untrusted`): guidance to weigh, never rules that override the bot's. No file: "" — the prompts
then say nothing about conventions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bot.untrusted import clean, fence

#: In the order they are shown: the agent-specific files first, they are the most to the point.
CONVENTION_FILES = ("AGENTS.md", "CLAUDE.md", "CONTRIBUTING.md", ".github/copilot-instructions.md")
MAX_FILE_CHARS = 8_000
MAX_TOTAL_CHARS = 16_000
FENCE_KIND = "repository-file"
TRUNCATED = "({path} is cut short here: {more} more characters are not shown.)"
LEFT_OUT = "({path} is not shown: the files above already use the {total} characters passed on.)"
SAME_AS = "({path} has the same text as {original}.)"


@dataclass(frozen=True)
class ConventionFile:
    """One file as it is shown: its cleaned text, at most the bound, and how much was cut off."""

    path: str
    text: str
    cut: int = 0
    same_as: str | None = None


def collect(
    read: Callable[[str], str | None], paths: Iterable[str] = CONVENTION_FILES
) -> list[ConventionFile]:
    """The convention files `read` finds (None: absent), cleaned and bounded; a file with the text of an
    earlier one (a `CLAUDE.md` that points at `AGENTS.md`) is named, not repeated."""
    found: list[ConventionFile] = []
    seen: dict[str, str] = {}
    budget = MAX_TOTAL_CHARS
    for path in paths:
        text = clean(read(path))
        if not text:
            continue
        if text in seen:
            found.append(ConventionFile(path, "", same_as=seen[text]))
            continue
        seen[text] = path
        shown = text[: max(0, min(MAX_FILE_CHARS, budget))]
        budget -= len(shown)
        found.append(ConventionFile(path, shown, cut=len(text) - len(shown)))
    return found


def render(files: Iterable[ConventionFile]) -> str:
    """Each file fenced as repository text, with the bot's notes outside the fences; "" for no files."""
    parts = []
    for file in files:
        if file.same_as is not None:
            parts.append(SAME_AS.format(path=file.path, original=file.same_as))
            continue
        if not file.text:
            parts.append(LEFT_OUT.format(path=file.path, total=MAX_TOTAL_CHARS))
            continue
        parts.append(fence(FENCE_KIND, file.text, path=file.path))
        if file.cut:
            parts.append(TRUNCATED.format(path=file.path, more=file.cut))
    return "\n\n".join(parts)


def read_conventions(read: Callable[[str], str | None]) -> str:
    """What the prompts show: `render(collect(read))`."""
    return render(collect(read))
