"""Agent-loop overhead: a tool loop through `Agent` against the same number of bare provider calls.

Both sides talk to the same fake Anthropic server through the real SDK (streaming, the adapter's cache
breakpoints and accounting included), so the difference is what the loop adds: building requests from a
growing conversation, running tools in a worktree, the ledger and the transcript. Reported as a ratio to
the bare calls measured in the same run; record it in docs/performance.md.

    .venv/bin/python scripts/bench_agent_loop.py --turns 40
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from bot.agent.loop import Agent, AgentLimits
from bot.agent.tools import ALL, Toolbox
from bot.fakes.anthropic import FakeAnthropic, Reply, ToolCall
from bot.providers.anthropic import AnthropicProvider
from bot.providers.registry import DEFAULT_MODELS
from bot.providers.types import Message, ModelRequest, ModelSlot, TextBlock

SPEC = DEFAULT_MODELS["sonnet"]


def _repo(root: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    for i in range(20):
        (root / f"module_{i}.py").write_text("".join(f"def f{j}():\n    return {j}\n" for j in range(50)))
    return root


def _script(turns: int) -> list[Reply]:
    calls = [ToolCall("read_file", {"path": f"module_{i % 20}.py", "limit": 60}) for i in range(turns - 1)]
    return [Reply(tool_calls=[call]) for call in calls] + [Reply(text="done")]


def _bare(provider: AnthropicProvider, turns: int) -> float:
    request = ModelRequest(system="s", messages=(Message(role="user", content=(TextBlock(text="go"),)),))
    started = time.perf_counter()
    for _ in range(turns):
        provider.complete(request)
    return time.perf_counter() - started


def _loop(provider: AnthropicProvider, root: Path, turns: int, transcript: Path) -> float:
    agent = Agent(
        [ModelSlot(provider, SPEC)],
        Toolbox(root, ALL),
        AgentLimits(max_turns=turns + 1),
        transcript_path=transcript,
    )
    started = time.perf_counter()
    result = agent.run("You read code.", "Read every module.")
    assert result.completed and result.turns == turns, result.stop_detail
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    turns, rounds = parser.parse_args().turns, parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as tmp, FakeAnthropic() as fake:
        root = _repo(Path(tmp) / "repo")
        provider = AnthropicProvider(SPEC, api_key="bench", base_url=fake.base_url)
        bare, loop = [], []
        for round_ in range(rounds):
            fake.script(*[Reply(text="ok") for _ in range(turns)])
            bare.append(_bare(provider, turns))
            fake.script(*_script(turns))
            loop.append(_loop(provider, root, turns, Path(tmp) / f"t{round_}.jsonl"))
    best_bare, best_loop = min(bare), min(loop)
    print(
        f"bare provider calls: {turns} in {best_bare * 1000:.0f} ms ({best_bare / turns * 1000:.1f} ms/call)"
    )
    print(
        f"agent loop turns:    {turns} in {best_loop * 1000:.0f} ms ({best_loop / turns * 1000:.1f} ms/turn)"
    )
    print(f"loop / bare: {best_loop / best_bare:.2f}x (best of {rounds} rounds)")


if __name__ == "__main__":
    main()
