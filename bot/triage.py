"""Triage: the short job behind every trigger. Reacts, checks who asked, replies, enqueues runs.

It runs on its own queue and worker, so people get the 👀 reaction and an answer within seconds even
while long runs occupy the run workers. Every reply carries a marker keyed by the delivery id, so a
retried triage job edits its reply instead of posting another.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from github.PullRequest import PullRequest

from bot.bench.jobs import show_status
from bot.bench.orchestrate import BenchRecord, BenchStore, bench_id_for
from bot.bench.results import BenchSpec
from bot.commands import COMMANDS, READ_ONLY, CommandName, help_text, wrong_place
from bot.events import CommandTask
from bot.failures import dead_reason, fail_run
from bot.github.auth import app_integration
from bot.github.forge import InlineComment, RepoForge
from bot.limits import DailySpend, active_runs, cells_refusal, concurrency_refusal, panel_refusal
from bot.providers.pricing import prices_date, prices_text
from bot.providers.registry import ModelRegistry, unpriced_refusal
from bot.publish import post_revision_check, pull_head_or_none
from bot.queue import ActiveRunError, JobQueue
from bot.repo_config import (
    CONFIG_PATH,
    RepoConfig,
    RepoConfigError,
    parse_repo_config,
    registry_for,
    role_defaults,
    within_deployment,
)
from bot.revise import review_feedback
from bot.runconfig import RunConfig, UnknownModelError, resolve_run
from bot.runner import pick_workflow
from bot.runs import (
    IssueInfo,
    NodeState,
    ReviewThread,
    Revision,
    RunRecord,
    RunState,
    RunStore,
    now,
    run_id_for,
)
from bot.settings import Settings
from bot.status import STATUS_KIND, render_revisions, render_runs_table, render_status
from bot.triggers import BenchRequest, EvaluateRequest, ReplanRequest, ReviseRequest, Role, RunRequest
from bot.workflow.engine import plan_node_id, reset_from
from bot.workflow.schema import REPO_DIR

log = logging.getLogger(__name__)

_PULL_MARKER = re.compile(r"<!-- archon-bot:pull:([A-Za-z0-9_-]+) -->")

REPLY_KIND = "reply"
MODELS_PRICES_NOTE = "Prices: USD per million tokens, input / cache write / cache read / output."
#: The reference experiment's matrix: plan ∈ {opus, kimi} × implement ∈ {opus, kimi}.
DEFAULT_MATRIX = ("opus", "kimi")
NOT_STARTED = "nothing was started: {reason}."
NOT_OURS = (
    "I can only revise pull requests Archon Bot opened for one of its runs in this repository; "
    "#{number} is not one, so nothing was started. Use `/archon evaluate` to score it instead."
)
#: A review's state when it requested changes, as the REST API spells it.
CHANGES_REQUESTED = "CHANGES_REQUESTED"
REVISION_BUSY = "run `{run_id}` is still {state}; try again when it has finished."
REVISING = "{what} #{number} on its branch with your feedback (revision {revision}); I will reply here."


@dataclass
class Triage:
    settings: Settings
    forge: RepoForge
    queue: JobQueue
    store: RunStore
    task: CommandTask

    # --- replies -------------------------------------------------------------------------------

    def reply(self, body: str) -> str:
        """Answer the person who asked, once per delivery. Returns the body for the job's result."""
        text = f"@{self.task.sender} {body}"
        self.forge.upsert_comment(self.task.issue, REPLY_KIND, self.task.delivery_id, text)
        return text

    # --- the decision ----------------------------------------------------------------------------

    def handle(self) -> str:
        task = self.task
        if task.changes_requested:  # no command: only where the repository opted in, and then quietly
            config = self._repo_config()
            if isinstance(config, str) or config.iterate != "on_changes_requested":
                return "changes requested; the repository has not opted in to revisions on them"
        if task.via != "thread":  # a review comment's reactions live elsewhere: 👀 on the pull request
            self.forge.react(task.issue, task.comment_id, "eyes")
        name = CommandName(task.request.kind) if task.request else None
        config = self._repo_config()
        if isinstance(config, str):
            return config
        if name not in READ_ONLY and not self._allowed(config):
            return self.reply(
                f"sorry, starting Archon work here needs one of these repository roles: "
                f"{', '.join(self._policy(config))}. Ask a maintainer to trigger it for you."
            )
        if task.request is None:
            usage = f"\n\nUsage: `{task.usage}`" if task.usage and task.usage.startswith("/") else ""
            return self.reply(f"I could not understand that: {task.error}{usage}\n\n{help_text()}")
        info = COMMANDS[name]
        if why := wrong_place(name, task.issue, task.is_pull_request):
            return self.reply(why)
        if not info.available:
            return self.reply(
                f"`/archon {name}` is not available yet in this version of Archon Bot. "
                f"Available now: {', '.join(f'`{c}`' for c in COMMANDS if COMMANDS[c].available)}."
            )
        handler: Callable[[RepoConfig], str] = getattr(self, info.handler)
        return handler(config)

    def _repo_config(self) -> RepoConfig | str:
        """The repository's config, or the reply explaining why it is unusable."""
        try:
            return within_deployment(parse_repo_config(self.forge.read_file(CONFIG_PATH)), self.settings)
        except RepoConfigError as error:
            return self.reply(
                f"nothing was started because the repository configuration is invalid:\n\n{error}"
            )

    def _policy(self, config: RepoConfig) -> tuple[str, ...]:
        return config.triggers.permissions or self.settings.archon_allowed_permissions

    def _allowed(self, config: RepoConfig) -> bool:
        permission, role = self.forge.permission(self.task.sender)
        allowed = self._policy(config)
        log.info("%s has %s (%s) on %s", self.task.sender, permission, role, self.task.repo)
        return permission in allowed or role in allowed

    def _over_limits(self, besides: str | None = None) -> str | None:
        """Why nothing more may start for this installation now: its runs in progress fill
        ARCHON_MAX_CONCURRENT_RUNS, or today's spend reached ARCHON_DAILY_USD_PER_INSTALLATION."""
        connection, installation = self.queue.connection, self.task.installation_id
        active = active_runs(connection, installation, besides=besides)
        return concurrency_refusal(active, self.settings.archon_max_concurrent_runs) or (
            DailySpend.of(connection, installation, self.settings).refusal()
        )

    def _unpriced(self, registry: ModelRegistry, aliases: list[str]) -> str | None:
        """The first alias without prices, refused unless ARCHON_ALLOW_UNPRICED_MODELS."""
        allow = self.settings.archon_allow_unpriced_models
        reasons = (unpriced_refusal(a, spec, allow) for a in aliases if (spec := registry.get(a)) is not None)
        return next((why for why in reasons if why), None)

    def registry(self, config: RepoConfig) -> ModelRegistry:
        return registry_for(config, self.settings)

    def defaults(self, config: RepoConfig) -> dict[Role, str]:
        return role_defaults(config, self.settings)

    # --- commands --------------------------------------------------------------------------------

    def run(self, config: RepoConfig) -> str:
        task = self.task
        if task.is_pull_request:
            return self.reply("`/archon run` works on issues; this is a pull request.")
        assert isinstance(task.request, RunRequest)
        try:
            run_config = resolve_run(
                task.request,
                repo=task.repo,
                issue=task.issue,
                registry=self.registry(config),
                defaults=self.defaults(config),
                gate=config.gate,
                allow_unpriced=self.settings.archon_allow_unpriced_models,
            )
        except UnknownModelError as error:
            return self.reply(f"nothing was started: {error}")
        return self._start(run_config)

    def _start(self, run_config: RunConfig) -> str:
        run_id = run_id_for(self.task.delivery_id)
        existing = self.store.load(run_id)
        if existing and existing.state is not RunState.QUEUED:
            return f"run {run_id} already {existing.state}"  # a retried triage job: work was done
        job_id = run_config.job_id()
        if (busy := self._busy(job_id, run_id)) is not None:
            return busy
        if why := self._over_limits(besides=run_id):
            return self.reply(NOT_STARTED.format(reason=why))
        record = existing or RunRecord(
            run_id=run_id,
            job_id=job_id,
            installation_id=self.task.installation_id,
            config=run_config,
            requested_by=self.task.sender,
            trigger=self.task.trigger,
            issue=self._issue_snapshot(),
        )
        self.post_status(record)
        try:
            self.queue.enqueue_run(job_id, run_id, self.settings.archon_run_timeout)
        except ActiveRunError as error:  # lost a race with an identical request
            if error.job.meta.get("run_id") != run_id:
                record.state, record.summary = RunState.CANCELLED, "Duplicate of a run that started first."
                self.post_status(record)
                return self._already(error.job.meta.get("run_id"), error.status)
        return f"queued {run_id} as {job_id}"

    def _issue_snapshot(self) -> IssueInfo | None:
        """The issue as the accepted delivery carried it; the run works on this copy, not later edits."""
        task = self.task
        if task.issue_title is None:
            return None
        return IssueInfo(
            number=task.issue,
            title=task.issue_title,
            body=task.issue_body,
            url=task.issue_url,
            author=task.issue_author,
            delivery_id=task.delivery_id,
        )

    def _busy(self, job_id: str, run_id: str) -> str | None:
        """A reply if the same configuration is already queued or running (and is not this run)."""
        status = self.queue.active_status(job_id)
        if status is None:
            return None
        other = self.queue.runs.fetch_job(job_id)
        other_run = other.meta.get("run_id") if other else None
        if other_run == run_id:
            return f"run {run_id} is already {status}"
        return self._already(other_run, status)

    def _already(self, other_run: str | None, status: str) -> str:
        record = self.store.load(other_run) if other_run else None
        where = (
            f" — see [its status]({record.status_comment_url})"
            if record and record.status_comment_url
            else ""
        )
        return self.reply(
            f"a run with this configuration is already {status} on this issue{where}, so I did not start "
            "another. Use `/archon cancel` first to start over."
        )

    def post_status(self, record: RunRecord) -> None:
        posted = self.forge.upsert_comment(
            record.config.issue, STATUS_KIND, record.run_id, render_status(record)
        )
        record.status_comment_id, record.status_comment_url = posted.id, posted.html_url
        self.store.save(record)

    def help(self, config: RepoConfig) -> str:
        return self.reply(f"here is what I understand:\n\n{help_text()}")

    def models(self, config: RepoConfig) -> str:
        """Each alias with its prices and the date (linked to the page) they were read, so a stale price
        is visible where people choose a model."""
        rows = ["| Alias | Provider | Model | Prices | Prices as of | Notes |", "|" + " --- |" * 6]
        for alias, spec in self.registry(config).items():
            rows.append(
                f"| `{alias}` | {spec.provider} | `{spec.model}` | {prices_text(spec.prices)} "
                f"| {prices_date(spec.prices)} | {spec.description} |"
            )
        defaults = ", ".join(f"{role}=`{alias}`" for role, alias in self.defaults(config).items())
        table = "\n".join(rows)
        return self.reply(f"models available here:\n\n{table}\n\n{MODELS_PRICES_NOTE} Defaults: {defaults}.")

    def status(self, config: RepoConfig) -> str:
        if self.task.is_pull_request:
            record = self.run_of_pull()
            if record is None:
                return self.reply(f"no Archon run opened #{self.task.issue}.")
            return self.reply(
                f"run `{record.run_id}` opened this pull request.\n\n{render_revisions(record)}"
            )
        text = "runs on this issue:\n\n" + render_runs_table(self._runs())
        benches = BenchStore(self.queue.connection).for_issue(self.task.repo, self.task.issue)
        if benches:
            rows = [f"- benchmark `{b.bench_id}`: {b.state}, {len(b.spec.cells())} cell(s)" for b in benches]
            text += "\n\nBenchmarks:\n" + "\n".join(rows)
        return self.reply(text)

    def cancel(self, config: RepoConfig) -> str:
        cancelled = self._cancel_benches()
        for record in self._runs():
            if not (record.state.active or record.state is RunState.WAITING):
                continue
            # Redis first, one read-modify-write, the record complete (its running node closed): the
            # job and the failure path its stop sets off write this record too, and find it ended.
            ended = self.store.update(record.run_id, partial(RunRecord.cancel, by=self.task.sender))
            if ended is None:
                continue  # it ended on its own meanwhile
            self.queue.cancel(record.job_id)
            self._show_status(ended)
            cancelled.append(f"`{record.run_id}` ({record.config.pairing()})")
        if not cancelled:
            return self.reply("there is no queued, running or waiting Archon run on this issue to cancel.")
        return self.reply("cancelled " + ", ".join(cancelled) + ".")

    def _show_status(self, record: RunRecord) -> None:
        """The status comment of a record already saved. Only the comment's address is written back, onto
        what the record holds by then, so a write that came meanwhile is kept."""
        posted = self.forge.upsert_comment(
            record.config.issue, STATUS_KIND, record.run_id, render_status(record)
        )

        def note(stored: RunRecord) -> bool:
            stored.status_comment_id, stored.status_comment_url = posted.id, posted.html_url
            return True

        self.store.update(record.run_id, note)

    def _runs(self) -> list[RunRecord]:
        """This issue's runs; benchmark cells are shown and handled through their benchmark."""
        return [r for r in self.store.for_issue(self.task.repo, self.task.issue) if r.bench_id is None]

    def _cancel_benches(self) -> list[str]:
        """Stop the unfinished cells (and the start job) of benchmarks asked for on this issue."""
        store, cancelled = BenchStore(self.queue.connection), []
        for bench in store.for_issue(self.task.repo, self.task.issue):
            if bench.state in ("done", "failed"):
                continue
            jobs = (
                f"bench-{bench.bench_id}-start",
                *(ref.job_id for ref in bench.cells),
                f"bench-{bench.bench_id}-report",
            )
            for job_id in jobs:
                self.queue.cancel(job_id)
            bench.state, bench.finished_at = "failed", now()
            bench.error = f"Cancelled by @{self.task.sender}; finished cells are kept in the records."
            show_status(self.forge, store, bench)
            store.save(bench)
            cancelled.append(f"benchmark `{bench.bench_id}`")
        return cancelled

    def _latest(self, *states: RunState) -> RunRecord | None:
        return next((r for r in reversed(self._runs()) if r.state in states), None)

    def _requeue(self, record: RunRecord, what: str) -> str:
        """Queue an existing run again under its own id: its status comment and branch carry on."""
        if why := self._over_limits(besides=record.run_id):
            return self.reply(NOT_STARTED.format(reason=why))
        record.state, record.error, record.summary, record.finished_at = RunState.QUEUED, None, None, None
        self.post_status(record)
        try:
            self.queue.enqueue_run(record.job_id, record.run_id, self.settings.archon_run_timeout)
        except ActiveRunError as error:
            return self._already(error.job.meta.get("run_id"), error.status)
        return self.reply(f"{what} — see [the status comment]({record.status_comment_url}).")

    def bench(self, config: RepoConfig) -> str:
        """`archon:bench` or `/archon bench`: the plan × implement matrix, judged by one fixed judge."""
        request = self.task.request
        assert isinstance(request, BenchRequest)
        if self.task.is_pull_request:
            return self.reply("`/archon bench` works on issues; this is a pull request.")
        defaults = self.defaults(config)
        spec = BenchSpec(
            repo=self.task.repo,
            issues=list(request.issues or (self.task.issue,)),
            plan=list(request.plan or DEFAULT_MATRIX),
            impl=list(request.impl or DEFAULT_MATRIX),
            repeat=request.repeat,
            judge=list(request.eval or (defaults[Role.EVAL],)),
        )
        explore = request.explore or defaults[Role.EXPLORE]
        registry = self.registry(config)
        unknown = sorted(
            {a for a in (*spec.plan, *spec.impl, *spec.judge, explore) if registry.get(a) is None}
        )
        if unknown:
            valid = registry.listed()
            return self.reply(
                f"nothing was started: {', '.join(f'`{a}`' for a in unknown)} "
                f"{'is' if len(unknown) == 1 else 'are'} not a model alias here. Valid aliases: {valid}."
            )
        why = (
            cells_refusal(len(spec.issues), len(spec.pairings()), spec.repeat, self.settings)
            or self._unpriced(registry, [*spec.plan, *spec.impl, *spec.judge, explore])
            or self._over_limits()
        )
        if why:
            return self.reply(NOT_STARTED.format(reason=why))
        bench_id = bench_id_for(self.task.delivery_id)
        store = BenchStore(self.queue.connection)
        if store.load(bench_id) is not None:
            return f"bench {bench_id} already exists"  # a retried triage job
        bench = BenchRecord(
            bench_id=bench_id,
            installation_id=self.task.installation_id,
            spec=spec,
            explore=explore,
            issue=self.task.issue,
            requested_by=self.task.sender,
            open_prs=request.open_prs,
        )
        store.save(bench)
        show_status(self.forge, store, bench)
        store.save(bench)
        self.queue.enqueue_bench(bench_id)
        return f"bench {bench_id} queued"

    def evaluate(self, config: RepoConfig) -> str:
        assert isinstance(self.task.request, EvaluateRequest)
        registry = self.registry(config)
        judges = list(self.task.request.eval) or [self.defaults(config)[Role.EVAL]]
        unknown = [alias for alias in judges if registry.get(alias) is None]
        if unknown:
            valid = registry.listed()
            return self.reply(
                f"nothing was started: `eval={','.join(unknown)}` is not a model alias here. "
                f"Valid aliases: {valid}."
            )
        if why := panel_refusal(len(judges), self.settings) or self._unpriced(registry, judges):
            return self.reply(NOT_STARTED.format(reason=why))
        if why := self._over_limits():
            return self.reply(NOT_STARTED.format(reason=why))
        self.queue.enqueue_evaluation(self.task, judges, self.settings.archon_run_timeout)
        panel = f"a panel of {len(judges)} judges" if len(judges) > 1 else "one judge"
        return self.reply(
            f"evaluating this pull request with {panel}; the result will be posted as a review."
        )

    def retry(self, config: RepoConfig) -> str:
        """Resume the latest failed or cancelled run from its failed node; a run stuck "queued" or
        "running" whose job is dead (its worker was killed, Redis lost it) is failed first, then resumed."""
        self._fail_if_dead(self._latest(RunState.QUEUED, RunState.RUNNING))
        record = self._latest(RunState.FAILED, RunState.CANCELLED)
        if record is None:
            return self.reply("there is no failed or cancelled Archon run on this issue to retry.")
        for node in record.nodes.values():
            if node.state in (NodeState.FAILED, NodeState.RUNNING):
                node.state, node.error = NodeState.PENDING, None
        where = f"from `{record.failed_node}`" if record.failed_node else "from the start"
        record.failed_node = None
        return self._requeue(record, f"resuming run `{record.run_id}` {where}")

    def _fail_if_dead(self, record: RunRecord | None) -> None:
        """The same check as the workers' reconciliation (`bot.failures.dead_reason`), without its wait."""
        if record is None:
            return
        reason = dead_reason(self.queue.connection, record.run_id, record.job_id)
        if reason is not None:
            fail_run(self.queue.connection, record.run_id, reason)

    def approve(self, config: RepoConfig) -> str:
        record = self._latest(RunState.WAITING)
        if record is None:
            return self.reply("no Archon run on this issue is waiting for approval.")
        record.approved = True
        return self._requeue(record, f"approved; run `{record.run_id}` goes on to implement the plan")

    def revise(self, config: RepoConfig) -> str:
        if self.task.is_pull_request:
            return self._revise_pull(config, "revise")
        record = self._latest(RunState.WAITING)
        if record is None:
            return self.reply(
                "no Archon run on this issue is waiting for approval, so there is no plan to "
                "revise. Start one with `gate=plan` to review its plan first."
            )
        assert isinstance(self.task.request, ReviseRequest)
        workflow = pick_workflow(record, self.forge.read_dir(REPO_DIR))
        record.feedback, record.revision = self.task.request.feedback, record.revision + 1
        reset_from(workflow, record, plan_node_id(workflow) or next(iter(record.nodes)))
        return self._requeue(record, f"re-planning run `{record.run_id}` with your feedback")

    def replan(self, config: RepoConfig) -> str:
        return self._revise_pull(config, "replan")

    # --- the bot's pull requests -------------------------------------------------------------------

    def run_of_pull(self) -> RunRecord | None:
        """The run that opened this pull request (`run_of_pull`), or None for anyone else's."""
        pull = self.forge.repo.get_pull(self.task.issue)
        return run_of_pull(self.queue.connection, self.task, pull, lambda: bot_login(self.settings))

    def _revise_pull(self, config: RepoConfig, kind: str) -> str:
        """`/archon revise` / `replan` on a pull request: a revision job for the run that opened it."""
        request = self.task.request
        assert isinstance(request, ReviseRequest | ReplanRequest)
        record = self.run_of_pull()
        if record is None:
            return self.reply(NOT_OURS.format(number=self.task.issue))
        revision = next((r for r in record.revisions if r.delivery_id == self.task.delivery_id), None)
        if revision is None:  # not a retried triage job
            if why := self._revision_refusal(config, record, request):
                return self.reply(why)
            revision = self._new_revision(record, kind, request)
            record.revisions.append(revision)
            self.store.save(record)
            # its `Archon run` check run, queued: before the job exists, so it can never overtake the
            # job's `in_progress`
            if head := pull_head_or_none(self.forge, record.pr_number):
                post_revision_check(self.forge, record, revision, head)
        timeout = self.settings.archon_run_timeout
        self.queue.enqueue_revision(revision.job_id, record.run_id, revision.number, timeout)
        what = "re-planning and implementing" if kind == "replan" else "revising"
        number = self.task.issue
        return self.reply(REVISING.format(what=what.capitalize(), number=number, revision=revision.number))

    def _revision_refusal(
        self, config: RepoConfig, record: RunRecord, request: ReviseRequest | ReplanRequest
    ) -> str | None:
        if record.state.active or any(r.state.active for r in record.revisions):
            return REVISION_BUSY.format(run_id=record.run_id, state="running")
        registry = self.registry(config)
        unknown = [alias for alias in request.models.values() if registry.get(alias) is None]
        if unknown:
            why = f"`{unknown[0]}` is not a model alias here. Valid aliases: {registry.listed()}"
            return NOT_STARTED.format(reason=why)
        if why := self._over_limits():
            return NOT_STARTED.format(reason=why)
        return None

    def _new_revision(self, record: RunRecord, kind: str, request: ReviseRequest | ReplanRequest) -> Revision:
        task, thread = self.task, None
        if task.thread is not None:
            ref = task.thread
            earlier = self._earlier_replies(ref.in_reply_to_id, ref.comment_id)
            thread = ReviewThread(
                comment_id=ref.in_reply_to_id or ref.comment_id,
                path=ref.path,
                line=ref.line,
                diff_hunk=ref.diff_hunk,
                earlier=earlier,
            )
        feedback = request.feedback
        if task.changes_requested:  # the review's inline comments are the feedback too
            feedback = review_feedback(feedback, self._review_comments())
        return Revision(
            number=len(record.revisions) + 1,
            kind=kind,
            feedback=feedback,
            requested_by=task.sender,
            delivery_id=task.delivery_id,
            via=task.via,
            thread=thread,
            models={str(role): alias for role, alias in request.models.items()},
        )

    def _review_comments(self) -> list[InlineComment]:
        """The inline comments of the review that requested changes (a task queued before it carried the
        review's id: the sender's latest such review)."""
        review_id = self.task.review_id or self.forge.latest_review_id(
            self.task.issue, self.task.sender, CHANGES_REQUESTED
        )
        return [] if review_id is None else self.forge.review_inline_comments(self.task.issue, review_id)

    def _earlier_replies(self, root: int | None, asking: int) -> list[str]:
        """The thread's comments before the one that asked, oldest first: `@login: text`."""
        if root is None:
            return []
        pull = self.forge.repo.get_pull(self.task.issue)
        thread = [c for c in pull.get_review_comments() if root in (c.id, c.in_reply_to_id)]
        return [f"@{c.user.login}: {c.body}" for c in thread if c.id != asking]


def run_of_pull(
    connection: Any, task: CommandTask, pull: PullRequest, bot_login: Callable[[], str]
) -> RunRecord | None:
    """The Archon run that opened this pull request, found by the marker in its body; None for a
    people's pull request.

    Anyone can paste a marker into a pull request's body, and a run's plan would then be judged (or a
    run's branch revised) against a stranger's pull request. So a marker counts only on a pull request
    this App opened from a branch of this repository, for a run of this repository and installation
    whose branch is the pull request's head.
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


def bot_login(settings: Settings) -> str:
    """The login GitHub gives this App's bot user: `<app slug>[bot]` (asked as the App itself)."""
    return f"{app_integration(settings).get_app().slug}[bot]"
