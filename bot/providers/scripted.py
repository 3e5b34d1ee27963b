"""The `scripted` provider: replays a script of model turns in-process. No key, no network.

It is a real provider class, not a mock: the agent loop, ledger and tools run exactly as with a live
model. Its name is `scripted` and every model id it reports starts with `scripted:`, so a ledger, a
transcript or a status comment can never pass its output off as a real model's. Uses: the zero-key
demo, fast tests, and replaying a recorded run (`turns_from_transcript`).

A script is JSON lines, one `ScriptedTurn` per line (`#` lines are comments).
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bot.providers.types import (
    Message,
    ModelRequest,
    ModelResponse,
    ProviderError,
    StopReason,
    TextBlock,
    ThinkingBlock,
    ToolCall,
    Usage,
)

PROVIDER_NAME = "scripted"


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


class ScriptExhaustedError(ProviderError):
    def __init__(self, name: str) -> None:
        super().__init__("script_exhausted", f"scripted model {name!r} has no turns left")


class ScriptedProvider:
    """Answers each `complete` with the next turn of its script."""

    name = PROVIDER_NAME

    def __init__(self, turns: Sequence[ScriptedTurn], *, label: str = "script") -> None:
        self.model = f"{PROVIDER_NAME}:{label}"
        self._turns = list(turns)
        self._next = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.requests: list[ModelRequest] = []

    @classmethod
    def from_file(cls, path: Path) -> ScriptedProvider:
        return cls(load_script(path), label=path.stem)

    @property
    def remaining(self) -> int:
        return len(self._turns) - self._next

    def complete(self, request: ModelRequest) -> ModelResponse:
        with self._lock:
            self.requests.append(request)
            if self._next >= len(self._turns):
                raise ScriptExhaustedError(self.model)
            turn = self._turns[self._next]
            self._next += 1
        if turn.error:
            raise ProviderError(turn.error, f"scripted failure ({turn.error})")
        return self._response(turn)

    def _response(self, turn: ScriptedTurn) -> ModelResponse:
        blocks: list[Any] = []
        if turn.thinking is not None:
            blocks.append(ThinkingBlock(text=turn.thinking))
        if turn.text:
            blocks.append(TextBlock(text=turn.text))
        for call in turn.tool_calls:
            arguments = call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)
            blocks.append(ToolCall(id=f"scripted_{next(self._ids)}", name=call.name, arguments=arguments))
        stop = turn.stop_reason or ("tool_use" if turn.tool_calls else "end_turn")
        message = Message(role="assistant", content=tuple(blocks))
        return ModelResponse(
            message=message, stop_reason=stop, usage=turn.usage, provider=self.name, model=self.model
        )


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
