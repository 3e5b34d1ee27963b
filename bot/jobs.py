"""RQ job functions and their callbacks: the entry points of worker processes.

Jobs receive plain values (a task envelope, a run id) and build what they need themselves: settings
from the worker's environment, an installation client from the App credentials. One failure path per
job kind tells the user on GitHub, logs with context, and never hides the original error.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from github.PullRequest import PullRequest
from rq import get_current_job
from rq.job import Job

from bot.evaluation.service import diff_from_patches, judge_change
from bot.events import CommandTask, LabelsTask, TaskEnvelope
from bot.github.auth import app_integration, installation_client, installation_github
from bot.github.forge import RepoForge
from bot.labels import label_specs
from bot.providers.factory import build_chain
from bot.publish import GitHubPublisher
from bot.queue import JobQueue
from bot.repo_config import CONFIG_PATH, RepoConfigError, parse_repo_config, registry_for
from bot.runner import pull_evidence, run_on_github
from bot.runs import NodeState, RunRecord, RunState, RunStore, now
from bot.secrets import describe_error
from bot.settings import Settings, load_settings
from bot.triage import REPLY_KIND, Triage
from bot.workflow.engine import Outcome
from bot.workflow.schema import WorkflowError

log = logging.getLogger(__name__)

_PULL_MARKER = re.compile(r"<!-- archon-bot:pull:([A-Za-z0-9_-]+) -->")

TRIAGE_FAILED = (
    "I could not handle this request because of an error on my side ({reason}). Nothing was started; "
    "repeat the command or re-apply the label to try again."
)


def _forge(installation_id: int, repo: str) -> RepoForge:
    return RepoForge(installation_github(load_settings(), installation_id), repo)


def one_line(error: BaseException | None) -> str:
    """An exception as one short line for people. Messages never carry secrets (see `settings`)."""
    if error is None:
        return "unknown error"
    return describe_error(error)


# --- triage ----------------------------------------------------------------------------------------


def triage(envelope: dict[str, Any]) -> str:
    """React, check who asked, reply, enqueue runs; or create labels after an installation."""
    task = TaskEnvelope.model_validate(envelope).task
    job = get_current_job()
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
    if job.retries_left:
        return  # RQ will try again
    task = TaskEnvelope.model_validate(job.args[0]).task
    log.error("triage %s failed: %s", task.delivery_id, one_line(value))
    if isinstance(task, CommandTask):
        body = f"@{task.sender} " + TRIAGE_FAILED.format(reason=one_line(value))
        _forge(task.installation_id, task.repo).upsert_comment(task.issue, REPLY_KIND, task.delivery_id, body)


# --- runs ------------------------------------------------------------------------------------------


def _update(forge: RepoForge, store: RunStore, record: RunRecord) -> None:
    GitHubPublisher(forge, store, lambda: False).progress(record)


def _load(connection: Any, run_id: str) -> tuple[RunStore, RunRecord]:
    store = RunStore(connection)
    record = store.load(run_id)
    if record is None:
        raise LookupError(f"run {run_id} has no record in Redis (expired or never saved)")
    return store, record


def execute_run(run_id: str) -> str:
    """Drive one run: running → the workflow → done, waiting or failed. Crashes go to `on_run_failure`."""
    store, record = _load(get_current_job().connection, run_id)
    if record.state is RunState.CANCELLED:
        return f"run {run_id} was cancelled before it started"
    settings = load_settings()
    github, token = installation_client(settings, record.installation_id)
    forge = RepoForge(github, record.config.repo)
    record.state, record.started_at, record.finished_at = RunState.RUNNING, now(), None
    record.error = record.summary = None
    _update(forge, store, record)
    try:
        outcome = run_on_github(record, settings, forge, store, token)
    except (RepoConfigError, WorkflowError) as error:
        outcome = Outcome(RunState.FAILED, f"Nothing was run: {error}")
        record.failed_node = None
    record.state, record.summary = outcome.state, outcome.summary
    record.error = outcome.summary if outcome.state is RunState.FAILED else None
    record.finished_at = now() if outcome.state is not RunState.WAITING else None
    _update(forge, store, record)
    return f"run {run_id} {outcome.state}"


def _finish(job: Job, connection: Any, state: RunState, error: str | None, summary: str | None) -> None:
    store, record = _load(connection, job.meta["run_id"])
    record.state, record.finished_at, record.error = state, now(), error
    for node in record.nodes.values():  # the node that was running when the job died
        if node.state is NodeState.RUNNING:
            node.state, node.error, node.finished_at = NodeState.FAILED, error or "stopped", now()
            record.failed_node = node.id
    if state is RunState.CANCELLED and record.summary:
        summary = None  # keep "Cancelled by @someone" written by the cancel command
    record.summary = summary or record.summary
    _update(_forge(record.installation_id, record.config.repo), store, record)


def on_run_failure(job: Job, connection: Any, exc_type: type, value: BaseException, tb: Any) -> None:
    """The status comment says the run failed, where, and how to try again (a worker that died
    mid-run arrives here too, as RQ's AbandonedJobError, when RQ notices)."""
    reason = one_line(value)
    if exc_type is not None and exc_type.__name__ == "AbandonedJobError":
        reason = "the worker running this job stopped (it was killed or its machine went away)"
    log.error("run %s (%s) failed: %s", job.meta.get("run_id"), job.id, reason)
    _finish(job, connection, RunState.FAILED, reason, None)


def on_run_stopped(job: Job, connection: Any) -> None:
    """`/archon cancel` stopped a running job."""
    log.info("run %s (%s) stopped", job.meta.get("run_id"), job.id)
    _finish(job, connection, RunState.CANCELLED, None, "Stopped while running.")


# --- evaluating any pull request -------------------------------------------------------------------


def evaluate_pull(envelope: dict[str, Any], judges: list[str]) -> str:
    """`/archon evaluate` on a pull request, including ones people wrote (no plan: out of 60)."""
    task = TaskEnvelope.model_validate(envelope).task
    assert isinstance(task, CommandTask)
    settings = load_settings()
    github, token = installation_client(settings, task.installation_id)
    forge = RepoForge(github, task.repo)
    pull = forge.repo.get_pull(task.issue)
    title, body = pull.title, pull.body or ""
    diff = diff_from_patches(forge.pull_diff_files(task.issue))
    record = _run_of_pull(get_current_job().connection, task, pull, lambda: _bot_login(settings))
    plan = str(record.nodes["plan"].outputs.get("text") or "") if record and "plan" in record.nodes else None
    config = parse_repo_config(forge.read_file(CONFIG_PATH))
    registry = registry_for(config, settings)
    slots = [(alias, build_chain(alias, registry, settings, node="evaluate")[0]) for alias in judges]
    evidence, files = pull_evidence(settings, token, task.repo, pull, config, plan or None)
    verdict = judge_change(
        slots, title=title, body=body, diff=diff, plan=plan or None, evidence=evidence, repo_files=files
    )
    forge.post_review(task.issue, verdict.body, key=f"eval-{task.delivery_id}", comments=verdict.comments)
    return verdict.headline()


def _run_of_pull(
    connection: Any, task: CommandTask, pull: PullRequest, bot_login: Callable[[], str]
) -> RunRecord | None:
    """The Archon run that opened this pull request, found by the marker in its body; None for a
    people's pull request (judged without a plan).

    Anyone can paste a marker into a pull request's body, and a run's plan would then be judged against
    a stranger's diff. So a marker counts only on a pull request this App opened from a branch of this
    repository, for a run of this repository and installation whose branch is the pull request's head.
    """
    run_ids = _PULL_MARKER.findall(pull.body or "")
    if not run_ids or not _opened_by_this_app(task, pull, bot_login):
        return None
    store = RunStore(connection)
    for run_id in run_ids:
        record = store.load(run_id)
        if record is not None and _same_run(task, pull, record):
            return record
    return None


def _opened_by_this_app(task: CommandTask, pull: PullRequest, bot_login: Callable[[], str]) -> bool:
    """The pull request's author is this App's bot user, and its head is in the repository itself."""
    head_repo = pull.head.repo.full_name if pull.head.repo is not None else ""
    if head_repo.lower() != task.repo.lower() or pull.user.type != "Bot":
        return False
    return pull.user.login == bot_login()


def _same_run(task: CommandTask, pull: PullRequest, record: RunRecord) -> bool:
    return (
        record.config.repo.lower() == task.repo.lower()
        and record.installation_id == task.installation_id
        and record.branch is not None
        and record.branch == pull.head.ref
    )


def _bot_login(settings: Settings) -> str:
    """The login GitHub gives this App's bot user: `<app slug>[bot]` (asked as the App itself)."""
    return f"{app_integration(settings).get_app().slug}[bot]"


def on_evaluate_failure(job: Job, connection: Any, exc_type: type, value: BaseException, tb: Any) -> None:
    task = TaskEnvelope.model_validate(job.args[0]).task
    log.error("evaluation for %s#%s failed: %s", task.repo, task.issue, one_line(value))
    if isinstance(task, CommandTask):
        body = (
            f"@{task.sender} the evaluation could not run because of an error on my side "
            f"({one_line(value)}). No review was posted; comment `/archon evaluate` to try again."
        )
        _forge(task.installation_id, task.repo).upsert_comment(task.issue, REPLY_KIND, task.delivery_id, body)
