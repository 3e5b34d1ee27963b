"""What can be measured about a change without a model, and where it contradicts the judge.

`measure` reads the diff, the plan and the validation results:

- Files named in the plan: paths in backticks (`bot/x.py`, `bot/x.py:12`) and bare tokens with a slash
  (bot/x.py), read from the plan's "Files to change" section when it has one that names any, else from the
  whole plan. Fenced code blocks and URLs are skipped; a bare token without a slash (`Node.js`) counts only
  inside that section. A token is a path when its last part has a known file extension, is a known
  extensionless file (`Makefile`) or a dotfile, or it ends with `/` (a directory: any file under it counts).
  A named path matches a touched file equal to it or ending in `/<named>`, so `rubric.py` matches
  `bot/evaluation/rubric.py`.
- planned = touched files the plan names; unplanned = touched − planned; missed = named entries no touched
  file matches. Without a plan there is nothing to compare with: `files_named` and `unplanned` are None
  (not "no unplanned files"), `planned` and `missed` are empty, and no plan-based flag is raised.
- Tests: files added or modified (not removed) whose path follows a test convention.
- Generated: lock files, vendored directories (anywhere), `dist/` and `build/` at the top level, minified
  and protobuf output, and files whose first lines, where the diff shows them, say they are generated.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from pathlib import PurePosixPath

from pydantic import BaseModel, ConfigDict, Field
from unidiff import PatchedFile, PatchSet

from bot.evaluation.rubric import CRITERIA, MAX_PER_DIMENSION, Dimension, format_points
from bot.validation.schema import Evidence

HIGH_SCORE = 8.0
"""A mean score at or above this is "high": a flag fires when the measurements contradict it."""
UNPLANNED_FILES_WARNING = 3
"""This many files changed outside the plan contradict a high scope score."""
HEADER_LINES = 5
"""How many first lines of a file are searched for a "generated" notice."""
LISTED_FILES = 5
"""Files named in one flag before "and N more"."""

TEST_DIRS = frozenset({"tests", "test", "__tests__", "spec", "specs"})
TEST_NAMES = (
    "test_*.py",
    "*_test.py",
    "conftest.py",
    "*_test.go",
    "*_test.rb",
    "*_spec.rb",
    "*.test.*",
    "*.spec.*",
    "*Test.java",
    "*Tests.java",
    "*Test.kt",
    "*Tests.cs",
    "*Test.php",
    "*_test.exs",
    "*_test.dart",
)
LOCK_NAMES = ("*.lock", "package-lock.json", "npm-shrinkwrap.json", "pnpm-lock.yaml", "go.sum", "bun.lockb")
VENDORED_DIRS = frozenset({"vendor", "third_party", "third-party", "node_modules"})
BUILD_DIRS = frozenset({"dist", "build"})
GENERATED_NAMES = (
    "*.min.js",
    "*.min.css",
    "*_pb2.py",
    "*_pb2_grpc.py",
    "*.pb.go",
    "*.pb.h",
    "*.pb.cc",
    "*.generated.*",
    "*.g.dart",
)
GENERATED_NOTICE = re.compile(
    r"do not edit|@generated|auto-?generated|\bgenerated (?:by|from|with|automatically)\b"
    r"|\b(?:code|file) (?:is |was )?(?:automatically )?generated\b",
    re.IGNORECASE,
)

KNOWN_EXTENSIONS = frozenset(
    {
        *("py", "pyi", "ipynb", "rb", "go", "rs", "java", "kt", "kts", "scala", "groovy", "c", "h", "cc"),
        *("cpp", "hpp", "cs", "swift", "m", "php", "pl", "sh", "bash", "zsh", "ps1", "sql", "ex", "exs"),
        *("erl", "hs", "lua", "r", "jl", "dart", "proto", "graphql", "gql", "tf", "hcl", "mk", "cmake"),
        *("gradle", "mod", "js", "jsx", "mjs", "cjs", "ts", "tsx", "vue", "svelte", "html", "htm", "css"),
        *("scss", "sass", "less", "md", "rst", "txt", "toml", "yml", "yaml", "json", "jsonl", "ini", "cfg"),
        *("conf", "env", "xml", "lock", "sum", "csv", "svg", "j2", "jinja", "tmpl", "tpl"),
    }
)
EXTENSIONLESS_FILES = frozenset(
    {"Makefile", "Dockerfile", "Containerfile", "Procfile", "Gemfile", "Rakefile", "Justfile", "LICENSE"}
)

_FENCE = re.compile(r"^\s*(```|~~~).*?^\s*\1[^\n]*$", re.MULTILINE | re.DOTALL)
_PLAN_TOKEN = re.compile(r"`([^`\n]+)`|(\S+://\S+)|([\w./-]+)")  # a backticked span, a URL, a bare token
_LOCATION = re.compile(r"(?::\d+(?:-\d+)?|#L\d+(?:-L?\d+)?)$")
_PATH = re.compile(r"[\w.-]+(?:/[\w.-]+)*/?")
_SECTION = re.compile(
    r"^\s*(?:#{1,6}\s*)?(?:\*\*|__)?\s*files?\s+to\s+(?:change|modify|edit|touch|create)\b", re.IGNORECASE
)
_HEADING = re.compile(r"^\s*(?:#{1,6}\s|(?:\*\*|__)[^*_]+(?:\*\*|__):?\s*$)")


class Signals(BaseModel):
    """Facts about a change, measured from its diff, plan and validation runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    files_touched: list[str] = Field(default_factory=list, description="Every file the diff changes.")
    files_named: list[str] | None = Field(None, description="Paths the plan names; None: no plan.")
    planned: list[str] = Field(default_factory=list, description="Touched files the plan names.")
    unplanned: list[str] | None = Field(None, description="Touched files it does not; None: no plan.")
    missed: list[str] = Field(default_factory=list, description="Named paths the diff does not touch.")
    lines_added: int = 0
    lines_removed: int = 0
    tests_changed: list[str] = Field(default_factory=list, description="Test files added or modified.")
    generated: dict[str, str] = Field(
        default_factory=dict, description="Lock, vendored or generated files changed: path → what it is."
    )
    binary_files: list[str] = Field(default_factory=list)
    validation_before: bool | None = Field(
        None, description="Validation passed before the change; None: not run."
    )
    validation_after: bool | None = Field(
        None, description="Validation passed after the change; None: not run."
    )
    validation: str | None = Field(None, description="The comparison with the merge base, in one line.")
    new_failures: list[str] = Field(default_factory=list, description="Tests the change broke.")
    pre_existing_failures: list[str] = Field(
        default_factory=list, description="Tests failing on the merge base too: not the change's doing."
    )
    fix_proof: str | None = Field(
        None, description="The change's new tests on the old code: fail there, pass here?"
    )

    @property
    def has_plan(self) -> bool:
        return self.files_named is not None


def measure(
    diff_text: str,
    plan_text: str | None,
    validation_before: bool | None,
    validation_after: bool | None,
    evidence: Evidence | None = None,
) -> Signals:
    """The signals of one change. `plan_text` None means there was no plan; `evidence`, when validation
    ran, overrides the two booleans with what it measured."""
    if evidence is not None:
        validation_before, validation_after = evidence.before_passed, evidence.comparison.passed
    patches = PatchSet(diff_text)
    touched = [patched.path for patched in patches]
    named = None if plan_text is None else files_named(plan_text)
    planned = [] if named is None else [t for t in touched if any(_matches(t, n) for n in named)]
    return Signals(
        files_touched=touched,
        files_named=named,
        planned=planned,
        unplanned=None if named is None else [t for t in touched if t not in planned],
        missed=[] if named is None else [n for n in named if not any(_matches(t, n) for t in touched)],
        lines_added=patches.added,
        lines_removed=patches.removed,
        tests_changed=[p.path for p in patches if not p.is_removed_file and is_test_path(p.path)],
        generated={p.path: kind for p in patches if (kind := generated_kind(p))},
        binary_files=[p.path for p in patches if p.is_binary_file],
        validation_before=validation_before,
        validation_after=validation_after,
        validation=evidence.comparison.reason if evidence else None,
        new_failures=evidence.comparison.new_failures[:50] if evidence else [],
        pre_existing_failures=evidence.comparison.pre_existing[:50] if evidence else [],
        fix_proof=evidence.proof.headline() if evidence and evidence.proof else None,
    )


# --- the plan's files ---------------------------------------------------------------------------------


def files_named(plan_text: str) -> list[str]:
    """The paths a plan names, in order, without repeats; from its "Files to change" section if it has one."""
    text = _FENCE.sub("", plan_text)
    section = _files_section(text)
    return (section and _paths(section, bare_names=True)) or _paths(text, bare_names=False)


def _files_section(text: str) -> str | None:
    lines = text.splitlines()
    for start, line in enumerate(lines):
        if _SECTION.match(line):
            end = next((i for i in range(start + 1, len(lines)) if _HEADING.match(lines[i])), len(lines))
            return "\n".join(lines[start + 1 : end])
    return None


def _paths(text: str, bare_names: bool) -> list[str]:
    """Backticked spans that are paths and bare tokens (with a slash, unless `bare_names`), in order."""
    found = []
    for match in _PLAN_TOKEN.finditer(text):
        span, _url, bare = match.groups()
        if span is not None or (bare is not None and (bare_names or "/" in bare)):
            found.append(_normalise(span if span is not None else bare))
    return list(dict.fromkeys(path for path in found if _is_path(path)))


def _normalise(token: str) -> str:
    token = _LOCATION.sub("", token.strip().strip("*\"'()[]<>,;"))
    token = token.rstrip(".:")
    while token.startswith("./"):
        token = token[2:]
    return token


def _is_path(token: str) -> bool:
    if not _PATH.fullmatch(token) or token.startswith("/") or ".." in token.split("/"):
        return False
    if token.endswith("/"):
        return True
    name = PurePosixPath(token).name
    if name in EXTENSIONLESS_FILES or re.fullmatch(r"\.[\w-]+", name):
        return True
    stem, dot, extension = name.rpartition(".")
    return bool(stem and dot) and extension.lower() in KNOWN_EXTENSIONS


def _matches(touched: str, named: str) -> bool:
    anchored = f"/{touched}"
    return f"/{named}" in anchored if named.endswith("/") else anchored.endswith(f"/{named}")


# --- kinds of files -------------------------------------------------------------------------------------


def is_test_path(path: str) -> bool:
    """Whether a path follows a common test convention (a test directory or a test file name)."""
    parts = PurePosixPath(path).parts
    return any(part in TEST_DIRS for part in parts[:-1]) or any(fnmatchcase(parts[-1], p) for p in TEST_NAMES)


def generated_kind(patched: PatchedFile) -> str | None:
    """What kind of not-hand-written file this is ("lock file", "vendored", …), or None."""
    parts = PurePosixPath(patched.path).parts
    name = parts[-1]
    if any(fnmatchcase(name, pattern) for pattern in LOCK_NAMES):
        return "lock file"
    if any(part in VENDORED_DIRS for part in parts[:-1]):
        return "vendored"
    if len(parts) > 1 and parts[0] in BUILD_DIRS:
        return "build output"
    if any(fnmatchcase(name, pattern) for pattern in GENERATED_NAMES) or _says_generated(patched):
        return "generated"
    return None


def _says_generated(patched: PatchedFile) -> bool:
    for hunk in patched:
        for line in hunk:
            number = line.target_line_no or line.source_line_no
            if number is not None and number <= HEADER_LINES and GENERATED_NOTICE.search(line.value):
                return True
    return False


# --- disagreements --------------------------------------------------------------------------------------


def disagreements(means: Mapping[Dimension, float], signals: Signals) -> list[str]:
    """Warnings where a high mean score meets a measurement that contradicts it. Root-cause analysis and
    code quality have no measurable counterpart; a dimension missing from `means` is not checked."""

    def high(dimension: Dimension) -> bool:
        return dimension in means and means[dimension] >= HIGH_SCORE

    def scored(dimension: Dimension) -> str:
        return f"{CRITERIA[dimension].title} scored {format_points(means[dimension])}/{MAX_PER_DIMENSION}"

    flags = []
    unplanned = signals.unplanned or []
    if high(Dimension.SCOPE) and len(unplanned) >= UNPLANNED_FILES_WARNING:
        flags.append(
            f"{scored(Dimension.SCOPE)}, yet {len(unplanned)} changed files are not named in the plan: "
            f"{_listed(unplanned)}."
        )
    if high(Dimension.SCOPE) and signals.generated:
        flags.append(
            f"{scored(Dimension.SCOPE)}, yet lock, vendored or generated files changed: "
            f"{_listed(signals.generated)}."
        )
    if high(Dimension.TESTING) and not signals.tests_changed:
        flags.append(f"{scored(Dimension.TESTING)}, yet no test files were added or changed.")
    for dimension in (Dimension.TESTING, Dimension.RESOLUTION):
        if high(dimension) and signals.validation_after is False:
            flags.append(f"{scored(dimension)}, yet validation failed after the change.")
    if high(Dimension.FIDELITY) and signals.missed:
        flags.append(
            f"{scored(Dimension.FIDELITY)}, yet the plan names files the diff does not touch: "
            f"{_listed(signals.missed)}."
        )
    return flags


def _listed(paths: Iterable[str]) -> str:
    paths = list(paths)
    shown = ", ".join(f"`{path}`" for path in paths[:LISTED_FILES])
    return shown + (f" and {len(paths) - LISTED_FILES} more" if len(paths) > LISTED_FILES else "")
