"""Harness: what the agent loop costs per turn outside the provider call, and the prompt cache's share.

Overhead: 50 turns through `Agent` (each a `read_file` tool call on a 100-line module in a real git
worktree, ledger and JSON-lines transcript on) against 50 bare `AnthropicProvider.complete` calls, both
through the real Anthropic SDK (streaming) to the same fake Messages API on loopback, whose sockets have
TCP_NODELAY (with Nagle on, every call waited ~40 ms for a delayed ACK and hid the loop's cost). The
provider is timed inside the loop too, so "outside the provider call" is the loop's own time: building
requests, tools, ledger, transcript. Rounds interleave loop and bare; medians are reported, since other
work shares the machine's two cores.

Cache share: the same loop against the fake with its prompt cache on (`FakeAnthropic(cache=True)`: it
counts tokens and applies the API's caching rules), the share of input tokens behind breakpoints
(cache read + cache write over all input) on turn 10.

    .venv/bin/python scripts/bench_harness.py [--quick]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchkit import Figure, interleaved, median

from bot.agent.loop import Agent, AgentLimits
from bot.agent.tools import ALL, Toolbox
from bot.fakes.anthropic import FakeAnthropic, Reply, ToolCall, Usage
from bot.providers.anthropic import AnthropicProvider
from bot.providers.registry import DEFAULT_MODELS
from bot.providers.types import Message, ModelRequest, ModelResponse, ModelSlot, TextBlock

SPEC = DEFAULT_MODELS["sonnet"]
TURNS = 50
CACHE_TURN = 10
SYSTEM = "You read code and report what each module defines. " * 40  # a realistic, cacheable prompt


class TimedProvider:
    """The provider, with the time spent inside `complete` summed (what the loop does not own)."""

    def __init__(self, inner: AnthropicProvider) -> None:
        self.inner, self.name, self.model, self.spent = inner, inner.name, inner.model, 0.0

    def complete(self, request: ModelRequest) -> ModelResponse:
        started = time.perf_counter()
        try:
            return self.inner.complete(request)
        finally:
            self.spent += time.perf_counter() - started


def make_repo(root: Path, files: int = 20, lines: int = 50) -> Path:
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    for i in range(files):
        body = "".join(f"def f{j}():\n    return {j}\n" for j in range(lines))
        (root / f"module_{i}.py").write_text(body)
    return root


def script(turns: int) -> list[Reply]:
    calls = [ToolCall("read_file", {"path": f"module_{i % 20}.py", "limit": 60}) for i in range(turns - 1)]
    return [Reply(tool_calls=[call], usage=Usage(output_tokens=40)) for call in calls] + [Reply(text="done")]


def run_loop(provider: TimedProvider, root: Path, turns: int, transcript: Path) -> Agent:
    agent = Agent(
        [ModelSlot(provider, SPEC)],
        Toolbox(root, ALL),
        AgentLimits(max_turns=turns + 1),
        transcript_path=transcript,
    )
    result = agent.run(SYSTEM, "Read every module.")
    assert result.completed and result.turns == turns, result.stop_detail
    return agent


def overhead(rounds: int, tmp: Path) -> list[Figure]:
    root = make_repo(tmp / "repo")
    outside: list[float] = []
    with FakeAnthropic() as fake:
        provider = TimedProvider(AnthropicProvider(SPEC, api_key="bench", base_url=fake.base_url))
        bare = ModelRequest(system="s", messages=(Message(role="user", content=(TextBlock(text="go"),)),))

        def bare_calls() -> None:
            fake.script(*[Reply(text="ok") for _ in range(TURNS)])
            for _ in range(TURNS):
                provider.inner.complete(bare)

        def loop() -> None:
            fake.script(*script(TURNS))
            provider.spent = 0.0
            started = time.perf_counter()
            run_loop(provider, root, TURNS, tmp / f"t{len(outside)}.jsonl")
            outside.append(time.perf_counter() - started - provider.spent)

        samples = interleaved({"bare": bare_calls, "loop": loop}, rounds)
    bare_ms, loop_ms = (median(samples[side]) / TURNS * 1000 for side in ("bare", "loop"))
    outside_ms = median(outside) / TURNS * 1000
    detail = f"median of {rounds} interleaved rounds of {TURNS} turns; loaded 2-core machine"
    return [
        Figure(
            "harness",
            f"loop time per turn outside the provider call ({TURNS} turns)",
            outside_ms,
            unit=" ms",
            target=2.0,
            detail=f"loop {loop_ms:.2f} ms/turn, of which provider {loop_ms - outside_ms:.2f}; {detail}",
        ),
        Figure(
            "harness",
            "loop turn ÷ bare provider call (TCP_NODELAY)",
            loop_ms / bare_ms,
            detail=f"bare {bare_ms:.2f} ms/call, loop {loop_ms:.2f} ms/turn (its request grows); {detail}",
        ),
    ]


def cache_share(tmp: Path) -> list[Figure]:
    root = make_repo(tmp / "cache-repo")
    with FakeAnthropic(cache=True) as fake:
        provider = TimedProvider(AnthropicProvider(SPEC, api_key="bench", base_url=fake.base_url))
        fake.script(*script(CACHE_TURN))
        agent = run_loop(provider, root, CACHE_TURN, tmp / "cache.jsonl")
    usage = agent.ledger.calls[CACHE_TURN - 1].usage
    behind = usage.cache_read_tokens + usage.cache_write_tokens
    total = behind + usage.input_tokens
    return [
        Figure(
            "harness",
            f"Anthropic input behind cache breakpoints, turn {CACHE_TURN}",
            behind / total,
            unit="",
            target=0.9,
            better="higher",
            detail=f"read {usage.cache_read_tokens:,} + written {usage.cache_write_tokens:,} of {total:,} "
            f"input tokens (read alone {usage.cache_read_tokens / total:.0%}); fake's token count",
        )
    ]


def figures(quick: bool = False) -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp:
        return overhead(3 if quick else 9, Path(tmp)) + cache_share(Path(tmp))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    for figure in figures(parser.parse_args().quick):
        print(f"{figure.measure}: {figure.value:.3g}{figure.unit} (target {figure.target}) — {figure.detail}")
