"""A benchmark's state and the pure steps between its jobs: the record kept in Redis, the cost estimate,
the cell runs (sharing one exploration per issue, judged by one fixed judge), a cell's result, and the
status comment. The RQ jobs that drive these are in `bot/bench/jobs.py`; `archon-bot bench` drives them
in-process.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Literal

import redis
from pydantic import BaseModel, Field

from bot.bench.aggregate import BenchSummary, summarize
from bot.bench.chart import quality_cost_png
from bot.bench.report import bench_html, bench_json, bench_markdown
from bot.bench.results import BenchSpec, CellKey, CellResult, ledger_fields
from bot.github.markers import with_marker
from bot.limits import index_active
from bot.providers.registry import ModelRegistry, ModelSpec
from bot.providers.types import Usage
from bot.runconfig import DEFAULT_WORKFLOW, ResolvedModel, RunConfig
from bot.runs import IssueInfo, NodeRun, NodeState, RunRecord, RunState, now
from bot.triggers import Role
from bot.workflow.schema import Workflow

BENCH_KIND = "bench"
RECORD_TTL = 90 * 24 * 3600

#: Rough multiples of the exploration's tokens each later node uses, for the estimate before a run.
ESTIMATE_FACTORS: dict[str, tuple[float, float]] = {  # node → (× exploration input, × exploration output)
    "plan": (1.0, 2.0),
    "implement": (3.0, 2.0),
    "self-review": (1.0, 1.0),
    "evaluate": (1.0, 1.0),
}


class CellRef(BaseModel):
    key: CellKey
    run_id: str
    job_id: str


class Exploration(BaseModel):
    issue: int
    text: str
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0
    model: str = ""


class BenchRecord(BaseModel):
    bench_id: str
    installation_id: int
    spec: BenchSpec
    explore: str = Field(description="The exploration model's alias (one exploration per issue).")
    issue: int = Field(description="Where the benchmark was asked for; its report is posted there.")
    requested_by: str
    open_prs: bool = False
    state: Literal["queued", "exploring", "running", "done", "failed"] = "queued"
    error: str | None = None
    estimate_usd: float | None = None
    cap_usd: float | None = None
    explorations: dict[int, Exploration] = Field(default_factory=dict)
    cells: list[CellRef] = Field(default_factory=list)
    status_comment_id: int | None = None
    report_dir: str | None = None
    created_at: datetime = Field(default_factory=now)
    finished_at: datetime | None = None

    @property
    def explore_cost_usd(self) -> float:
        return round(sum(e.cost_usd for e in self.explorations.values()), 8)


def bench_id_for(delivery_id: str) -> str:
    return "b" + hashlib.sha256(delivery_id.encode()).hexdigest()[:10]


class BenchStore:
    """Redis adapter: the bench record, and one result per cell (a hash, so cells write independently)."""

    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection

    def save(self, bench: BenchRecord) -> None:
        index = f"archon:issue-benches:{bench.spec.repo}#{bench.issue}"
        with self.redis.pipeline() as pipe:
            pipe.set(f"archon:bench:{bench.bench_id}", bench.model_dump_json(), ex=RECORD_TTL)
            pipe.zadd(index, {bench.bench_id: bench.created_at.timestamp()})
            pipe.expire(index, RECORD_TTL)
            active = bench.state not in ("done", "failed")
            index_active(pipe, bench.installation_id, f"bench:{bench.bench_id}", active)
            pipe.execute()

    def for_issue(self, repo: str, issue: int) -> list[BenchRecord]:
        ids = self.redis.zrange(f"archon:issue-benches:{repo}#{issue}", 0, -1)
        benches = (self.load(_text(i)) for i in ids)
        return [b for b in benches if b is not None]

    def load(self, bench_id: str) -> BenchRecord | None:
        raw = self.redis.get(f"archon:bench:{bench_id}")
        return BenchRecord.model_validate_json(raw) if raw else None

    def save_result(self, bench_id: str, run_id: str, result: CellResult) -> None:
        key = f"archon:bench-results:{bench_id}"
        self.redis.hset(key, run_id, result.model_dump_json())
        self.redis.expire(key, RECORD_TTL)

    def results(self, bench_id: str) -> dict[str, CellResult]:
        raw = self.redis.hgetall(f"archon:bench-results:{bench_id}")
        return {_text(k): CellResult.model_validate_json(v) for k, v in raw.items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# --- the estimate ------------------------------------------------------------------------------------


def estimate_usd(bench: BenchRecord, registry: ModelRegistry) -> float:
    """What the matrix will cost, from each issue's exploration and the price table (cache-blind, so on
    the high side): every cell's plan, implementation, self-review and judging, scaled from exploring."""
    total = bench.explore_cost_usd
    for exploration in bench.explorations.values():
        tokens_in = (
            exploration.usage.input_tokens
            + exploration.usage.cache_read_tokens
            + exploration.usage.cache_write_tokens
        )
        tokens_out = exploration.usage.output_tokens
        for plan, impl in bench.spec.pairings():
            roles = {"plan": plan, "implement": impl, "self-review": impl, "evaluate": bench.spec.judge[0]}
            for node, alias in roles.items():
                factor_in, factor_out = ESTIMATE_FACTORS[node]
                total += bench.spec.repeat * _price(
                    registry.get(alias), tokens_in * factor_in, tokens_out * factor_out
                )
    return round(total, 4)


def _price(spec: ModelSpec | None, tokens_in: float, tokens_out: float) -> float:
    if spec is None or spec.prices is None:
        return 0.0
    return (tokens_in * spec.prices.input + tokens_out * spec.prices.output) / 1_000_000


# --- cells ---------------------------------------------------------------------------------------------


def cell_config(bench: BenchRecord, key: CellKey, registry: ModelRegistry, workflow: str) -> RunConfig:
    aliases = {
        Role.EXPLORE: bench.explore,
        Role.PLAN: key.plan,
        Role.IMPL: key.impl,
        Role.EVAL: bench.spec.judge[0],
    }
    models = {role: ResolvedModel(alias=alias, spec=registry.get(alias)) for role, alias in aliases.items()}
    return RunConfig(repo=bench.spec.repo, issue=key.issue, workflow=workflow, models=models, gate="none")


def cell_record(bench: BenchRecord, ref: CellRef, config: RunConfig) -> RunRecord:
    """A run that starts with the issue's shared exploration already done (fairness: every pairing plans
    from the same notes, and exploring is paid once)."""
    exploration = bench.explorations[ref.key.issue]
    explored = NodeRun(
        id="explore",
        kind="agent",
        state=NodeState.DONE,
        model=bench.explore,
        answered_by=exploration.model,
        outputs={"text": exploration.text},
    )
    return RunRecord(
        run_id=ref.run_id,
        job_id=ref.job_id,
        installation_id=bench.installation_id,
        config=config,
        requested_by=bench.requested_by,
        trigger=f"benchmark `{bench.bench_id}`",
        nodes={"explore": explored},
        bench_id=bench.bench_id,
        open_pr=bench.open_prs,
    )


def explore_only(workflow: Workflow) -> Workflow:
    """The workflow cut down to its `explore` node: what a benchmark runs once per issue."""
    return workflow.model_copy(update={"nodes": (workflow.node("explore"),)})


def exploration_record(bench: BenchRecord, issue: IssueInfo, registry: ModelRegistry) -> RunRecord:
    """The run that explores one issue for every cell (models of the first pairing; only explore runs)."""
    key = CellKey(issue=issue.number, plan=bench.spec.plan[0], impl=bench.spec.impl[0])
    return RunRecord(
        run_id=f"{bench.bench_id}x{issue.number}",
        job_id="explore",
        installation_id=bench.installation_id,
        config=cell_config(bench, key, registry, DEFAULT_WORKFLOW),
        requested_by=bench.requested_by,
        trigger=f"benchmark `{bench.bench_id}`",
        issue=issue,
        bench_id=bench.bench_id,
        open_pr=False,
        started_at=now(),
        branch=f"archon/bench-{bench.bench_id}-explore-{issue.number}",
    )


class ExplorationError(RuntimeError):
    """Exploring an issue failed: the benchmark cannot start fairly without it."""


def exploration_of(bench: BenchRecord, record: RunRecord, state: RunState, summary: str) -> Exploration:
    node = record.nodes["explore"]
    if state is not RunState.DONE:
        raise ExplorationError(f"exploring #{record.config.issue} failed: {node.error or summary}")
    return Exploration(
        issue=record.config.issue,
        text=node.outputs["text"],
        usage=node.usage,
        cost_usd=node.cost_usd,
        model=node.answered_by or bench.explore,
    )


def cell_result(key: CellKey, record: RunRecord | None, failure: str | None = None) -> CellResult:
    """A cell's row: scores from the stored evaluation, cost and counters from the run's nodes."""
    if record is None:
        return CellResult(key=key, status="failed", reason=failure or "the cell never ran")
    nodes = [n for n in record.nodes.values() if n.id != "explore"]
    fields = ledger_fields(stats for n in nodes for stats in n.providers.values())
    fields["cost_usd"] = round(sum(n.cost_usd for n in nodes), 8)
    wall = (record.finished_at or now()) - (record.started_at or record.created_at)
    validation = next((n.outputs.get("passed") for n in nodes if n.kind == "validate" and n.outputs), None)
    common = dict(
        key=key,
        wall_s=max(0.0, wall.total_seconds()),
        validation_passed=validation,
        branch=record.branch,
        pr_url=record.pr_url or None,
        **fields,
    )
    evaluation = record.evaluation or {}
    if failure or evaluation.get("status") != "ok":
        reason = (
            failure or record.error or (evaluation.get("error") if evaluation else None) or "no evaluation"
        )
        return CellResult(status="failed", reason=reason, **common)
    scores = {d["dimension"]: d["mean"] for d in evaluation["dimensions"]}
    return CellResult(
        status="ok", scores=scores, total=evaluation["total"], out_of=evaluation["out_of"], **common
    )


# --- what people see ------------------------------------------------------------------------------------


def render_status(bench: BenchRecord, results: dict[str, CellResult]) -> str:
    """The benchmark's status comment: the matrix, the estimate, each cell as it finishes."""
    spec = bench.spec
    head = (
        f"### Archon benchmark `{bench.bench_id}` — {len(spec.issues)} issue(s) × {len(spec.pairings())} "
        f"pairing(s) × {spec.repeat} = {len(spec.cells())} cells"
    )
    state = {
        "queued": "⏳ Queued.",
        "exploring": "🔎 Exploring each issue once (shared by every cell).",
        "running": "🏃 Running the cells.",
        "done": "✅ Done.",
        "failed": "❌ Failed.",
    }[bench.state]
    lines = [head, "", state, ""]
    if bench.estimate_usd is not None:
        cap = f" (cap USD {bench.cap_usd:.2f})" if bench.cap_usd is not None else ""
        lines += [
            f"Estimated cost before starting: USD {bench.estimate_usd:.2f}{cap}; exploring cost USD "
            f"{bench.explore_cost_usd:.4f}.",
            "",
        ]
    if bench.error:
        lines += [f"**Reason:** {bench.error}", ""]
    if bench.cells:
        lines += [
            "| Issue | Plan | Implement | Repeat | Result | Cost |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for ref in bench.cells:
            lines.append(_cell_row(ref, results.get(ref.run_id)))
    return with_marker("\n".join(lines), BENCH_KIND, f"{bench.bench_id}-status")


def _cell_row(ref: CellRef, result: CellResult | None) -> str:
    key = ref.key
    if result is None:
        outcome, cost = "⏳ pending", "—"
    elif result.status == "ok":
        outcome, cost = f"✅ {result.total:g} / {result.out_of}", f"USD {result.cost_usd:.4f}"
    else:
        outcome, cost = f"❌ {(result.reason or '')[:120]}", f"USD {result.cost_usd:.4f}"
    return f"| #{key.issue} | `{key.plan}` | `{key.impl}` | {key.repeat} | {outcome} | {cost} |"


def write_report(summary: BenchSummary, results: list[CellResult], folder: Path) -> dict[str, Path]:
    """bench.json, bench.md, chart.png and bench.html in the benchmark's folder."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / name for name in ("bench.json", "bench.md", "chart.png", "bench.html")}
    paths["bench.json"].write_text(json.dumps(bench_json(summary, results), indent=2, default=str) + "\n")
    paths["bench.md"].write_text(bench_markdown(summary))
    quality_cost_png(summary, paths["chart.png"])
    paths["bench.html"].write_text(bench_html(summary, "chart.png"))
    return paths


def aggregate(bench: BenchRecord, results: dict[str, CellResult]) -> tuple[BenchSummary, list[CellResult]]:
    """Every cell has a row: one with no result (its job died without a word) is a failed row."""
    rows = [
        results.get(ref.run_id) or cell_result(ref.key, None, "the cell's job ended without a result")
        for ref in bench.cells
    ]
    return summarize(rows, bench.spec), rows
