"""The agent loop: a model with tools, in a worktree, until it is done or a budget says stop.

system prompt + tools + messages → provider → run the tool calls → results back → repeat. Every limit
(turns, tokens, cost, wall clock) is checked in one place, `_limit_reached`, before each call; reaching
one is a clean, reported stop that keeps the work done so far. Provider failures move down a fallback
chain after `switch_after` consecutive failures; each switch is recorded in the ledger. A long run keeps
within the context window by trimming older tool results to stubs (`bot.agent.context`); `context_full`
stops a run only when even that leaves no room.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from bot.agent.context import ContextPolicy, TrimmedHistory
from bot.agent.ledger import Ledger
from bot.agent.tools import Toolbox
from bot.agent.transcript import Transcript
from bot.providers.types import (
    Message,
    ModelRequest,
    ModelResponse,
    ModelSlot,
    ProviderError,
    Reasoning,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
)

log = logging.getLogger(__name__)

StopKind = Literal[
    "completed",
    "max_turns",
    "token_budget",
    "cost_budget",
    "spend_cap",
    "wall_clock",
    "context_full",
    "provider_failed",
]

#: Limits that are ceilings: a layer below (a repository's budgets, a node's) may only lower them.
CEILINGS = ("max_turns", "max_tokens", "max_cost_usd", "max_wall_s", "max_output_tokens")


class AgentLimits(BaseModel):
    """Budgets for one agent run. Each is checked before every model call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_turns: int = Field(60, gt=0, description="Model calls at most.")
    max_tokens: int = Field(3_000_000, gt=0, description="Tokens of all kinds, summed over calls.")
    max_cost_usd: float = Field(10.0, gt=0, description="Dollars, from the registry's prices.")
    max_wall_s: float = Field(3600, gt=0, description="Seconds since the run started.")
    max_output_tokens: int | None = Field(None, gt=0, description="Per call; default: the model's cap.")
    switch_after: int = Field(2, gt=0, description="Consecutive failed calls before the next fallback.")

    def lowered(self, overrides: Mapping[str, float | int]) -> AgentLimits:
        """These limits with `overrides` applied, where a ceiling only ever goes down (min of both)."""
        update: dict[str, float | int] = {}
        for name, value in overrides.items():
            current = getattr(self, name)
            update[name] = min(current, value) if name in CEILINGS and current is not None else value
        return self.model_copy(update=update)


class SpendGuard(Protocol):
    """Money beyond one agent: the run's cost cap and the installation's daily cap (bot/limits.py)."""

    def refusal(self) -> str | None:
        """Why the next model call must not happen, or None."""
        ...

    def record(self, usd: float) -> None:
        """Charge a call's cost."""
        ...


@dataclass
class AgentResult:
    final_text: str
    stop: StopKind
    stop_detail: str
    messages: list[Message]
    ledger: Ledger
    turns: int
    wall_s: float
    transcript_path: Path | None = None

    @property
    def completed(self) -> bool:
        return self.stop == "completed"


class _ChainExhaustedError(Exception):
    pass


@dataclass
class Agent:
    chain: Sequence[ModelSlot]
    toolbox: Toolbox
    limits: AgentLimits = field(default_factory=AgentLimits)
    reasoning: Reasoning = field(default_factory=Reasoning)
    transcript_path: Path | None = None
    guard: SpendGuard | None = None
    context: ContextPolicy = field(default_factory=ContextPolicy)

    def __post_init__(self) -> None:
        if not self.chain:
            raise ValueError("an agent needs at least one model")
        self._slot = 0
        self._failures = 0
        self.ledger = Ledger()
        self.history = TrimmedHistory(self.context)
        self._unthought: dict[int, tuple[Message, Message | None]] = {}

    @property
    def slot(self) -> ModelSlot:
        return self.chain[self._slot]

    def run(self, system: str, task: str) -> AgentResult:
        started = time.monotonic()
        transcript = Transcript(self.transcript_path)
        messages = [Message(role="user", content=(TextBlock(text=task),))]
        transcript.write(
            "start",
            system=system,
            task=task,
            chain=[s.provider.model for s in self.chain],
            tools=[t.name for t in self.toolbox.specs()],
            limits=self.limits,
        )
        turns, stop, detail = 0, "completed", ""
        try:
            while True:
                if limit := self._limit_reached(turns, started, messages, transcript):
                    stop, detail = limit
                    break
                turns += 1
                try:
                    response = self._call(system, messages, turns, transcript)
                except _ChainExhaustedError as error:
                    stop, detail = "provider_failed", str(error)
                    break
                messages.append(response.message)
                calls = response.message.tool_calls()
                if not calls:
                    detail = f"model ended its turn ({response.stop_reason})"
                    break
                messages.append(self._run_tools(response, transcript))
        finally:
            final = _final_text(messages)
            wall = time.monotonic() - started
            transcript.write(
                "stop",
                stop=stop,
                detail=detail,
                turns=turns,
                trims=self.history.trims,
                wall_s=round(wall, 3),
                cost_usd=self.ledger.cost_usd,
                usage=self.ledger.usage,
            )
            transcript.close()
        return AgentResult(final, stop, detail, messages, self.ledger, turns, wall, self.transcript_path)

    # --- limits ---------------------------------------------------------------------------------

    def _limit_reached(
        self, turns: int, started: float, messages: list[Message], transcript: Transcript
    ) -> tuple[StopKind, str] | None:
        limits, ledger = self.limits, self.ledger
        if turns >= limits.max_turns:
            return "max_turns", f"turn limit of {limits.max_turns} reached"
        if ledger.usage.total >= limits.max_tokens:
            return "token_budget", f"token budget of {limits.max_tokens} reached ({ledger.usage.total} used)"
        if ledger.cost_usd >= limits.max_cost_usd:
            return (
                "cost_budget",
                f"cost budget of ${limits.max_cost_usd:.2f} reached (${ledger.cost_usd:.4f})",
            )
        if self.guard is not None and (why := self.guard.refusal()):
            return "spend_cap", why
        elapsed = time.monotonic() - started
        if elapsed >= limits.max_wall_s:
            return "wall_clock", f"wall-clock budget of {limits.max_wall_s:.0f}s reached ({elapsed:.0f}s)"
        return self._context_full(messages, transcript)

    def _context_full(self, messages: list[Message], transcript: Transcript) -> tuple[StopKind, str] | None:
        """Stop before a call the model could not take: the last prompt plus room for an answer fills the
        context window (the provider would answer 400, or truncate silently) even once older tool results
        are trimmed (`bot.agent.context`)."""
        usage = next((c.usage for c in reversed(self.ledger.calls) if c.error is None), None)
        if usage is None:
            return None
        prompt = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens + usage.output_tokens
        spec = self.slot.spec
        room = self.limits.max_output_tokens or spec.max_output_tokens
        if saved := self.history.trim(messages, prompt, room, spec.context_window):
            transcript.write("trimmed", cut=self.history.cut, prompt_tokens=prompt, saved_tokens=saved)
            prompt -= saved
        if prompt + room > spec.context_window:
            return "context_full", (
                f"the conversation ({prompt:,} tokens) leaves no room for a {room:,}-token "
                f"answer in {spec.model}'s {spec.context_window:,}-token context window"
            )
        return None

    # --- model calls and the fallback chain ----------------------------------------------------

    def _request(self, system: str, messages: list[Message]) -> ModelRequest:
        spec = self.slot.spec
        reasoning = self.reasoning if self._slot == 0 else Reasoning()
        history = self.history.view(messages)
        if self._slot:
            history = self._without_thinking(history)
        max_tokens = self.limits.max_output_tokens or spec.max_output_tokens
        return ModelRequest(
            system=system,
            messages=tuple(history),
            tools=tuple(self.toolbox.specs()),
            max_tokens=max_tokens,
            reasoning=reasoning,
        )

    def _call(self, system: str, messages: list[Message], turn: int, transcript: Transcript) -> ModelResponse:
        fallback_from: str | None = None
        while True:
            slot = self.slot
            started = time.monotonic()
            try:
                response = slot.provider.complete(self._request(system, messages))
            except ProviderError as error:
                self._on_failure(slot, error, turn, time.monotonic() - started, transcript)
                fallback_from = fallback_from or (slot.provider.name if self.slot is not slot else None)
                continue
            self._failures = 0
            record = self.ledger.record(turn, response, slot.spec.prices, fallback_from)
            if self.guard is not None:
                self.guard.record(record.cost_usd)
            transcript.write(
                "response", turn=turn, message=response.message, stop_reason=response.stop_reason, call=record
            )
            return response

    def _on_failure(
        self, slot: ModelSlot, error: ProviderError, turn: int, latency: float, transcript: Transcript
    ) -> None:
        self.ledger.record_failure(turn, slot.provider.name, slot.provider.model, error, latency)
        transcript.write(
            "call_failed",
            turn=turn,
            provider=slot.provider.name,
            model=slot.provider.model,
            kind=error.kind,
            error=str(error),
        )
        log.warning("%s (%s) failed: %s: %s", slot.provider.model, slot.provider.name, error.kind, error)
        self._failures += 1
        if self._failures < self.limits.switch_after:
            return
        if self._slot + 1 >= len(self.chain):
            raise _ChainExhaustedError(
                f"{slot.provider.model} failed {self._failures} times in a row ({error.kind}: {error}) "
                "and no fallback is left"
            )
        self.ledger.record_fallback(slot.provider.name, slot.provider.model)
        self._slot += 1
        self._failures = 0
        transcript.write(
            "fallback",
            turn=turn,
            from_model=slot.provider.model,
            to_model=self.slot.provider.model,
            reason=error.kind,
        )

    def _without_thinking(self, messages: list[Message]) -> list[Message]:
        """Thinking is signed by, and only valid for, the provider that produced it. A fallback model gets
        the conversation without it (and runs without thinking), which every API accepts. Each message is
        cleaned once (memoised by identity: the conversation holds every message for the whole run)."""
        cleaned = []
        for message in messages:
            known = self._unthought.get(id(message))
            if known is None or known[0] is not message:
                known = (message, _unthought(message))
                self._unthought[id(message)] = known
            if known[1] is not None:
                cleaned.append(known[1])
        return cleaned

    # --- tools ------------------------------------------------------------------------------------

    def _run_tools(self, response: ModelResponse, transcript: Transcript) -> Message:
        results = []
        for call in response.message.tool_calls():
            result = self.toolbox.call(call.name, call.arguments)
            self.ledger.record_tool(response.provider, result.is_error, result.edits, response.model)
            transcript.write(
                "tool",
                id=call.id,
                name=call.name,
                arguments=call.arguments,
                is_error=result.is_error,
                content=result.content,
            )
            results.append(ToolResultBlock(call_id=call.id, content=result.content, is_error=result.is_error))
        return Message(role="user", content=tuple(results))


def _final_text(messages: list[Message]) -> str:
    for message in reversed(messages):
        if message.role == "assistant" and message.text().strip():
            return message.text()
    return ""


def _unthought(message: Message) -> Message | None:
    """`message` without thinking blocks (itself when it has none); None when nothing else is left."""
    if not any(isinstance(b, ThinkingBlock) for b in message.content):
        return message
    blocks = tuple(b for b in message.content if not isinstance(b, ThinkingBlock))
    return Message(role=message.role, content=blocks) if blocks else None
