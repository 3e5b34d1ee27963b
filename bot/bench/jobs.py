"""The benchmark's RQ jobs: start (explore each issue once, estimate, fan out), one job per cell, and an
aggregation job that RQ runs once every cell has finished or failed (a dependency that allows failure).

Cells run in parallel across run workers and machines; each has its own worktree and pushed branch.
Every job's failure goes through `bot.failures` and ends on the benchmark's status comment.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from rq import Callback, Queue, get_current_job
from rq.job import Dependency, Job

from bot import failures
from bot.bench.orchestrate import (
    BENCH_KIND,
    BenchRecord,
    BenchStore,
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
    render_status,
    write_report,
)
from bot.bench.report import bench_markdown
from bot.github.auth import installation_client
from bot.github.forge import RepoForge
from bot.logs import log_context
from bot.providers.registry import ModelRegistry
from bot.publish import GitHubPublisher
from bot.queue import RUNS_QUEUE, WORK_FAILURE_TTL, WORK_RESULT_TTL, JobQueue
from bot.repo_config import CONFIG_PATH, RepoConfig, bench_cap_usd, parse_repo_config, registry_for
from bot.runconfig import DEFAULT_WORKFLOW
from bot.runner import RunSetup, execute_in, git_workspace, run_on_github
from bot.runs import IssueInfo, RunRecord, RunState, RunStore, now
from bot.settings import Settings, load_settings
from bot.workflow.schema import REPO_DIR, Workflow, load_workflows

log = logging.getLogger(__name__)


class SilentPublisher(GitHubPublisher):
    """Cells publish nothing on the issue while they run (a matrix would flood it): plans stay in the
    record and progress only in Redis. Pull requests (when asked) and their reviews go out as usual."""

    def __init__(self, forge: RepoForge, store: RunStore) -> None:
        super().__init__(forge, store, gated=lambda: False)

    def post_plan(self, record: RunRecord, text: str) -> str:
        return ""

    def progress(self, record: RunRecord) -> None:
        self.store.save(record)

    def finish(self, record: RunRecord) -> bool:
        """A cell's end shows on its benchmark's status comment, not as a status comment of its own."""
        self.store.save(record)
        return True


def _context(bench: BenchRecord) -> tuple[Settings, RepoForge, Any]:
    settings = load_settings()
    github, token = installation_client(settings, bench.installation_id)
    return settings, RepoForge(github, bench.spec.repo), token


def _registry(settings: Settings, forge: RepoForge) -> tuple[RepoConfig, ModelRegistry]:
    config = parse_repo_config(forge.read_file(CONFIG_PATH))
    return config, registry_for(config, settings)


def show_status(forge: RepoForge, store: BenchStore, bench: BenchRecord) -> None:
    body = render_status(bench, store.results(bench.bench_id))
    posted = forge.upsert_comment(bench.issue, BENCH_KIND, f"{bench.bench_id}-status", body)
    bench.status_comment_id = posted.id


# --- start: explore once per issue, estimate, fan out -----------------------------------------------


def bench_start(bench_id: str) -> str:
    job = get_current_job()
    with log_context(job_id=job.id, bench_id=bench_id):
        return _bench_start(job.connection, bench_id)


def _bench_start(connection: Any, bench_id: str) -> str:
    store = BenchStore(connection)
    bench = _load(store, bench_id)
    settings, forge, token = _context(bench)
    config, registry = _registry(settings, forge)
    bench.state = "exploring"
    show_status(forge, store, bench)
    store.save(bench)
    workflow = load_workflows(forge.read_dir(REPO_DIR))[DEFAULT_WORKFLOW]
    for issue in bench.spec.issues:
        bench.explorations[issue] = explore_issue(
            bench, issue, workflow, config, registry, settings, forge, RunStore(connection), token
        )
    if (latest := store.load(bench_id)) is not None and latest.state == "failed":
        return f"bench {bench_id} was stopped while exploring"  # `/archon cancel` came in meanwhile
    bench.estimate_usd = estimate_usd(bench, registry)
    bench.cap_usd = bench_cap_usd(config, settings)
    if bench.estimate_usd > bench.cap_usd:
        bench.state, bench.finished_at = "failed", now()
        bench.error = (
            f"the estimated cost, USD {bench.estimate_usd:.2f}, is above the cap of USD "
            f"{bench.cap_usd:.2f} (ARCHON_BENCH_MAX_USD, lowered by `budgets.bench_max_usd` in "
            ".github/archon.yml). Narrow the matrix (fewer models, issues or repeats)."
        )
        show_status(forge, store, bench)
        store.save(bench)
        return f"bench {bench_id} refused: over budget"
    _fan_out(bench, workflow.name, registry, settings, connection)
    bench.state = "running"
    show_status(forge, store, bench)
    store.save(bench)
    return f"bench {bench_id}: {len(bench.cells)} cells queued"


def explore_issue(
    bench: BenchRecord,
    issue: int,
    workflow: Workflow,
    config: RepoConfig,
    registry: ModelRegistry,
    settings: Settings,
    forge: RepoForge,
    runs: RunStore,
    token: Any,
) -> Exploration:
    """The exploration node of fix-issue, once, for every cell of this issue."""
    title, body, url = forge.issue(issue)
    record = exploration_record(bench, IssueInfo(number=issue, title=title, body=body, url=url), registry)
    record.default_branch = forge.default_branch()
    setup = RunSetup(
        explore_only(workflow), record, SilentPublisher(forge, runs), config, registry, settings, token
    )
    outcome = execute_in(git_workspace(settings), setup, resume=False)
    return exploration_of(bench, record, outcome.state, outcome.summary)


def _fan_out(
    bench: BenchRecord, workflow: str, registry: ModelRegistry, settings: Settings, connection: Any
) -> None:
    queue, runs = Queue(RUNS_QUEUE, connection=connection), RunStore(connection)
    jobs = []
    for index, key in enumerate(bench.spec.cells(), start=1):
        ref = CellRef(key=key, run_id=f"{bench.bench_id}c{index}", job_id=f"bench-{bench.bench_id}-c{index}")
        record = cell_record(bench, ref, cell_config(bench, key, registry, workflow))
        runs.save(record)
        bench.cells.append(ref)
        jobs.append(
            queue.enqueue_call(
                "bot.bench.jobs.bench_cell",
                args=(bench.bench_id, ref.run_id),
                job_id=ref.job_id,
                timeout=settings.archon_run_timeout,
                result_ttl=WORK_RESULT_TTL,
                failure_ttl=WORK_FAILURE_TTL,
                on_failure=Callback("bot.bench.jobs.bench_cell_failed"),
                meta={"run_id": ref.run_id, "bench_id": bench.bench_id},
                description=f"bench {bench.bench_id} cell {index}",
            )
        )
        JobQueue(connection).track_run(ref.run_id)
    BenchStore(connection).save(bench)
    queue.enqueue_call(
        "bot.bench.jobs.bench_aggregate",
        args=(bench.bench_id,),
        job_id=f"bench-{bench.bench_id}-report",
        depends_on=Dependency(jobs=jobs, allow_failure=True),
        timeout=600,
        result_ttl=WORK_RESULT_TTL,
        failure_ttl=WORK_FAILURE_TTL,
        on_failure=Callback("bot.bench.jobs.on_bench_report_failure"),
        meta={"bench_id": bench.bench_id},
        description=f"bench {bench.bench_id} report",
    )


# --- cells ------------------------------------------------------------------------------------------


def bench_cell(bench_id: str, run_id: str) -> str:
    job = get_current_job()
    with log_context(job_id=job.id, run_id=run_id, bench_id=bench_id):
        return _bench_cell(job.connection, bench_id, run_id)


def _bench_cell(connection: Any, bench_id: str, run_id: str) -> str:
    store, runs = BenchStore(connection), RunStore(connection)
    bench = _load(store, bench_id)
    if bench.state == "failed":
        return f"cell {run_id} skipped: the benchmark was stopped"
    record = runs.load(run_id)
    assert record is not None, f"cell {run_id} has no run record"
    settings, forge, token = _context(bench)
    record.state, record.started_at = RunState.RUNNING, now()
    runs.save(record)
    outcome = run_on_github(record, settings, forge, runs, token, publisher=SilentPublisher(forge, runs))
    record.state, record.summary, record.finished_at = outcome.state, outcome.summary, now()
    record.error = outcome.summary if outcome.state is RunState.FAILED else None
    runs.save(record)
    ref = next(ref for ref in bench.cells if ref.run_id == run_id)
    store.save_result(bench_id, run_id, cell_result(ref.key, record))
    show_status(forge, store, bench)
    return f"cell {run_id} {outcome.state}"


def bench_cell_failed(job: Job, connection: Any, exc_type: type, value: BaseException, tb: Any) -> None:
    """A crashed, hung or killed cell is a failed row with its reason, never a missing one."""
    if (failure := failures.failure_of(job, exc_type, value)) is None:
        return
    bench_id, run_id = job.args
    failures.report(
        failure, partial(_fail_cell, connection, bench_id, run_id), f"bench {bench_id} cell {run_id}"
    )


def _fail_cell(connection: Any, bench_id: str, run_id: str, reason: str) -> None:
    store = BenchStore(connection)
    bench = _load(store, bench_id)
    record = failures.fail_run(connection, run_id, reason) or RunStore(connection).load(run_id)
    ref = next(ref for ref in bench.cells if ref.run_id == run_id)
    store.save_result(bench_id, run_id, cell_result(ref.key, record, reason))
    _, forge, _ = _context(bench)
    show_status(forge, store, bench)


# --- the report --------------------------------------------------------------------------------------


def bench_aggregate(bench_id: str) -> str:
    job = get_current_job()
    with log_context(job_id=job.id, bench_id=bench_id):
        return _bench_aggregate(job.connection, bench_id)


def _bench_aggregate(connection: Any, bench_id: str) -> str:
    store = BenchStore(connection)
    bench = _load(store, bench_id)
    if bench.state == "failed":
        return f"bench {bench_id} was stopped: {bench.error}"
    settings, forge, _ = _context(bench)
    summary, rows = aggregate(bench, store.results(bench_id))
    folder = settings.archon_data_dir / "bench" / bench_id
    write_report(summary, rows, folder)
    forge.upsert_comment(bench.issue, BENCH_KIND, f"{bench_id}-report", bench_markdown(summary))
    bench.state, bench.finished_at, bench.report_dir = "done", now(), str(folder)
    show_status(forge, store, bench)
    store.save(bench)
    return f"bench {bench_id} reported: {len(rows)} cells"


def _load(store: BenchStore, bench_id: str) -> BenchRecord:
    bench = store.load(bench_id)
    if bench is None:
        raise LookupError(f"benchmark {bench_id} has no record in Redis")
    return bench


def on_bench_start_failure(job: Job, connection: Any, exc_type: type, value: BaseException, tb: Any) -> None:
    if (failure := failures.failure_of(job, exc_type, value)) is None:
        return
    tell = partial(_fail_bench, connection, job.args[0], failures.BENCH_START_FAILED)
    failures.report(failure, tell, f"bench {job.args[0]} start")


def on_bench_report_failure(job: Job, connection: Any, exc_type: type, value: BaseException, tb: Any) -> None:
    if (failure := failures.failure_of(job, exc_type, value)) is None:
        return
    tell = partial(_fail_bench, connection, job.args[0], failures.BENCH_REPORT_FAILED)
    failures.report(failure, tell, f"bench {job.args[0]} report")


def _fail_bench(connection: Any, bench_id: str, template: str, reason: str) -> None:
    """The benchmark's status comment says it failed, why, and what to do (saved in Redis first)."""
    store = BenchStore(connection)
    bench = _load(store, bench_id)
    bench.state, bench.finished_at, bench.error = "failed", now(), template.format(reason=reason)
    store.save(bench)
    _, forge, _ = _context(bench)
    show_status(forge, store, bench)
    store.save(bench)
