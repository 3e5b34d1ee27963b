"""The provider-neutral conversation: what the agent loop sends a model and what comes back.

Pydantic models, so transcripts and scripted replays are the same schema as live traffic. Adapters
(`anthropic.py`, `openai_compat.py`, `scripted.py`) translate to and from their wire formats; nothing
else in the bot sees a provider's own shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from bot.providers.registry import ModelSpec


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolSpec(BaseModel):
    """A provider-neutral tool definition; each adapter translates it."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str
    parameters: dict[str, Any]

    @classmethod
    def from_args(cls, name: str, args: type[BaseModel]) -> ToolSpec:
        """Derive the definition from the argument model, so schema and validation cannot drift."""
        schema = args.model_json_schema()
        schema.pop("title", None)
        description = " ".join(schema.pop("description", "").split())  # unwrap the docstring's lines
        return cls(name=name, description=description, parameters=schema)

    def to_anthropic(self) -> dict[str, Any]:
        """Messages API `tools[]` entry."""
        return {"name": self.name, "description": self.description, "input_schema": self.parameters}

    def to_openai(self) -> dict[str, Any]:
        """Chat Completions `tools[]` entry."""
        function = {"name": self.name, "description": self.description, "parameters": self.parameters}
        return {"type": "function", "function": function}


class TextBlock(_Frozen):
    type: Literal["text"] = "text"
    text: str


class ThinkingBlock(_Frozen):
    """Reasoning the model showed. Anthropic signs it (`signature`) and wants it back unchanged in the
    tool loop; Moonshot calls it `reasoning_content` and wants it back on earlier tool-call turns."""

    type: Literal["thinking"] = "thinking"
    text: str
    signature: str | None = None
    redacted: bool = Field(False, description="Anthropic `redacted_thinking`: `text` holds its data.")


class ToolCall(_Frozen):
    type: Literal["tool_call"] = "tool_call"
    id: str
    name: str
    arguments: str = Field(description="The arguments exactly as the model wrote them (JSON text).")


class ToolResultBlock(_Frozen):
    type: Literal["tool_result"] = "tool_result"
    call_id: str
    content: str
    is_error: bool = False


Block = Annotated[TextBlock | ThinkingBlock | ToolCall | ToolResultBlock, Field(discriminator="type")]


class Message(_Frozen):
    role: Literal["user", "assistant"]
    content: tuple[Block, ...]

    def text(self) -> str:
        return "".join(b.text for b in self.content if isinstance(b, TextBlock))

    def tool_calls(self) -> list[ToolCall]:
        return [b for b in self.content if isinstance(b, ToolCall)]


class Usage(_Frozen):
    """Tokens of one call, split the way providers bill them. `input_tokens` excludes cached tokens
    (OpenAI-style `prompt_tokens` include them; the adapter subtracts). `reasoning_tokens` is the part of
    `output_tokens` spent thinking, reported for insight: it is billed as output, not on top."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    reasoning_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{name: getattr(self, name) + getattr(other, name) for name in Usage.model_fields})

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_write_tokens + self.cache_read_tokens


class Reasoning(_Frozen):
    """How hard a node thinks. Planning pays for it; a mechanical edit loop only pays."""

    enabled: bool = False
    budget_tokens: int | None = Field(
        None, ge=1024, description="Anthropic extended-thinking budget; None: the provider's adaptive mode."
    )


StopReason = Literal["end_turn", "tool_use", "max_tokens", "refusal", "other"]


class ModelRequest(_Frozen):
    system: str
    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    max_tokens: int = Field(8192, gt=0)
    reasoning: Reasoning = Reasoning()


class ModelResponse(_Frozen):
    message: Message
    stop_reason: StopReason
    usage: Usage
    provider: str
    model: str = Field(description="The model id the provider says answered.")
    latency_s: float = 0.0
    retries: int = Field(0, description="Attempts beyond the first (SDK retries and stream restarts).")
    stalls: int = Field(0, description="Streams that went quiet past the stall timeout and were retried.")
    recoveries: tuple[str, ...] = Field(
        (),
        description="What the adapter repaired in this answer, one entry per repair (e.g. `leaked_tool_call` "
        "per tool call parsed out of raw template markup in the text, `missing_done` for a stream that "
        "ended on finish_reason without [DONE]): counted in the ledger, never silent.",
    )


class CallLimits(_Frozen):
    """Per-call reliability settings."""

    timeout_s: float = Field(600, gt=0, description="Wall clock for one call, retries included.")
    stall_timeout_s: float = Field(120, gt=0, description="Longest silence allowed inside a stream.")
    max_retries: int = Field(3, ge=0, description="Retries on 429, 5xx, overloaded, timeouts, stalls.")


class ProviderError(Exception):
    """A call failed after its retries. `kind` says why, for the reliability counters."""

    def __init__(self, kind: str, message: str, *, retries: int = 0, stalls: int = 0) -> None:
        super().__init__(message)
        self.kind, self.retries, self.stalls = kind, retries, stalls


class ModelProvider(Protocol):
    """One model at one provider. Adapters take their client and limits in the constructor."""

    name: str
    model: str

    def complete(self, request: ModelRequest) -> ModelResponse: ...


@dataclass(frozen=True)
class ModelSlot:
    """One entry of a node's fallback chain: a provider and the registry entry that prices it."""

    provider: ModelProvider
    spec: ModelSpec
