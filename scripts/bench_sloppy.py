"""Sloppy implementers (issue 14): does the run still succeed, and what does the sloppiness cost?

Every mistake of the issue, through the real wire: the implementer is `OpenAICompatProvider` (Kimi via
Moonshot, streamed) driving the real `openai` SDK against `FakeOpenAI(moonshot=True)`. The fake plays the
implement turns of a `ScriptedProvider` (`WireImplementer`): the scripted model mangles its edits
(`Sloppiness`: line-number prefixes, tabs for spaces, trailing whitespace, one indentation level off) and,
reading a refused edit's `ERROR:` tool message, sends it again (up to `max_retries`); the fake then makes
the wire mistakes (`Sloppy`: tool calls leaked as Kimi markup in `content`, mixed incremental and whole
argument chunks, no `[DONE]`). Every mistake is made at `RATE` (30 %), independently, from the run's seed.

Sides, interleaved per seed: clean; sloppy with recovery on (`recover=True`, `Toolbox(forgiving_edits=
True)`); sloppy with recovery off (`recover=False`, exact edits only) — where a leaked call ends the turn
as if the model were done, so it mostly fails; and edit mistakes only with recovery off, to show what each
refused edit costs when the wire is clean. Tasks: the sample repository
(`bot/sample_repo.py`, the demo's implement script, checked by its own tests) and a real project — idna 3.7
from the vendored sdist (`tests/projects.py`), its planted off-by-one fixed in three edits of
`idna/core.py` by `IDNA_TURNS`, checked by running idna's own `tests.test_idna` and `tests.test_idna_codec`.
With recovery off a call broken on the wire is not re-sent (the scripted model re-sends only edits it
mangled itself), so that side is a lower bound of what recovery saves.

Figures per task: success rate with recovery on (target 1.0, every run), mean turns and median tokens per
successful run against clean (target ≤ 1.10 turns), refused edits per run, and the same with recovery off.
The models are deterministic per seed, so the counts are not timing-noisy (only the wall time is).

    .venv/bin/python scripts/bench_sloppy.py [--quick]
"""

# ruff: noqa: E402  (the imports follow the sys.path set-up, as a script run alone needs)
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(Path(__file__).resolve().parent), str(ROOT)]

from benchkit import Figure

from bot.agent.ledger import ProviderStats
from bot.agent.loop import Agent, AgentLimits
from bot.agent.tools import ALL, Toolbox
from bot.fakes.openai_compat import FakeOpenAI, RecordedRequest, Reply, Sloppy, ToolCall, Usage
from bot.providers.factory import BUNDLED_SCRIPTS
from bot.providers.openai_compat import TOOL_ERROR_PREFIX, OpenAICompatProvider
from bot.providers.registry import DEFAULT_MODELS
from bot.providers.scripted import (
    ScriptedProvider,
    ScriptedToolCall,
    ScriptedTurn,
    ScriptExhaustedError,
    Sloppiness,
    load_script,
)
from bot.providers.types import (
    CallLimits,
    Message,
    ModelRequest,
    ModelResponse,
    ModelSlot,
    ProviderError,
    ToolResultBlock,
)
from bot.providers.types import Usage as ModelUsage
from bot.sample_repo import FILES, VALIDATE

NAME = "sloppy"
RATE = 0.3
KIMI = DEFAULT_MODELS["kimi"]
KEY = "sk-bench-0123456789abcdef"
LIMITS = CallLimits(timeout_s=30, stall_timeout_s=10.0, max_retries=2)
SYSTEM = "You implement plans."
SIDES = ("clean", "sloppy, recovery on", "sloppy, recovery off", "sloppy edits only, recovery off")
PLACEHOLDERS = 200  # fake turns to stand in for the scripted model's answers (more than any run needs)
FINISHED = "Nothing left to do."  # what the implementer says once its script is played out

_CORE = "idna/core.py"
_LABEL_OLD = "def valid_label_length(label: Union[bytes, str]) -> bool:\n    if len(label) > 64:\n"
_LABEL_NEW = "def valid_label_length(label: Union[bytes, str]) -> bool:\n    if len(label) > 63:\n"
_STRING_OLD = (
    "def valid_string_length(label: Union[bytes, str], trailing_dot: bool) -> bool:\n"
    "    if len(label) > (254 if trailing_dot else 253):\n"
)
_STRING_NEW = (
    "def valid_string_length(label: Union[bytes, str], trailing_dot: bool) -> bool:\n"
    '    """At most 253 octets, or 254 with the trailing dot (RFC 1035 section 2.3.4)."""\n'
    "    if len(label) > (254 if trailing_dot else 253):\n"
)
_LABEL_DOC_OLD = "    if len(label) > 63:\n        return False\n"
_LABEL_DOC_NEW = (
    "    if len(label) > 63:  # RFC 1035 section 2.3.4: labels are 63 octets or less\n        return False\n"
)
_IDNA_TESTS = ("tests.test_idna", "tests.test_idna_codec")


def _edit(old: str, new: str) -> ScriptedToolCall:
    return ScriptedToolCall(name="edit_file", arguments={"path": _CORE, "old_string": old, "new_string": new})


IDNA_TURNS = [  # a scripted implement task on the real idna: read, three edits, a quick test run, done
    ScriptedTurn(
        text="Following the plan.",
        tool_calls=[ScriptedToolCall(name="read_file", arguments={"path": _CORE})],
        usage=ModelUsage(input_tokens=2400, output_tokens=40),
    ),
    ScriptedTurn(
        tool_calls=[_edit(_LABEL_OLD, _LABEL_NEW)],
        usage=ModelUsage(input_tokens=5200, output_tokens=60, cache_read_tokens=2400),
    ),
    ScriptedTurn(
        tool_calls=[_edit(_STRING_OLD, _STRING_NEW)],
        usage=ModelUsage(input_tokens=240, output_tokens=80, cache_read_tokens=7600),
    ),
    ScriptedTurn(
        tool_calls=[_edit(_LABEL_DOC_OLD, _LABEL_DOC_NEW)],
        usage=ModelUsage(input_tokens=220, output_tokens=90, cache_read_tokens=7840),
    ),
    ScriptedTurn(
        tool_calls=[
            ScriptedToolCall(name="run", arguments={"command": "python3 -m unittest -q tests.test_idna"})
        ],
        usage=ModelUsage(input_tokens=200, output_tokens=30, cache_read_tokens=8060),
    ),
    ScriptedTurn(
        text="Fixed `valid_label_length` (63 octets, not 64), documented the limits; test_idna passes.",
        usage=ModelUsage(input_tokens=260, output_tokens=70, cache_read_tokens=8260),
    ),
]


# --- the implementer on the wire ---------------------------------------------------------------------


class WireImplementer(FakeOpenAI):
    """`FakeOpenAI` whose answers are a `ScriptedProvider`'s, computed from each request as it arrives.

    The wire request's `tool` messages after the last assistant message become the scripted model's tool
    results (matched by position to the calls it made; an `ERROR: ` message is a refusal), so it re-sends
    an edit it mangled exactly as it does in-process. The fake's own sloppy mode then plays the answer.
    Placeholder turns are scripted so the base class serves each request; their content is replaced."""

    def __init__(self, scripted: ScriptedProvider, sloppy: Sloppy | None) -> None:
        super().__init__(moonshot=True, sloppy=sloppy)
        self.scripted = scripted
        self._last_ids: list[str] = []
        self.script(*[Reply()] * PLACEHOLDERS)

    def message_body(self, reply: Reply, request: RecordedRequest) -> dict[str, Any]:
        return super().message_body(self._answer(request), request)

    def stream_events(self, reply: Reply, request: RecordedRequest) -> list[bytes]:
        return super().stream_events(self._answer(request), request)

    def _answer(self, request: RecordedRequest) -> Reply:
        results = tool_results(request.body["messages"], self._last_ids)
        model_request = ModelRequest(system=SYSTEM, messages=(Message(role="user", content=results),))
        try:
            response = self.scripted.complete(model_request)
        except ScriptExhaustedError:
            return Reply(text=FINISHED)
        self._last_ids = [call.id for call in response.message.tool_calls()]
        return as_reply(response)


def tool_results(messages: Sequence[dict[str, Any]], call_ids: Sequence[str]) -> tuple[ToolResultBlock, ...]:
    """The `tool` messages answering the last assistant message, as results of the scripted calls."""
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=len(messages))
    answers = [m for m in messages[last + 1 :] if m.get("role") == "tool"]
    return tuple(
        ToolResultBlock(
            call_id=call_id,
            content=str(answer.get("content") or ""),
            is_error=str(answer.get("content") or "").startswith(TOOL_ERROR_PREFIX),
        )
        for call_id, answer in zip(call_ids, answers, strict=False)
    )


def as_reply(response: ModelResponse) -> Reply:
    """A scripted answer as the fake's `Reply` (OpenAI prompt tokens include the cached ones)."""
    usage = response.usage
    thinking = "".join(b.text for b in response.message.content if b.type == "thinking") or None
    calls = [ToolCall(name=c.name, raw_arguments=c.arguments) for c in response.message.tool_calls()]
    return Reply(
        text=response.message.text(),
        thinking=thinking,
        tool_calls=calls,
        usage=Usage(
            input_tokens=usage.input_tokens + usage.cache_read_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
        ),
    )


# --- tasks -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    name: str
    turns: Sequence[ScriptedTurn]
    build: Callable[[Path], Path]  # a fresh checkout under the directory given; its root
    check: Callable[[Path], bool]  # the project's own tests pass on the result
    prompt: str


def _sample_repo(workdir: Path) -> Path:
    for path, text in FILES.items():
        (workdir / path).parent.mkdir(parents=True, exist_ok=True)
        (workdir / path).write_text(text)
    subprocess.run(["git", "init", "-q", str(workdir)], check=True)
    return workdir


def _sample_ok(root: Path) -> bool:
    return subprocess.run(VALIDATE, shell=True, cwd=root, capture_output=True, check=False).returncode == 0


_BUILT: dict[Path, Any] = {}  # checkout root → its `tests.projects.RealProject`


def _idna_repo(workdir: Path) -> Path:
    from tests.projects import real_project

    project = real_project("idna", workdir)  # on `main`: the planted off-by-one
    _BUILT[project.repo] = project
    return project.repo


def _idna_ok(root: Path) -> bool:
    from tests.projects import run_tests

    run = run_tests(_BUILT.pop(root), root, Path(sys.executable), *_IDNA_TESTS)
    text = (root / _CORE).read_text()
    return run.exit_code == 0 and "len(label) > 64" not in text and _STRING_NEW in text


def tasks() -> list[Task]:
    demo = load_script(Path(str(resources.files(BUNDLED_SCRIPTS) / "demo-kimi-implement.jsonl")))
    return [
        Task("sample repo", demo, _sample_repo, _sample_ok, "Fix slugify."),
        Task("idna 3.7", IDNA_TURNS, _idna_repo, _idna_ok, "Fix valid_label_length: at most 63 octets."),
    ]


# --- runs --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    ok: bool
    turns: int
    tokens: int
    refused: int
    fallback: int
    recovered: int
    edit_mistakes: int
    wire_mistakes: int
    error: str | None = None


def one_run(task: Task, side: str, seed: int, workdir: Path) -> Outcome:
    sloppy, recover = side != "clean", not side.endswith("recovery off")
    wire_sloppy = sloppy and "edits only" not in side
    root = task.build(workdir)
    scripted = ScriptedProvider(
        task.turns, label="sloppy-kimi", sloppy=Sloppiness(rate=RATE, seed=seed) if sloppy else None
    )
    wire = Sloppy(leak_markup=RATE, mixed_chunks=RATE, drop_done=RATE, seed=seed) if wire_sloppy else None
    with WireImplementer(scripted, wire) as fake:
        provider = OpenAICompatProvider(
            KIMI, api_key=KEY, base_url=fake.base_url, limits=LIMITS, recover=recover
        )
        box = Toolbox(root, ALL, forgiving_edits=recover)
        agent = Agent([ModelSlot(provider, KIMI)], box, AgentLimits(max_turns=30))
        error = None
        try:
            result = agent.run(SYSTEM, task.prompt)
            completed, turns = result.completed, result.turns
        except ProviderError as failure:  # counted as a failed run, with its kind
            completed, turns, error = False, len(agent.ledger.calls), failure.kind
        finally:
            provider.close()
        quirks = len(fake.quirks)
    stats = sum(agent.ledger.providers.values(), ProviderStats())
    return Outcome(
        ok=completed and task.check(root),
        turns=turns,
        tokens=agent.ledger.usage.total,
        refused=stats.edits_refused,
        fallback=stats.edits_fallback,
        recovered=stats.recovered_calls,
        edit_mistakes=len(scripted.mistakes),
        wire_mistakes=quirks,
        error=error,
    )


def measure(runs: int, chosen: Sequence[Task] | None = None) -> dict[str, dict[str, list[Outcome]]]:
    """Outcomes by task and side; seeds interleaved across the sides (and the tasks)."""
    chosen = list(chosen or tasks())
    out = {t.name: {side: [] for side in SIDES} for t in chosen}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(runs):
            for task in chosen:
                for number, side in enumerate(SIDES):
                    work = Path(tmp) / f"{seed}-{task.name.split()[0]}-{number}"
                    work.mkdir()
                    out[task.name][side].append(one_run(task, side, seed, work))
    return out


def _ok(rows: list[Outcome], field: str, how: Callable[[list[float]], float]) -> float:
    values = [getattr(o, field) for o in rows if o.ok]
    return how(values) if values else float("nan")


def _mean(rows: list[Outcome], field: str) -> float:
    return statistics.fmean(getattr(o, field) for o in rows)


def task_figures(task: str, out: dict[str, list[Outcome]]) -> list[Figure]:
    clean = out["clean"]
    clean_turns, clean_tokens = _ok(clean, "turns", statistics.fmean), _ok(clean, "tokens", statistics.median)
    found = [
        Figure(
            NAME,
            f"{task}: success rate, clean",
            sum(o.ok for o in clean) / len(clean),
            "",
            1.0,
            "higher",
            f"control; {clean_turns:.2f} turns, {clean_tokens:,.0f} tokens per run",
        )
    ]
    for side in SIDES[1:]:
        rows = out[side]
        on = side.endswith("on")
        errors = sorted({o.error for o in rows if o.error})
        undone = sum(not o.ok and o.error is None for o in rows)
        detail = (
            f"{sum(o.ok for o in rows)}/{len(rows)} runs; per run {_mean(rows, 'edit_mistakes'):.1f} edit "
            f"and {_mean(rows, 'wire_mistakes'):.1f} wire mistakes, {_mean(rows, 'recovered'):.1f} calls "
            f"recovered, {_mean(rows, 'fallback'):.1f} edits by a fallback"
            + (f"; {undone} ended with the work undone" if undone else "")
            + (f"; provider errors {', '.join(errors)}" if errors else "")
        )
        turns = _ok(rows, "turns", statistics.fmean)
        tokens = _ok(rows, "tokens", statistics.median)
        found += [
            Figure(
                NAME,
                f"{task}: success rate, {side}",
                sum(o.ok for o in rows) / len(rows),
                "",
                1.0 if on else None,
                "higher",
                detail,
            ),
            Figure(
                NAME,
                f"{task}: turns per successful run, {side} ÷ clean",
                turns / clean_turns,
                target=1.10 if on else None,
                detail=f"means, {turns:.2f} vs {clean_turns:.2f}",
            ),
            Figure(
                NAME,
                f"{task}: tokens per successful run, {side} ÷ clean",
                tokens / clean_tokens,
                detail=f"medians, {tokens:,.0f} vs {clean_tokens:,.0f}",
            ),
            Figure(
                NAME,
                f"{task}: refused edits per run, {side}",
                _mean(rows, "refused"),
                "",
                better="lower",
                detail="all runs",
            ),
        ]
    return found


def figures(quick: bool = False) -> list[Figure]:
    out = measure(4 if quick else 30)
    return [figure for task, sides in out.items() for figure in task_figures(task, sides)]


if __name__ == "__main__":
    from bench import table
    from rich.console import Console

    Console(width=180).print(table(figures(quick="--quick" in sys.argv)))
