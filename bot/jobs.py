"""RQ job functions and their callbacks: the entry points of worker processes.

Jobs receive plain values (a task envelope, a run id) and build what they need themselves: settings
from the worker's environment, an installation client from the App credentials. One failure path per
job kind goes through `bot.failures`: it tells the user on GitHub, logs with the job's ids, and never
hides the original error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from rq import get_current_job
from rq.job import Job

from bot import failures, revise
from bot.evaluation.service import diff_from_patches, judge_change
from bot.events import CommandTask, LabelsTask, TaskEnvelope
from bot.github.auth import installation_client, installation_github
from bot.github.forge import RepoForge
from bot.labels import label_specs
from bot.limits import DailySpend, RunGuard
from bot.logs import log_context
from bot.metrics import observe_run
from bot.providers.factory import build_chain
from bot.publish import (
    GitHubPublisher,
    StatusEdits,
    post_evaluation_check,
    post_revision_check,
    pull_head_or_none,
)
from bot.queue import JobQueue
from bot.repo_config import CONFIG_PATH, RepoConfigError, parse_repo_config, registry_for
from bot.runner import git_workspace, pull_evidence, run_on_github
from bot.runs import Revision, RunEnded, RunRecord, RunState, RunStore, now
from bot.settings import Settings, load_settings
from bot.triage import Triage, run_of_pull
from bot.triage import bot_login as _bot_login  # recognising the bot's own pull requests lives in triage
from bot.workflow.engine import Outcome
from bot.workflow.schema import WorkflowError

log = logging.getLogger(__name__)


# --- triage ----------------------------------------------------------------------------------------


def triage(envelope: dict[str, Any]) -> str:
    """React, check who asked, reply, enqueue runs; or create labels after an installation."""
    task = TaskEnvelope.model_validate(envelope).task
    job = get_current_job()
    with log_context(delivery_id=task.delivery_id, job_id=job.id):
        return _triage(task, job)


def _triage(task: CommandTask | LabelsTask, job: Job) -> str:
    settings = load_settings()
    github = installation_github(settings, task.installation_id)
    if isinstance(task, LabelsTask):
        return install_labels(github, task, settings.archon_label_presets)
    log.info(
        "triage %s on %s#%s by %s: %s", task.delivery_id, task.repo, task.issue, task.sender, task.trigger
    )
    queue = JobQueue(job.connection)
    return Triage(settings, RepoForge(github, task.repo), queue, RunStore(job.connection), task).handle()


def install_labels(github: Any, task: LabelsTask, presets: tuple[str, ...]) -> str:
    specs = label_specs(presets)
    created = {repo: RepoForge(github, repo).ensure_labels(specs) for repo in task.repos}
    log.info("labels created after installation %s: %s", task.installation_id, created)
    return f"created {sum(len(v) for v in created.values())} labels in {len(created)} repositories"


def on_triage_failure(job: Job, connection: Any, exc_type: type, value: BaseException, tb: Any) -> None:
    """After the last attempt, tell the person who asked (once: the reply carries a marker)."""
    if (failure := failures.failure_of(job, exc_type, value, any_error=True)) is None:
        return  # RQ will try again
    task = TaskEnvelope.model_validate(job.args[0]).task
    # labels after an installation: nobody asked on an issue, so the log is all
    tell = failures.replier(task, failures.TRIAGE_FAILED) if isinstance(task, CommandTask) else None
    failures.report(failure, tell, f"triage of {task.delivery_id}")


# --- runs ------------------------------------------------------------------------------------------


def _load(connection: Any, run_id: str, *, for_job: bool = False) -> tuple[RunStore, RunRecord]:
    store = RunStore(connection, for_job=for_job)
    record = store.load(run_id)
    if record is None:
        raise LookupError(f"run {run_id} has no record in Redis (expired or never saved)")
    return store, record


def execute_run(run_id: str) -> str:
    """Drive one run: running → the workflow → done, waiting or failed. Crashes go to `on_run_failure`.

    Nodes already done are skipped, so an RQ retry of this job (or `/archon retry`) resumes at the node
    that failed or was running."""
    job = get_current_job()
    with log_context(job_id=job.id, run_id=run_id):
        return _execute_run(job, run_id)


def _execute_run(job: Job, run_id: str) -> str:
    store, record = _load(job.connection, run_id, for_job=True)  # `/archon cancel` may end it meanwhile
    if record.state is RunState.CANCELLED:
        return f"run {run_id} was cancelled before it started"
    settings = load_settings()
    github, token = installation_client(settings, record.installation_id)
    forge = RepoForge(github, record.config.repo)
    # One status writer for the whole job, so ARCHON_STATUS_INTERVAL holds from `running` to the end.
    status = StatusEdits(forge, store, interval_s=settings.archon_status_interval)
    try:
        outcome = _drive(record, settings, forge, store, token, status)
        GitHubPublisher(forge, store, lambda: False, status=status).finish(record)  # retried until it lands
    finally:
        status.close()  # a crash goes to `on_run_failure`: no coalesced edit may land after its status
    observe_run(job.connection, record)
    return f"run {run_id} {outcome.state}"


def _drive(
    record: RunRecord,
    settings: Settings,
    forge: RepoForge,
    store: RunStore,
    token: Callable[[], str],
    status: StatusEdits,
) -> Outcome:
    """`running` on the status comment, the workflow, and the record brought to how it ended."""
    record.state, record.started_at, record.finished_at = RunState.RUNNING, now(), None
    record.error = record.summary = None
    status.show(record)
    try:
        outcome = run_on_github(record, settings, forge, store, token, status=status)
    except (RepoConfigError, WorkflowError) as error:
        outcome = Outcome(RunState.FAILED, f"Nothing was run: {error}")
        record.failed_node = None
    record.state, record.summary = outcome.state, outcome.summary
    record.error = outcome.summary if outcome.state is RunState.FAILED else None
    record.finished_at = now() if outcome.state is not RunState.WAITING else None
    return outcome


def on_run_failure(job: Job, connection: Any, exc_type: type, value: BaseException, tb: Any) -> None:
    """After the last attempt, the status comment says the run failed, where, and how to resume. A
    killed work-horse (bot/worker.py), a dead worker (RQ's AbandonedJobError) and `reconcile` arrive
    here too."""
    if (failure := failures.failure_of(job, exc_type, value)) is None:
        return  # RQ will try again, from the node that failed
    run_id = job.meta["run_id"]
    if isinstance(value, RunEnded):  # cancelled meanwhile: its nodes are closed, its words kept
        log.info("run %s (%s) stopped writing: %s", run_id, job.id, value)
        failures.fail_run(connection, run_id, None)
        return
    failures.report(failure, partial(failures.fail_run, connection, run_id), f"run {run_id}")


def on_run_stopped(job: Job, connection: Any) -> None:
    """`/archon cancel` stopped a running job."""
    run_id = job.meta.get("run_id")
    with log_context(job_id=job.id, run_id=run_id):
        log.info("run %s (%s) stopped", run_id, job.id)
        failures.fail_run(connection, run_id, None, state=RunState.CANCELLED, summary=failures.STOPPED)


# --- evaluating any pull request -------------------------------------------------------------------


def evaluate_pull(envelope: dict[str, Any], judges: list[str]) -> str:
    """`/archon evaluate` on a pull request, including ones people wrote (no plan: out of 60)."""
    task = TaskEnvelope.model_validate(envelope).task
    assert isinstance(task, CommandTask)
    with log_context(delivery_id=task.delivery_id, job_id=get_current_job().id):
        return _evaluate_pull(task, judges)


def _evaluate_pull(task: CommandTask, judges: list[str]) -> str:
    settings = load_settings()
    github, token = installation_client(settings, task.installation_id)
    forge = RepoForge(github, task.repo)
    pull = forge.repo.get_pull(task.issue)
    title, body = pull.title, pull.body or ""
    diff = diff_from_patches(forge.pull_diff_files(task.issue))
    record = run_of_pull(get_current_job().connection, task, pull, lambda: _bot_login(settings))
    plan = str(record.nodes["plan"].outputs.get("text") or "") if record and "plan" in record.nodes else None
    config = parse_repo_config(_mirror_config(settings, task.repo, token))
    registry = registry_for(config, settings)
    slots = [(alias, build_chain(alias, registry, settings, node="evaluate")[0]) for alias in judges]
    evidence, files = pull_evidence(settings, token, task.repo, pull, config, plan or None)
    # The judges' calls count against the run cap and the installation's day, like any run's.
    daily = DailySpend.of(get_current_job().connection, task.installation_id, settings)
    verdict = judge_change(
        slots,
        title=title,
        body=body,
        diff=diff,
        plan=plan or None,
        evidence=evidence,
        repo_files=files,
        guard=RunGuard(settings.archon_max_run_usd, daily=daily),
    )
    forge.post_review(task.issue, verdict.body, key=f"eval-{task.delivery_id}", comments=verdict.comments)
    min_score = config.evaluation.min_score
    post_evaluation_check(forge, task.issue, verdict.evaluation, min_score, f"eval-{task.delivery_id}")
    return verdict.headline()


def _mirror_config(settings: Settings, repo: str, token: Callable[[], str]) -> str | None:
    """`.github/archon.yml` of the default branch, from the synced mirror (as runs read it): the sync is
    one the evidence needs anyway, and config and code then come from the same fetch."""
    workspace = git_workspace(settings)
    workspace.sync(repo, token=token())
    return workspace.snapshot(repo, token=token()).read_file(CONFIG_PATH)


def on_evaluate_failure(job: Job, connection: Any, exc_type: type, value: BaseException, tb: Any) -> None:
    if (failure := failures.failure_of(job, exc_type, value)) is None:
        return
    task = TaskEnvelope.model_validate(job.args[0]).task
    tell = failures.replier(task, failures.EVALUATE_FAILED)
    failures.report(failure, tell, f"evaluation of {task.delivery_id}")


# --- revisions of the bot's pull requests ----------------------------------------------------------


def execute_revision(run_id: str, number: int) -> str:
    """`/archon revise` / `replan` on the run's pull request: new commits on its branch, a fresh review."""
    job = get_current_job()
    with log_context(job_id=job.id, run_id=run_id):
        return _execute_revision(job, run_id, number)


def _execute_revision(job: Job, run_id: str, number: int) -> str:
    store, record = _load(job.connection, run_id)
    revision = record.revisions[number - 1]
    if revision.state is RunState.DONE:
        return f"revision {number} of {run_id} is already done"
    settings = load_settings()
    github, token = installation_client(settings, record.installation_id)
    forge = RepoForge(github, record.config.repo)
    revision.state = RunState.RUNNING
    store.save(record)
    head = pull_head_or_none(forge, record.pr_number)  # the head its check run was queued on
    if head is not None:
        post_revision_check(forge, record, revision, head)
    try:
        revise.run_revision(record, revision, settings, forge, store, token)  # it records how it ended
    except (RepoConfigError, WorkflowError) as error:
        revise.finish(revision, Outcome(RunState.FAILED, f"Nothing was run: {error}"))
    store.save(record)
    _finish_revision_check(forge, record, revision, head)
    revise.reply(forge, record, revision)  # the last write: what the maintainer waits for
    return f"revision {number} of {run_id} {revision.state}"


def _finish_revision_check(forge: RepoForge, record: RunRecord, revision: Revision, head: str | None) -> None:
    """Complete the revision's check run where it ran, and put the outcome on the new head too (the
    revision's commit moved the pull request there, and a check shows on a pull request by its head)."""
    for sha in dict.fromkeys(s for s in (head, pull_head_or_none(forge, record.pr_number)) if s):
        post_revision_check(forge, record, revision, sha)


def on_revision_failure(job: Job, connection: Any, exc_type: type, value: BaseException, tb: Any) -> None:
    """After the last attempt, the revision is marked failed and the maintainer is told where they asked,
    with the reason and how to retry (`failures.fail_revision`)."""
    if (failure := failures.failure_of(job, exc_type, value)) is None:
        return
    run_id, number = job.meta["run_id"], job.meta["revision"]
    tell = partial(failures.fail_revision, connection, run_id, number)
    failures.report(failure, tell, f"revision {number} of run {run_id}")
