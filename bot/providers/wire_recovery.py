"""Repairs for tool calls that an OpenAI-compatible host garbled on the wire (pure functions, no I/O).

Two quirks of Kimi K2.x behind Moonshot, OpenRouter, vLLM and other hosts (issue 14):

- **Leaked markup.** The host's tool parser missed the model's own template, so the call arrives as text
  in `content` (or `reasoning_content`) instead of `tool_calls`:
  `<|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:IDX<|tool_call_argument_begin|>{…}`
  `<|tool_call_end|>…<|tool_calls_section_end|>`. The grammar follows vLLM's `kimi_k2_tool_parser` and the
  parsers derived from it: the section token also comes singular (`<|tool_call_section_begin|>`), the id
  with or without `functions.` and with or without `:IDX`, whitespace and newlines between the tokens; and
  hosts that truncate drop the section tokens or the last `<|tool_call_end|>`, so neither is required.
  `leaked_calls` returns the calls with Kimi's own ids (`functions.NAME:IDX`) and the text without markup.
- **Mixed argument chunks.** A stream sends a call's arguments as deltas and *also* whole (a chunk that
  repeats the full JSON after the deltas, or a first chunk with the whole JSON followed by deltas of it),
  so plain concatenation doubles the JSON. `join_arguments` keeps the whole copy when, and only when, the
  concatenation is not JSON and the rest of the fragments spell the same arguments (or a prefix of them).

Text that merely mentions `<|` — no `<|tool_call_begin|>…<|tool_call_argument_begin|>` pair — is returned
unchanged, and arguments that are broken JSON for any other reason pass through raw: the agent's argument
validation tells the model, which is a turn, not a silent guess.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

SECTION_BEGIN = re.compile(r"<\|tool_calls?_section_begin\|>")
SECTION_END = re.compile(r"<\|tool_calls?_section_end\|>")
CALL = re.compile(
    r"<\|tool_call_begin\|>\s*(?P<id>[^<]*?)\s*<\|tool_call_argument_begin\|>\s*(?P<arguments>.*?)\s*"
    r"(?:<\|tool_call_end\|>|(?=<\|tool_call_begin\|>)|(?=<\|tool_calls?_section_end\|>)|\Z)",
    re.DOTALL,
)
CALL_ID = re.compile(r"^(?:functions\.)?(?P<name>[^:\s]+?)(?::(?P<index>\d+))?$")
KIMI_ID = "functions.{name}:{index}"


@dataclass(frozen=True)
class LeakedCall:
    """One tool call recovered from markup: Kimi's id, the function name, the arguments as written."""

    id: str
    name: str
    arguments: str


def leaked_calls(text: str, *, first_index: int = 0) -> tuple[str, list[LeakedCall]]:
    """Tool calls written as Kimi template markup in `text`, and `text` with the markup removed.

    `first_index` numbers calls whose id carries no `:IDX`, after the calls the host did parse.
    """
    matches = [m for m in CALL.finditer(text) if CALL_ID.match(m["id"])]
    if not matches:
        return text, []
    calls = [_leaked(match, first_index + number) for number, match in enumerate(matches)]
    return _without_markup(text, matches), _unique_ids(calls)


def _leaked(match: re.Match[str], number: int) -> LeakedCall:
    parsed = CALL_ID.match(match["id"])
    assert parsed is not None  # filtered by the caller
    name = parsed["name"]
    index = parsed["index"] if parsed["index"] is not None else str(number)
    return LeakedCall(id=KIMI_ID.format(name=name, index=index), name=name, arguments=match["arguments"])


def _without_markup(text: str, matches: Sequence[re.Match[str]]) -> str:
    """The text around the markup: from the section start (or first call) to its end (or last call)."""
    begin = SECTION_BEGIN.search(text, 0, matches[0].start())
    start = begin.start() if begin else matches[0].start()
    end = SECTION_END.search(text, matches[-1].end())
    stop = end.end() if end else matches[-1].end()
    return (text[:start].rstrip() + " " + text[stop:].lstrip()).strip()


def _unique_ids(calls: list[LeakedCall]) -> list[LeakedCall]:
    """A model that repeats `:0` for two calls must not give two tool results the same id."""
    seen: set[str] = set()
    unique = []
    for number, call in enumerate(calls):
        if call.id in seen:
            call = LeakedCall(id=f"{call.id}.{number}", name=call.name, arguments=call.arguments)
        seen.add(call.id)
        unique.append(call)
    return unique


def join_arguments(fragments: Sequence[str]) -> tuple[str, bool]:
    """A call's argument text from its stream fragments, and whether whole and delta chunks were mixed."""
    parts = [part for part in fragments if part]
    joined = "".join(parts)
    if len(parts) < 2 or _json(joined) is not None:
        return joined, False
    for index, part in enumerate(parts):
        whole = _json(part)
        if whole is None:
            continue
        rest = "".join(parts[:index] + parts[index + 1 :])
        if part.startswith(rest) or _json(rest) == whole:
            return part, True
    return joined, False


def _json(text: str) -> object | None:
    """The JSON object `text` holds, or None (only objects count: tool arguments are objects)."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
