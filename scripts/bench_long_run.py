"""Long runs: a 200-turn scripted implementation on a 200k-token window, with trimming on and off.

The script reads 40 modules of ~8 KB (each read ~2k tokens), edits one every fifth turn and runs
`git status` every tenth, against the fake Messages API with its prompt cache on (`FakeAnthropic(cache=
True)` counts tokens and applies the API's caching rules), so the usage and cost in the ledger are the
ones the run would be billed. Off (today's loop): the conversation grows until `context_full`. On: older
tool results become stubs past 80% of the window, down to 50% (`bot.agent.context.ContextPolicy`).
Token counts are deterministic; one run per side. The token and cost budgets are raised so that only
the context window can stop either side.

    .venv/bin/python scripts/bench_long_run.py
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchkit import Figure

from bot.agent.context import ContextPolicy
from bot.agent.loop import Agent, AgentLimits, AgentResult
from bot.agent.tools import ALL, Toolbox
from bot.fakes.anthropic import FakeAnthropic, Reply, ToolCall, Usage
from bot.providers.anthropic import AnthropicProvider
from bot.providers.registry import DEFAULT_MODELS
from bot.providers.types import ModelSlot

SPEC = DEFAULT_MODELS["sonnet"].model_copy(update={"context_window": 200_000, "max_output_tokens": 16_000})
TURNS = 200
MODULES = 40
SYSTEM = "You implement the issue in this repository, reading before you edit. " * 30


def make_repo(root: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    for i in range(MODULES):
        body = "".join(f"def handler_{j}(request):\n    return respond(request, {j})\n\n" for j in range(160))
        (root / f"module_{i}.py").write_text(body)
    return root


def call(turn: int) -> ToolCall:
    module = f"module_{turn % MODULES}.py"
    if turn % 10 == 9:
        return ToolCall("run", {"command": "git status --short | head -5"})
    if turn % 5 == 4:
        edit = {
            "path": module,
            "old_string": f"respond(request, {turn % 160})",
            "new_string": "respond(request)",
        }
        return ToolCall("edit_file", {**edit, "replace_all": True})
    return ToolCall("read_file", {"path": module, "limit": 2000})


def script(turns: int) -> list[Reply]:
    replies = [
        Reply(text="Next.", tool_calls=[call(t)], usage=Usage(output_tokens=120)) for t in range(turns - 1)
    ]
    return [*replies, Reply(text="Implemented.", usage=Usage(output_tokens=200))]


def run(tmp: Path, name: str, policy: ContextPolicy, turns: int) -> tuple[AgentResult, int]:
    root = make_repo(tmp / name)
    with FakeAnthropic(cache=True) as fake:
        fake.script(*script(turns))
        provider = AnthropicProvider(SPEC, api_key="bench", base_url=fake.base_url)
        agent = Agent(
            [ModelSlot(provider, SPEC)],
            Toolbox(root, ALL),
            AgentLimits(max_turns=turns + 1, max_cost_usd=1000, max_tokens=10**9),
            context=policy,
        )
        return agent.run(SYSTEM, "Implement the issue."), agent.history.trims


def _summary(result: AgentResult) -> str:
    usage = result.ledger.usage
    return (
        f"{result.stop} after {result.turns} turns, {usage.total:,} tokens "
        f"({usage.cache_read_tokens:,} cache read), ${result.ledger.cost_usd:.2f}"
    )


def _cost(result: AgentResult, turns: int) -> float:
    return sum(call.cost_usd for call in result.ledger.calls if call.turn <= turns)


def _read_share(result: AgentResult) -> float:
    calls = [c.usage for c in result.ledger.calls[10:]]
    return sum(u.cache_read_tokens for u in calls) / max(1, sum(u.total - u.output_tokens for u in calls))


def _cache_share_after_trims(result: AgentResult) -> float:
    calls = [c.usage for c in result.ledger.calls[10:]]
    behind = sum(u.cache_read_tokens + u.cache_write_tokens for u in calls)
    return behind / max(1, behind + sum(u.input_tokens for u in calls))


def figures(quick: bool = False) -> list[Figure]:
    turns = TURNS
    with tempfile.TemporaryDirectory() as tmp:
        off, _ = run(Path(tmp), "off", ContextPolicy(enabled=False), turns)
        on, trims = run(Path(tmp), "on", ContextPolicy(), turns)
    per_turn = {side: r.ledger.cost_usd / r.turns for side, r in (("on", on), ("off", off))}
    tokens = {side: r.ledger.usage.total / r.turns for side, r in (("on", on), ("off", off))}
    both = f"on: {_summary(on)}, {trims} trims; off: {_summary(off)}"
    return [
        Figure(
            "long-run",
            f"turns completed of {turns}, trimming on",
            on.turns / turns,
            unit="",
            target=1,
            better="higher",
            detail=both,
        ),
        Figure(
            "long-run",
            f"turns completed of {turns}, today's loop (off)",
            off.turns / turns,
            unit="",
            detail=f"stops with {off.stop}: {off.stop_detail}",
        ),
        Figure(
            "long-run",
            "cost per turn, on ÷ off",
            per_turn["on"] / per_turn["off"],
            detail=f"${per_turn['on']:.4f} vs ${per_turn['off']:.4f} a turn; total ${on.ledger.cost_usd:.2f} "
            f"for {on.turns} turns vs ${off.ledger.cost_usd:.2f} for {off.turns}",
        ),
        Figure(
            "long-run",
            f"cost of the first {off.turns} turns, on ÷ off",
            _cost(on, off.turns) / _cost(off, off.turns),
            detail=f"${_cost(on, off.turns):.2f} vs ${_cost(off, off.turns):.2f}: the same turns",
        ),
        Figure(
            "long-run",
            "tokens per turn, on ÷ off",
            tokens["on"] / tokens["off"],
            detail=f"{tokens['on']:,.0f} vs {tokens['off']:,.0f} a turn",
        ),
        Figure(
            "long-run",
            "input behind cache breakpoints after turn 10, trimming on",
            _cache_share_after_trims(on),
            unit="",
            target=0.9,
            better="higher",
            detail=f"off: {_cache_share_after_trims(off):.3f}; cache read alone: on {_read_share(on):.3f}, "
            f"off {_read_share(off):.3f}",
        ),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    for figure in figures(parser.parse_args().quick):
        print(f"{figure.measure}: {figure.value:.3g}{figure.unit} (target {figure.target}) — {figure.detail}")
