"""Keeping a long run inside the model's context window: older tool results give way to short stubs.

Every turn resends the whole conversation, and tool output is most of it, so a long implementation run
would fill the window and stop (`context_full`). When the prompt passes `trim_at` of the window, the
oldest tool results become stubs that still say what was called and how it ended
("[trimmed] run `pytest -q` → error, 4,210 chars"), until the prompt is estimated below `trim_to`; the
`keep_recent` latest results are never touched. Trimming moves one boundary, `cut`, forward: every tool
result before it is a stub, everything after it is as it was. Between two trims the conversation only
grows at its end, so the provider's cached prefix stays valid; a trim invalidates it once, from the first
newly stubbed message on (the system prompt and tools stay cached).

The rule (`plan_cut`, `stub_message`) is pure; `TrimmedHistory` keeps the stubs made so far, so building
the view a turn sends costs a list concatenation, not a pass over the conversation.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bot.providers.types import Message, TextBlock, ThinkingBlock, ToolCall, ToolResultBlock

#: Arguments that identify a call, in the order a stub shows them (the first two found).
KEY_ARGUMENTS = ("path", "command", "pattern", "glob", "offset")
STUB = "[trimmed to save context] {call} → {outcome}, {size:,} chars"
ARGUMENT_CHARS = 120
CHARS_PER_TOKEN = 4


class ContextPolicy(BaseModel):
    """When to trim and how far. Fractions are of the model's context window, prompt plus answer room."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    trim_at: float = Field(0.8, gt=0, le=1, description="Trim when the next call would pass this share.")
    trim_to: float = Field(0.5, gt=0, lt=1, description="…down to this share, in one block.")
    keep_recent: int = Field(6, ge=0, description="The latest tool results, never trimmed.")

    @model_validator(mode="after")
    def _ordered(self) -> ContextPolicy:
        if self.trim_to >= self.trim_at:
            raise ValueError("trim_to must be below trim_at")
        return self


@dataclass(frozen=True)
class Cut:
    """Where trimming ends (`index`: tool results in messages before it are stubs) and the tokens saved
    by moving it there from where it was."""

    index: int
    saved_tokens: int = 0


def estimate_tokens(message: Message) -> int:
    """A tokenizer-free estimate (4 characters a token), used only to decide how far to trim."""
    chars = 0
    for block in message.content:
        if isinstance(block, ToolResultBlock):
            chars += len(block.content)
        elif isinstance(block, ToolCall):
            chars += len(block.arguments) + len(block.name)
        elif isinstance(block, TextBlock | ThinkingBlock):
            chars += len(block.text)
    return chars // CHARS_PER_TOKEN + 1


def protected_from(messages: Sequence[Message], keep_recent: int) -> int:
    """The index of the first message holding one of the `keep_recent` latest tool results (or the
    length of `messages` when there are none to keep): the cut never passes it."""
    seen = 0
    for index in range(len(messages) - 1, -1, -1):
        seen += sum(isinstance(block, ToolResultBlock) for block in messages[index].content)
        if seen >= keep_recent > 0:
            return index
    return 0 if keep_recent > 0 else len(messages)


def plan_cut(
    messages: Sequence[Message],
    cut: int,
    prompt_tokens: int,
    room: int,
    window: int,
    policy: ContextPolicy,
) -> Cut:
    """The new boundary: unchanged until `prompt_tokens + room` passes `trim_at` of `window`; then far
    enough that the estimate falls to `trim_to`, never into the protected recent results. Trimming a
    block at once, rather than one result a turn, keeps the cached prefix stable between trims."""
    if not policy.enabled or prompt_tokens + room <= policy.trim_at * window:
        return Cut(cut)
    needed = prompt_tokens + room - int(policy.trim_to * window)
    limit = protected_from(messages, policy.keep_recent)
    index, end, saved = cut, cut, 0
    while index < limit and saved < needed:
        saving = estimate_tokens(messages[index]) - estimate_tokens(stub_message(messages, index))
        index += 1
        if saving > 0:  # the cut ends after a message that changed, or stays where it was
            saved, end = saved + saving, index
    return Cut(end, saved)


def stub_message(messages: Sequence[Message], index: int) -> Message:
    """Message `index` with its tool results stubbed (the calls they answer are in the message before);
    any other message as it is. The call id stays, so every tool call keeps its result on both wires."""
    message = messages[index]
    if not any(isinstance(block, ToolResultBlock) for block in message.content):
        return message
    calls = {call.id: call for call in messages[index - 1].tool_calls()} if index else {}
    blocks = tuple(
        stub(calls.get(block.call_id), block) if isinstance(block, ToolResultBlock) else block
        for block in message.content
    )
    return Message(role=message.role, content=blocks)


def stub(call: ToolCall | None, result: ToolResultBlock) -> ToolResultBlock:
    """A short result that says what was called and how it ended. Already a stub: unchanged."""
    if result.content.startswith(STUB.split("]", 1)[0]):
        return result
    text = STUB.format(call=describe(call), outcome=outcome(result), size=len(result.content))
    return ToolResultBlock(call_id=result.call_id, content=text, is_error=result.is_error)


def describe(call: ToolCall | None) -> str:
    """`run command='pytest -q'`: the tool and the arguments that identify the call."""
    if call is None:
        return "a tool call"
    try:
        arguments = json.loads(call.arguments)
    except ValueError:
        arguments = None
    if not isinstance(arguments, dict):
        return f"{call.name} (arguments that were not a JSON object)"
    keys = [key for key in KEY_ARGUMENTS if key in arguments][:2]
    shown = " ".join(f"{key}={_short(arguments[key])}" for key in keys)
    return f"{call.name} {shown}".strip()


def outcome(result: ToolResultBlock) -> str:
    """The exit code when the result reports one (the `run` tool's last line), else "ok"; "error" first
    when the tool failed."""
    lines = result.content.rstrip().splitlines()[-1:]
    ended = lines[0].strip()[:40] if lines and lines[0].lower().startswith("exit code") else ""
    return ", ".join(part for part in ("error" if result.is_error else "", ended) if part) or "ok"


def _short(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    text = " ".join(text.split())
    return repr(text if len(text) <= ARGUMENT_CHARS else text[: ARGUMENT_CHARS - 1] + "…")


@dataclass
class TrimmedHistory:
    """The view of the conversation a model is sent: stubs before `cut`, the messages as they are after.

    The agent keeps the full conversation (for its result and its transcript); this keeps the stubs made
    so far, so each turn's view is built without touching the older messages again."""

    policy: ContextPolicy = field(default_factory=ContextPolicy)
    cut: int = 0
    trims: int = 0
    _stubs: list[Message] = field(default_factory=list)

    def view(self, messages: Sequence[Message]) -> list[Message]:
        return [*self._stubs, *messages[self.cut :]]

    def trim(self, messages: Sequence[Message], prompt_tokens: int, room: int, window: int) -> int:
        """Move the cut if the policy says so; the estimated tokens this saves (0: nothing trimmed)."""
        planned = plan_cut(messages, self.cut, prompt_tokens, room, window, self.policy)
        if planned.index == self.cut:
            return 0
        self._stubs += [stub_message(messages, index) for index in range(self.cut, planned.index)]
        self.cut = planned.index
        self.trims += 1
        return planned.saved_tokens
