"""The `scripted` provider: replays a script of model turns in-process. No key, no network.

It is a real provider class, not a mock: the agent loop, ledger and tools run exactly as with a live
model. Its name is `scripted` and every model id it reports starts with `scripted:`, so a ledger, a
transcript or a status comment can never pass its output off as a real model's. Uses: the zero-key
demo, fast tests, and replaying a recorded run (`turns_from_transcript`).

A script is JSON lines, one `ScriptedTurn` per line (`#` lines are comments).

`Sloppiness` makes it a sloppy implementer: at a seeded rate it mangles edit arguments the way cheap models
do (line-number prefixes copied from read_file, tabs for spaces, trailing whitespace, one indentation level
off), and when such an edit is refused it sends it again — re-drawn, so it may be sloppy again — as a model
reading the error would, which costs a turn. (Wire-level mistakes are the fake OpenAI server's.)
A script file asks for it in a header line, so a whole run (ARCHON_SCRIPTS_DIR) can have a sloppy
implementer with no setting: `# archon-sloppy: {"rate": 0.3, "seed": 7}` (the `Sloppiness` fields as JSON).
"""

from __future__ import annotations

import itertools
import json
import random
import re
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bot.agent.edits import numbered
from bot.providers.types import (
    Message,
    ModelRequest,
    ModelResponse,
    ProviderError,
    StopReason,
    TextBlock,
    ThinkingBlock,
    ToolCall,
    ToolResultBlock,
    Usage,
)

PROVIDER_NAME = "scripted"
Mistake = Literal["line_numbers", "tabs", "trailing_whitespace", "indentation"]
MISTAKES: tuple[Mistake, ...] = ("line_numbers", "tabs", "trailing_whitespace", "indentation")
EDIT_TOOLS = ("edit_file", "multi_edit")
INDENT = "    "
SLOPPY_HEADER = "# archon-sloppy:"


class ScriptedToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    arguments: dict[str, Any] | str = Field(
        default_factory=dict, description="An object, or raw text to replay a malformed call."
    )


class ScriptedTurn(BaseModel):
    """One answer of the scripted model."""

    model_config = ConfigDict(extra="forbid")

    text: str = ""
    thinking: str | None = None
    tool_calls: list[ScriptedToolCall] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage, description="What to report; the demo uses plausible sizes.")
    stop_reason: StopReason | None = Field(None, description="Default: tool_use if calls, else end_turn.")
    error: str | None = Field(None, description="Fail this call with a ProviderError of this kind.")


class Sloppiness(BaseModel):
    """How sloppy the implementer is: each mistake in `mistakes` is made independently at `rate` per edit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate: float = Field(0.3, ge=0, le=1, description="Chance of each mistake, per edit.")
    seed: int = 0
    mistakes: tuple[Mistake, ...] = MISTAKES
    max_retries: int = Field(3, ge=0, description="Times a refused mangled edit is sent again.")


class ScriptExhaustedError(ProviderError):
    def __init__(self, name: str) -> None:
        super().__init__("script_exhausted", f"scripted model {name!r} has no turns left")


class ScriptedProvider:
    """Answers each `complete` with the next turn of its script."""

    name = PROVIDER_NAME

    def __init__(
        self, turns: Sequence[ScriptedTurn], *, label: str = "script", sloppy: Sloppiness | None = None
    ) -> None:
        self.model = f"{PROVIDER_NAME}:{label}"
        self._turns = list(turns)
        self._next = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.requests: list[ModelRequest] = []
        self.sloppy = sloppy
        self._rng = random.Random(sloppy.seed if sloppy else 0)
        #: call id of a mangled edit → (the clean call, times it was sent)
        self._mangled: dict[str, tuple[ScriptedToolCall, int]] = {}
        self.mistakes: list[Mistake] = []

    @classmethod
    def from_file(cls, path: Path) -> ScriptedProvider:
        """The script at `path`, sloppy when its header says so (`SLOPPY_HEADER`)."""
        return cls(load_script(path), label=path.stem, sloppy=script_sloppiness(path))

    @property
    def remaining(self) -> int:
        return len(self._turns) - self._next

    def complete(self, request: ModelRequest) -> ModelResponse:
        with self._lock:
            self.requests.append(request)
            retry = self._retry(request)
            if retry is not None:
                return self._response(*retry)
            if self._next >= len(self._turns):
                raise ScriptExhaustedError(self.model)
            turn = self._turns[self._next]
            self._next += 1
            if turn.error:
                raise ProviderError(turn.error, f"scripted failure ({turn.error})")
            return self._response(turn)

    def _retry(self, request: ModelRequest) -> tuple[ScriptedTurn, dict[int, int]] | None:
        """The refused mangled edits of the last turn, sent again (with the last turn's usage)."""
        if not self.sloppy or not request.messages:
            return None
        refused = [
            self._mangled[block.call_id]
            for block in request.messages[-1].content
            if isinstance(block, ToolResultBlock) and block.is_error and block.call_id in self._mangled
        ]
        again = [(call, sent) for call, sent in refused if sent <= self.sloppy.max_retries]
        if not again:
            return None
        usage = self._turns[max(self._next - 1, 0)].usage
        turn = ScriptedTurn(tool_calls=[call for call, _ in again], usage=usage)
        return turn, {index: sent + 1 for index, (_, sent) in enumerate(again)}

    def _response(self, turn: ScriptedTurn, sent: dict[int, int] | None = None) -> ModelResponse:
        blocks: list[Any] = []
        if turn.thinking is not None:
            blocks.append(ThinkingBlock(text=turn.thinking))
        if turn.text:
            blocks.append(TextBlock(text=turn.text))
        for index, call in enumerate(turn.tool_calls):
            call_id = f"scripted_{next(self._ids)}"
            sendable = self._sloppy_call(call, call_id, (sent or {}).get(index, 1))
            arguments = sendable.arguments
            arguments = arguments if isinstance(arguments, str) else json.dumps(arguments)
            blocks.append(ToolCall(id=call_id, name=call.name, arguments=arguments))
        stop = turn.stop_reason or ("tool_use" if turn.tool_calls else "end_turn")
        message = Message(role="assistant", content=tuple(blocks))
        return ModelResponse(
            message=message, stop_reason=stop, usage=turn.usage, provider=self.name, model=self.model
        )

    def _sloppy_call(self, call: ScriptedToolCall, call_id: str, sent: int) -> ScriptedToolCall:
        """`call` as a sloppy implementer writes it; remembered when mangled, to send it again."""
        if not self.sloppy or call.name not in EDIT_TOOLS or not isinstance(call.arguments, dict):
            return call
        made = [m for m in self.sloppy.mistakes if self._rng.random() < self.sloppy.rate]
        if not made:
            return call
        self.mistakes.extend(made)
        self._mangled[call_id] = (call, sent)
        return call.model_copy(update={"arguments": _mangle_arguments(call.arguments, made, self._rng)})


def _mangle_arguments(arguments: dict[str, Any], mistakes: Sequence[Mistake], rng: random.Random) -> dict:
    if "edits" in arguments:
        edits = [_mangle_edit(edit, mistakes, rng) for edit in arguments["edits"]]
        return {**arguments, "edits": edits}
    return _mangle_edit(arguments, mistakes, rng)


def _mangle_edit(edit: dict[str, Any], mistakes: Sequence[Mistake], rng: random.Random) -> dict[str, Any]:
    old, new = edit.get("old_string", ""), edit.get("new_string", "")
    first = rng.randint(1, 200)
    for mistake in sorted(mistakes, key=lambda m: m == "line_numbers"):  # prefixes last: read_file's own
        old, new = mangle(old, mistake, first), mangle(new, mistake, first)
    return {**edit, "old_string": old, "new_string": new}


def mangle(text: str, mistake: Mistake, first: int = 1) -> str:
    """`text` with one sloppy-implementer mistake. Pure, for the tests and the benchmark."""
    lines = text.split("\n")
    if mistake == "line_numbers":
        last = len(lines) - 1 if lines[-1] == "" and len(lines) > 1 else len(lines)
        return "\n".join(numbered(first + i, line) if i < last else line for i, line in enumerate(lines))
    if mistake == "tabs":
        return "\n".join(_LEADING_LEVELS.sub(lambda m: "\t" * (len(m.group()) // 4), line) for line in lines)
    if mistake == "trailing_whitespace":  # lost, or (when there is none to lose) added
        stripped = [line.rstrip() for line in lines]
        return "\n".join(stripped if stripped != lines else [f"{line} " if line else line for line in lines])
    if all(line.startswith(INDENT) for line in lines if line.strip()):
        return "\n".join(line.removeprefix(INDENT) for line in lines)
    return "\n".join(INDENT + line if line.strip() else line for line in lines)


_LEADING_LEVELS = re.compile(r"^(?:    )+")


def load_script(path: Path) -> list[ScriptedTurn]:
    """Parse a script; errors name the file and line."""
    turns = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            turns.append(ScriptedTurn.model_validate_json(line))
        except ValueError as error:
            raise ValueError(f"{path}:{number}: not a scripted turn: {error}") from error
    return turns


def script_sloppiness(path: Path) -> Sloppiness | None:
    """The `# archon-sloppy: {...}` header of a script, if it has one; a malformed one names the file."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.startswith(SLOPPY_HEADER):
            try:
                return Sloppiness.model_validate_json(line.removeprefix(SLOPPY_HEADER))
            except ValueError as error:
                raise ValueError(f"{path}:{number}: not a sloppiness header: {error}") from error
    return None


def dump_script(turns: Iterable[ScriptedTurn]) -> str:
    return "".join(turn.model_dump_json(exclude_defaults=True) + "\n" for turn in turns)


def turns_from_messages(messages: Iterable[Message], usages: Iterable[Usage] = ()) -> list[ScriptedTurn]:
    """A recorded conversation's assistant turns as a script, to replay a run without a model."""
    usage_list = list(usages)
    turns = []
    for index, message in enumerate(m for m in messages if m.role == "assistant"):
        thinking = "".join(b.text for b in message.content if isinstance(b, ThinkingBlock)) or None
        calls = [
            ScriptedToolCall(name=c.name, arguments=_arguments(c.arguments)) for c in message.tool_calls()
        ]
        usage = usage_list[index] if index < len(usage_list) else Usage()
        turns.append(ScriptedTurn(text=message.text(), thinking=thinking, tool_calls=calls, usage=usage))
    return turns


def _arguments(text: str) -> dict[str, Any] | str:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, dict) else text
