"""The agent–computer interface: the tools a model calls, confined to one git worktree.

Schemas first: each tool is a pydantic argument model — its docstring is the tool's description and its
JSON schema the tool's parameters — plus a handler. `Toolbox.call` takes the model's raw arguments and
always returns a `ToolResult`: a model's mistake (bad JSON, a wrong field, a path outside the worktree, a
missing file) comes back as an error the model can act on, never as an exception that ends the run.

Path confinement covers the file tools. `run` (and every command the bot runs for a repository) goes through
the one command runner, `bot.sandbox`: bubblewrap with the worktree writable, secrets and other runs out of
sight, no network, limits, and the whole process tree killed with the command. Known secret values are
redacted from every result as well, whichever tool produced it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from fnmatch import fnmatch
from functools import cache
from itertools import islice
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.agent.edits import REFUSED, Applied, EditRefused, apply_edit, numbered
from bot.providers.types import ToolSpec
from bot.sandbox import ENV_ALLOWLIST, Completed, Sandbox
from bot.secrets import SECRET_ENV_NAME, Redactor, default_redactor, environ_secrets

READ_ONLY = ("list_dir", "read_file", "search")
ALL = (*READ_ONLY, "write_file", "edit_file", "multi_edit", "run")
#: Tools whose results say how each edit matched (`ToolResult.edits`), for the ledger.
EDIT_TOOLS = ("edit_file", "multi_edit")
MAX_EDITS = 50

DEFAULT_READ_LIMIT = 400
MAX_READ_LIMIT = 2000
MAX_LINE_CHARS = 2000
MAX_READ_BYTES = 5_000_000
MAX_SEARCH_FILE_BYTES = 1_000_000
MAX_SEARCH_MATCHES = 200
MAX_SEARCH_LINE_CHARS = 300
MAX_LIST_ENTRIES = 1000
DEFAULT_RUN_TIMEOUT_S = 120
MAX_RUN_TIMEOUT_S = 600
DEFAULT_MAX_OUTPUT_CHARS = 30_000
MIN_OUTPUT_CHARS = 1000
DEFAULT_ENV_ALLOWLIST = ENV_ALLOWLIST
_BINARY_SNIFF_BYTES = 8192
#: Bytes of a command's output kept (head and tail) before redaction and the character cap.
_MAX_OUTPUT_BYTES = 1_000_000


class ToolError(Exception):
    """A mistake the model can fix; the message goes back to it as the tool's result."""


class CommandResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    command: str
    output: str
    exit_code: int
    timed_out: bool = False
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


class ToolResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    content: str
    is_error: bool = False
    edits: tuple[str, ...] = Field(
        (),
        description="Edit tools: per applied edit `exact` or its fallback rules (e.g. "
        "`line_numbers+indentation`); one `refused` for a refused call (a `multi_edit` is all or none).",
    )


@dataclass(frozen=True)
class _Reply:
    """What a handler returns when it has more to say than text (the edit tools' outcomes)."""

    text: str
    edits: tuple[str, ...] = ()


# --- Argument models: each docstring is what the model reads about the tool.


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ListDirArgs(_Args):
    """List a directory of the repository. Entries are sorted; directories end with `/`."""

    path: str = Field(".", description="Directory relative to the repository root; `.` is the root.")


class ReadFileArgs(_Args):
    """Read a text file with line numbers (like `cat -n`). Long files come in pages: the output then ends
    with the offset to continue from."""

    path: str = Field(min_length=1, description="File path relative to the repository root.")
    offset: int = Field(1, ge=1, description="1-based line number to start reading at.")
    limit: int = Field(
        DEFAULT_READ_LIMIT, ge=1, le=MAX_READ_LIMIT, description="Maximum number of lines to return."
    )


class SearchArgs(_Args):
    """Search file contents with a Python regular expression, line by line. Prints `path:line: text` for
    each match. Skips `.git`, binary files and files over 1 MB."""

    pattern: str = Field(
        min_length=1, description="Python `re` regular expression matched against each line."
    )
    path: str = Field(".", description="Directory or file to search, relative to the repository root.")
    glob: str | None = Field(
        None, description="Only files whose relative path or name matches this fnmatch pattern, e.g. `*.py`."
    )


class WriteFileArgs(_Args):
    """Create or overwrite a file with the given content. Missing parent directories are created."""

    path: str = Field(min_length=1, description="File path relative to the repository root.")
    content: str = Field(description="The complete new content of the file.")


class EditFileArgs(_Args):
    """Replace exact text in a file. `old_string` should match the file exactly, whitespace and indentation
    included, and must occur once unless `replace_all` is true. Copy it without read_file's line numbers.
    The result says whether it applied exactly or by a forgiving rule; when nothing matches, it shows the
    closest lines of the file."""

    path: str = Field(min_length=1, description="File path relative to the repository root.")
    old_string: str = Field(min_length=1, description="The exact text to replace.")
    new_string: str = Field(description="The text to put in its place.")
    replace_all: bool = Field(False, description="Replace every occurrence instead of exactly one.")


class EditArgs(_Args):
    """One replacement of a `multi_edit`."""

    old_string: str = Field(min_length=1, description="The exact text to replace.")
    new_string: str = Field(description="The text to put in its place.")
    replace_all: bool = Field(False, description="Replace every occurrence instead of exactly one.")


class MultiEditArgs(_Args):
    """Make several replacements in one file at once: all are applied or none. Each edit is matched against
    the file as the edits before it left it, with the same rules as edit_file."""

    path: str = Field(min_length=1, description="File path relative to the repository root.")
    edits: list[EditArgs] = Field(
        min_length=1, max_length=MAX_EDITS, description="The replacements, applied in order."
    )


class RunArgs(_Args):
    """Run a shell command (`bash -c`) in the repository root. Returns combined stdout and stderr and the
    exit code. API keys and tokens are not available to the command; it is killed at the timeout."""

    command: str = Field(min_length=1, description="The shell command line to run.")
    timeout_s: int | None = Field(
        None,
        ge=1,
        le=MAX_RUN_TIMEOUT_S,
        description="Seconds before the command is killed; omit for the default.",
    )


# --- The toolbox.


class Toolbox:
    """The tools one agent step may use, bound to one worktree."""

    def __init__(
        self,
        root: Path,
        allowed: Iterable[str],
        *,
        run_timeout_s: int = DEFAULT_RUN_TIMEOUT_S,
        max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
        env_allowlist: Iterable[str] = DEFAULT_ENV_ALLOWLIST,
        secrets: Iterable[str] = (),
        sandbox: Sandbox | None = None,
        forgiving_edits: bool = True,
    ) -> None:
        """`secrets` adds values minted at run time (an installation token) to those found in the
        environment; all of them are redacted from results. `sandbox` is the deployment's command runner
        (`Sandbox(SandboxPolicy.from_settings(settings))`); the default one hides no deployment paths.
        `forgiving_edits` False turns the edit tools' fallback rules off (exact matches only), for the
        benchmark that measures what they save."""
        self.root = Path(root).resolve(strict=True)
        self.allowed = _known_tools(allowed)
        self.forgiving_edits = forgiving_edits
        self._specs = tuple(_spec(name) for name in self.allowed)
        self.run_timeout_s = _bounded("run_timeout_s", run_timeout_s, 1, MAX_RUN_TIMEOUT_S)
        self.max_output_chars = _bounded("max_output_chars", max_output_chars, MIN_OUTPUT_CHARS, None)
        self.env_allowlist = _safe_env_names(env_allowlist)
        self.shell = shutil.which("bash") or "/bin/sh"
        self.sandbox = sandbox or Sandbox()
        self._redactor = Redactor([*environ_secrets(os.environ), *secrets])

    def specs(self) -> list[ToolSpec]:
        """The tools' definitions, derived once per tool (not on every turn)."""
        return list(self._specs)

    def call(self, name: str, arguments: str | Mapping[str, Any] | None) -> ToolResult:
        """Run one tool call as the model sent it. Never raises for the model's mistakes."""
        refused = (REFUSED,) if name in EDIT_TOOLS and name in self.allowed else ()
        try:
            tool = self._tool(name)
            reply = tool.handler(self, _parse_args(name, tool.args, arguments))
        except ToolError as exc:
            return self._result(str(exc), is_error=True, edits=refused)
        except OSError as exc:
            return self._result(f"{name} failed: {self._os_message(exc)}", is_error=True, edits=refused)
        if isinstance(reply, _Reply):
            return self._result(reply.text, is_error=False, edits=reply.edits)
        return self._result(reply, is_error=False)

    def execute(self, command: str, timeout_s: int | None = None) -> CommandResult:
        """Run a command the bot (not the model) chose — validation, a workflow's shell node — with the
        same scrubbed environment, process-group kill, redaction and output cap as the `run` tool."""
        done = self._sandboxed(command, timeout_s or self.run_timeout_s)
        text = _middle_cut(self.redact(done.output.decode("utf-8", errors="replace")), self.max_output_chars)
        return CommandResult(
            command=command,
            output=text,
            exit_code=done.exit_code,
            timed_out=done.timed_out,
            duration_s=round(done.duration_s, 3),
        )

    def resolve(self, path: str) -> Path:
        """The real location of `path`, refused when it leaves the worktree or enters `.git`.

        `resolve()` follows symlinks, so a link pointing outside is caught like `..` or an absolute path.
        """
        try:
            real = (self.root / path).resolve()
        except (OSError, ValueError, RuntimeError) as exc:
            raise ToolError(f"invalid path {path!r}: {exc}") from None
        if not real.is_relative_to(self.root):
            raise ToolError(
                f"path {path!r} is outside the repository; use a path relative to the repository root"
            )
        if any(part.lower() == ".git" for part in real.relative_to(self.root).parts):
            raise ToolError(f"path {path!r} is inside .git, which the file tools may not touch")
        return real

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def run_env(self) -> dict[str, str]:
        """Only allowlisted variables, so keys and tokens in the worker's environment stay there (the
        sandbox adds its private HOME and TMPDIR)."""
        return {name: os.environ[name] for name in self.env_allowlist if name in os.environ}

    def _sandboxed(self, command: str, timeout: int) -> Completed:
        return self.sandbox.run(
            [self.shell, "-c", command],
            root=self.root,
            timeout_s=timeout,
            max_output_bytes=_MAX_OUTPUT_BYTES,
            env=self.run_env(),
        )

    def redact(self, text: str) -> str:
        """This toolbox's secrets (the environment's as it is now, and `secrets`), then the process's
        redactor (settings, `.env`, the key, minted tokens), each in their common encodings."""
        return default_redactor().redact(self._redactor.redact(text))

    def _tool(self, name: str) -> _Tool:
        if name in self.allowed:
            return _TOOLS[name]
        available = ", ".join(self.allowed)
        if name in _TOOLS:
            raise ToolError(f"tool {name!r} is not available in this step; available tools: {available}")
        raise ToolError(f"unknown tool {name!r}; available tools: {available}")

    def _result(self, text: str, *, is_error: bool, edits: tuple[str, ...] = ()) -> ToolResult:
        """Redact before cutting, so a cut cannot split a secret into unrecognisable halves."""
        content = _middle_cut(self.redact(text), self.max_output_chars)
        return ToolResult(content=content, is_error=is_error, edits=edits)

    def _os_message(self, exc: OSError) -> str:
        if not exc.filename:
            return exc.strerror or str(exc)
        path = Path(os.fsdecode(exc.filename))
        shown = self.rel(path) if path.is_relative_to(self.root) else path.name
        return f"{exc.strerror or exc}: {shown}"


@cache
def _spec(name: str) -> ToolSpec:
    """A tool's definition, computed once per process: the argument models never change."""
    spec = ToolSpec.from_args(name, _TOOLS[name].args)
    return spec.model_copy(update={"parameters": _inline_refs(spec.parameters)})


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Nested models (a `multi_edit`'s edits) inlined: several OpenAI-compatible hosts reject `$ref`."""
    defs = schema.get("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                target = defs[node["$ref"].rsplit("/", 1)[-1]]
                return inline({k: v for k, v in target.items() if k != "title"})
            return {k: inline(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return inline(schema)


def _known_tools(allowed: Iterable[str]) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(allowed))
    unknown = sorted(set(names) - set(_TOOLS))
    if unknown:
        raise ValueError(f"unknown tools {unknown}; known: {', '.join(_TOOLS)}")
    return names


def _bounded(name: str, value: int, low: int, high: int | None) -> int:
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name}={value} is outside [{low}, {high or '∞'}]")
    return value


def _safe_env_names(names: Iterable[str]) -> tuple[str, ...]:
    """A secret-looking name in the allowlist is a configuration mistake; refuse it loudly."""
    names = tuple(names)
    risky = [name for name in names if SECRET_ENV_NAME.search(name)]
    if risky:
        raise ValueError(f"refusing to pass secret-looking variables to tools: {', '.join(risky)}")
    return names


# --- Parsing the model's arguments.


def _parse_args(name: str, model: type[_Args], raw: str | Mapping[str, Any] | None) -> _Args:
    data = _load_object(raw, name, model)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "\n".join(f"- {_loc(err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ToolError(f"invalid arguments for {name}:\n{problems}\n{_fields_hint(model)}") from None


def _load_object(raw: str | Mapping[str, Any] | None, name: str, model: type[_Args]) -> Mapping[str, Any]:
    """Models send `""` or nothing for a call without arguments; treat that as `{}`."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            hint = _fields_hint(model)
            raise ToolError(
                f"arguments for {name} are not valid JSON ({exc}); send a JSON object. {hint}"
            ) from None
    if not isinstance(raw, Mapping):
        raise ToolError(f"arguments for {name} must be a JSON object, not {type(raw).__name__}")
    return raw


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(arguments)"


def _fields_hint(model: type[_Args]) -> str:
    fields = [f"{n} (required)" if f.is_required() else n for n, f in model.model_fields.items()]
    return f"Valid fields: {', '.join(fields)}."


# --- Text helpers.


def _middle_cut(text: str, limit: int) -> str:
    """Keep head and tail: a command's first lines say what ran, its last lines how it ended."""
    if len(text) <= limit:
        return text
    keep = (limit - 80) // 2
    omitted = len(text) - 2 * keep
    return f"{text[:keep]}\n[... {omitted} characters omitted ...]\n{text[-keep:]}"


def _clip(line: str, limit: int) -> str:
    return line if len(line) <= limit else line[:limit] + " [... line truncated]"


def _decode(data: bytes) -> str | None:
    """Text, or None for binary: a NUL byte early on or bytes that are not UTF-8."""
    if b"\0" in data[:_BINARY_SNIFF_BYTES]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _split_lines(text: str) -> list[str]:
    """Split on `\\n` only, so line numbers agree with editors and `grep -n`."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


# --- File tools.


def _existing_file(box: Toolbox, path: str) -> Path:
    real = box.resolve(path)
    if real.is_dir():
        raise ToolError(f"{path} is a directory, not a file; use list_dir to see its entries")
    if not real.exists():
        raise ToolError(f"file not found: {path}; use list_dir or search to find the right path")
    return real


def _read_text(real: Path, path: str) -> str:
    size = real.stat().st_size
    if size > MAX_READ_BYTES:
        raise ToolError(f"{path} is too large to read ({size} bytes); use search to find the relevant lines")
    text = _decode(real.read_bytes())
    if text is None:
        raise ToolError(f"{path} is a binary file (not UTF-8 text); it cannot be read or edited as text")
    return text


def _list_dir(box: Toolbox, args: ListDirArgs) -> str:
    real = box.resolve(args.path)
    if not real.exists():
        raise ToolError(f"directory not found: {args.path}")
    if not real.is_dir():
        raise ToolError(f"{args.path} is a file, not a directory; use read_file")
    children = (p for p in real.iterdir() if p.name.lower() != ".git")
    entries = sorted(p.name + "/" if p.is_dir() else p.name for p in children)
    if not entries:
        return f"{args.path} is an empty directory"
    shown = entries[:MAX_LIST_ENTRIES]
    more = len(entries) - len(shown)
    return "\n".join(shown) + (f"\n[... {more} more entries not shown]" if more else "")


def _read_file(box: Toolbox, args: ReadFileArgs) -> str:
    lines = _split_lines(_read_text(_existing_file(box, args.path), args.path))
    if not lines:
        return f"{args.path} is empty"
    if args.offset > len(lines):
        raise ToolError(f"offset {args.offset} is past the end of {args.path}, which has {len(lines)} lines")
    return _numbered_page(lines, args.offset, args.limit, budget=box.max_output_chars - 200)


def _numbered_page(lines: list[str], offset: int, limit: int, *, budget: int) -> str:
    """Lines `offset..` up to `limit` lines or `budget` characters, then how to read the rest."""
    rows: list[str] = []
    used = 0
    for number in range(offset, min(len(lines), offset + limit - 1) + 1):
        row = numbered(number, _clip(lines[number - 1], MAX_LINE_CHARS))
        if rows and used + len(row) + 1 > budget:
            break
        rows.append(row)
        used += len(row) + 1
    last = offset + len(rows) - 1
    if last < len(lines):
        more = len(lines) - last
        rows.append(f"[... {more} more lines; call read_file with offset={last + 1} to continue]")
    return "\n".join(rows)


def _search(box: Toolbox, args: SearchArgs) -> str:
    try:
        regex = re.compile(args.pattern)
    except re.error as exc:
        raise ToolError(f"invalid regular expression {args.pattern!r}: {exc}") from None
    start = box.resolve(args.path)
    if not start.exists():
        raise ToolError(f"path not found: {args.path}")
    found = list(islice(_matches(box, start, args.glob, regex), MAX_SEARCH_MATCHES + 1))
    if not found:
        where = args.path + (f" (glob {args.glob!r})" if args.glob else "")
        return f"no matches for {args.pattern!r} in {where}"
    if len(found) > MAX_SEARCH_MATCHES:
        note = f"[... stopped after {MAX_SEARCH_MATCHES} matches; narrow the pattern, path or glob]"
        return "\n".join([*found[:MAX_SEARCH_MATCHES], note])
    return "\n".join(found)


def _matches(box: Toolbox, start: Path, glob: str | None, regex: re.Pattern[str]) -> Iterator[str]:
    for file in [start] if start.is_file() else _walk(start):
        rel = box.rel(file)
        if glob and not (fnmatch(rel, glob) or fnmatch(file.name, glob)):
            continue
        text = _searchable_text(box, file)
        for number, line in enumerate(_split_lines(text or ""), 1):
            if regex.search(line):
                yield f"{rel}:{number}: {_clip(line, MAX_SEARCH_LINE_CHARS)}"


def _walk(top: Path) -> Iterator[Path]:
    """Files under `top` in a stable order, never descending into `.git` or through directory links."""
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d.lower() != ".git")
        for name in sorted(filenames):
            if name.lower() != ".git":
                yield Path(dirpath, name)


def _searchable_text(box: Toolbox, file: Path) -> str | None:
    """The file's text, or None when it is a link leaving the worktree, too large, or binary."""
    try:
        real = box.resolve(str(file))
        if not real.is_file() or real.stat().st_size > MAX_SEARCH_FILE_BYTES:
            return None
        return _decode(real.read_bytes())
    except (ToolError, OSError):
        return None


def _write_file(box: Toolbox, args: WriteFileArgs) -> str:
    real = box.resolve(args.path)
    if real.is_dir():
        raise ToolError(f"{args.path} is a directory; give the path of a file")
    real.parent.mkdir(parents=True, exist_ok=True)
    data = args.content.encode("utf-8")
    real.write_bytes(data)
    return f"wrote {len(data)} bytes to {box.rel(real)}"


IDENTICAL = "old_string and new_string are identical; there is nothing to change"


def _edit_file(box: Toolbox, args: EditFileArgs) -> _Reply:
    real = _existing_file(box, args.path)
    text = _read_text(real, args.path)
    applied = _apply(box, text, args, args.path)
    real.write_bytes(applied.text.encode("utf-8"))
    return _Reply(_applied_line(applied, f"in {box.rel(real)}"), (applied.outcome,))


def _multi_edit(box: Toolbox, args: MultiEditArgs) -> _Reply:
    """Every edit against the text the previous ones left, in memory; the file is written once, at the
    end, so a refused edit leaves it untouched."""
    real = _existing_file(box, args.path)
    text = _read_text(real, args.path)
    lines, outcomes = [], []
    for number, edit in enumerate(args.edits, 1):
        try:
            applied = _apply(box, text, edit, args.path)
        except ToolError as exc:
            raise ToolError(
                f"edit {number} of {len(args.edits)} refused, so none was applied: {exc}"
            ) from None
        text = applied.text
        lines.append(f"edit {number}: " + _applied_line(applied, ""))
        outcomes.append(applied.outcome)
    real.write_bytes(text.encode("utf-8"))
    head = f"applied {len(args.edits)} edit{'' if len(args.edits) == 1 else 's'} to {box.rel(real)}"
    return _Reply("\n".join([head, *lines]), tuple(outcomes))


def _apply(box: Toolbox, text: str, edit: EditFileArgs | EditArgs, path: str) -> Applied:
    if edit.old_string == edit.new_string:
        raise ToolError(IDENTICAL)
    try:
        return apply_edit(
            text,
            edit.old_string,
            edit.new_string,
            replace_all=edit.replace_all,
            forgiving=box.forgiving_edits,
            path=path,
        )
    except EditRefused as exc:
        raise ToolError(str(exc)) from None


def _applied_line(applied: Applied, where: str) -> str:
    """`replaced 1 occurrence in a.py (line 12, applied exactly)`."""
    count, where = applied.count, f" {where}" if where else ""
    plural = "" if count == 1 else "s"
    return f"replaced {count} occurrence{plural}{where} (line {applied.line}, {applied.describe()})"


# --- The shell.


def _run(box: Toolbox, args: RunArgs) -> str:
    timeout = args.timeout_s or box.run_timeout_s
    done = box._sandboxed(args.command, timeout)
    text = done.output.decode("utf-8", errors="replace") or "(no output)"
    if done.timed_out:
        raise ToolError(f"command timed out after {timeout}s and was killed. Partial output:\n{text}")
    body = text.removesuffix("\n")
    return f"{body}\nexit code: {done.exit_code}"


# --- The command surface.


@dataclass(frozen=True)
class _Tool:
    args: type[_Args]
    handler: Callable[[Toolbox, Any], str | _Reply]


_TOOLS: dict[str, _Tool] = {
    "list_dir": _Tool(ListDirArgs, _list_dir),
    "read_file": _Tool(ReadFileArgs, _read_file),
    "search": _Tool(SearchArgs, _search),
    "write_file": _Tool(WriteFileArgs, _write_file),
    "edit_file": _Tool(EditFileArgs, _edit_file),
    "multi_edit": _Tool(MultiEditArgs, _multi_edit),
    "run": _Tool(RunArgs, _run),
}
