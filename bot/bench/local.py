"""`archon-bot bench`: the plan × implement matrix on a local checkout or git URL, cell after cell.

The same steps as the webhook benchmark — one exploration per issue shared by every cell, the estimate
and its cap before anything expensive runs, one fixed blind judge — with results in a folder:
`bench.json`, `bench.md`, `chart.png`, `bench.html`, and each cell's plan, diff, review and ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from bot.bench.aggregate import headline
from bot.bench.orchestrate import (
    BenchRecord,
    CellRef,
    Exploration,
    aggregate,
    cell_config,
    cell_record,
    cell_result,
    estimate_usd,
    exploration_of,
    exploration_record,
    explore_only,
    write_report,
)
from bot.bench.results import BenchSpec, CellResult
from bot.limits import cells_refusal
from bot.local import LocalRepo, _new_id, open_repo, read_issue_file, run_record
from bot.providers.registry import unpriced_refusal
from bot.repo_config import bench_cap_usd
from bot.runconfig import DEFAULT_WORKFLOW
from bot.runs import IssueInfo, now
from bot.secrets import describe_error
from bot.settings import ConfigurationError, Settings
from bot.triggers import Role


@dataclass(frozen=True)
class LocalBench:
    repo: str
    issue_files: list[Path]
    plan: list[str]
    impl: list[str]
    repeat: int
    judge: list[str]
    explore: str | None
    out: Path
    max_usd: float | None = None


def bench_local(request: LocalBench, settings: Settings, console: Console | None = None) -> int:
    console = console or Console()
    local = open_repo(request.repo, settings)
    issues = {n: read_issue_file(path, n) for n, path in enumerate(request.issue_files, start=1)}
    spec = BenchSpec(
        repo=local.name,
        issues=list(issues),
        plan=request.plan,
        impl=request.impl,
        repeat=request.repeat,
        judge=request.judge or [local.defaults[Role.EVAL]],
    )
    explore = request.explore or local.defaults[Role.EXPLORE]
    unknown = sorted(
        {a for a in (*spec.plan, *spec.impl, *spec.judge, explore) if local.registry.get(a) is None}
    )
    if unknown:
        raise ConfigurationError(
            f"unknown model alias(es): {', '.join(unknown)}; valid: {', '.join(local.registry.aliases())}"
        )
    if why := _refusal(spec, explore, local, settings):
        raise ConfigurationError(why)
    bench = BenchRecord(
        bench_id=_new_id("lb", request.repo),
        installation_id=0,
        spec=spec,
        explore=explore,
        issue=spec.issues[0],
        requested_by="you",
    )
    folder = (request.out / bench.bench_id).resolve()
    console.print(f"Benchmark [bold]{bench.bench_id}[/]: {len(spec.cells())} cells on {request.repo}")
    for number, issue in issues.items():
        bench.explorations[number] = _explore(
            local, bench, issue, folder / f"explore-{number}", settings, console
        )
    bench.estimate_usd = estimate_usd(bench, local.registry)
    bench.cap_usd = request.max_usd or bench_cap_usd(local.config, settings)  # --max-usd: the operator's own
    console.print(f"Estimated cost: USD {bench.estimate_usd:.2f} (cap USD {bench.cap_usd:.2f})")
    if bench.estimate_usd > bench.cap_usd:
        console.print("[red]Above the cap: nothing more runs. Narrow the matrix or pass --max-usd.[/]")
        return 2
    results: dict[str, CellResult] = {}
    for index, key in enumerate(spec.cells(), start=1):
        ref = CellRef(key=key, run_id=f"{bench.bench_id}c{index}", job_id="local")
        bench.cells.append(ref)
        results[ref.run_id] = _cell(
            local, bench, ref, issues[key.issue], folder / "cells" / ref.run_id, settings, console
        )
    summary, rows = aggregate(bench, results)
    paths = write_report(summary, rows, folder)
    console.print(f"\n[bold]{headline(summary)}[/]\nReport: {paths['bench.md']} · {paths['bench.html']}")
    return 0


def _refusal(spec: BenchSpec, explore: str, local: LocalRepo, settings: Settings) -> str | None:
    """Why the matrix may not start, before any model is called: too many cells, or an unpriced alias."""
    if why := cells_refusal(len(spec.issues), len(spec.pairings()), spec.repeat, settings):
        return why
    allow = settings.archon_allow_unpriced_models
    for alias in dict.fromkeys((*spec.plan, *spec.impl, *spec.judge, explore)):
        if why := unpriced_refusal(alias, local.registry.get(alias), allow):  # type: ignore[arg-type]
            return why
    return None


def _explore(
    local: LocalRepo, bench: BenchRecord, issue: IssueInfo, folder: Path, settings: Settings, console: Console
) -> Exploration:
    record = exploration_record(bench, issue, local.registry)
    console.print(f"Exploring #{issue.number}: {issue.title}")
    outcome, _ = run_record(
        local, record, explore_only(local.workflows[DEFAULT_WORKFLOW]), folder, settings, console
    )
    return exploration_of(bench, record, outcome.state, outcome.summary)


def _cell(
    local: LocalRepo,
    bench: BenchRecord,
    ref: CellRef,
    issue: IssueInfo,
    folder: Path,
    settings: Settings,
    console: Console,
) -> CellResult:
    key = ref.key
    console.print(f"Cell #{key.issue} plan={key.plan} impl={key.impl} repeat {key.repeat}")
    record = cell_record(bench, ref, cell_config(bench, key, local.registry, DEFAULT_WORKFLOW))
    record.issue, record.started_at = issue, now()
    try:
        run_record(local, record, local.workflows[DEFAULT_WORKFLOW], folder, settings, console)
    except Exception as error:  # a crashed cell is a failed row with its reason, and the matrix goes on
        return cell_result(key, record, describe_error(error))
    return cell_result(key, record)
