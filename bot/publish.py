"""Where a run's results go. `GitHubPublisher`: comments and a draft PR through the forge, progress in
Redis and the status comment, and two check runs on the pull request's head (`Archon run` while the run
goes, `Archon evaluation` per evaluation). `FolderPublisher`: files in a folder, for `archon-bot run` at a
terminal.

Check runs are best-effort: an installation that has not yet accepted the `checks: write` permission
answers 403, and that must not fail a run whose comments, pull request and review all landed."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bot.evaluation.review import CHECK_NAME, check_conclusion, render_check
from bot.evaluation.schema import Evaluation
from bot.github.forge import FINAL, ONCE, WRITE_ERRORS, CheckRunSpec, PostedComment, RepoForge, RetryPolicy
from bot.github.markers import with_marker
from bot.runs import Revision, RunRecord, RunState, RunStore
from bot.secrets import default_redactor, describe_error
from bot.status import STATUS_KIND, render_status

log = logging.getLogger(__name__)

#: After a status edit fails, later progress edits are skipped this long (the record is still saved):
#: an outage is not made worse by an edit per node, and the run is not slowed by their retries.
PROGRESS_COOLDOWN_S = 30.0

PLAN_KIND = "plan"
RUN_CHECK = "Archon run"
#: A finished run's check-run conclusion (a run waiting for approval leaves its check run as it is).
RUN_CONCLUSIONS = {RunState.DONE: "success", RunState.FAILED: "failure", RunState.CANCELLED: "cancelled"}
RUN_CHECK_TITLES = {RunState.DONE: "Done", RunState.FAILED: "Failed", RunState.CANCELLED: "Cancelled"}
RUNNING_TITLE = "Running"
RUNNING_SUMMARY = "Archon run `{run_id}` is working on this pull request; {where} shows its progress."
#: A revision's check run key, the same as its evaluation review's (`bot.revise.REVIEW_KEY`).
REVISION_KEY = "{run_id}-v{number}"
REVISION_SUMMARY = "Revision {number} ({kind}) of Archon run `{run_id}` on this pull request."
SUPERSEDED = "> ⚠️ **Superseded** by [a revised plan]({url}).\n\n"


def plan_comment(record: RunRecord, text: str, gated: bool) -> str:
    plan_model = record.config.models.get("plan")  # type: ignore[call-overload]
    model = f" · planned by `{plan_model.alias}` ({plan_model.spec.model})" if plan_model else ""
    title = f"### 📋 Plan for #{record.config.issue} — Archon run `{record.run_id}`{model}"
    if record.revision:
        title += f" · revision {record.revision}"
    footer = (
        "This plan waits for approval: comment `/archon approve` to implement it, or "
        "`/archon revise <feedback>` to have it rewritten."
        if gated and not record.approved
        else "The implementation follows this plan; the status comment shows its progress."
    )
    return f"{title}\n\n{text.strip()}\n\n---\n{footer}"


def evaluation_check(
    evaluation: Evaluation, head_sha: str, min_score: int | None, key: str, details_url: str | None = None
) -> CheckRunSpec:
    """The `Archon evaluation` check run of one evaluation (`key`: the evaluation's, as for its review)."""
    title, summary = render_check(evaluation, min_score)
    return CheckRunSpec(
        name=CHECK_NAME,
        head_sha=head_sha,
        external_id=key,
        status="completed",
        conclusion=check_conclusion(evaluation, min_score),
        title=title,
        summary=summary,
        details_url=details_url or None,
    )


def post_evaluation_check(
    forge: RepoForge, number: int, evaluation: Evaluation, min_score: int | None, key: str, url: str = ""
) -> int | None:
    """Best-effort: the evaluation's check run on pull request `number`'s head; None if it failed."""
    return _best_effort(
        f"check run for evaluation {key}",
        lambda: forge.create_check_run(
            evaluation_check(evaluation, head_of(forge, number), min_score, key, url)
        ),
    )


def head_of(forge: RepoForge, number: int) -> str:
    """The pull request's head: as GitHub answered when this job opened it (the run's own push, no read
    needed), else read from GitHub (a pull request people pushed to, or one an earlier job opened)."""
    return forge.opened_head(number) or forge.pull_head(number)


def _best_effort(what: str, write: Callable[[], int]) -> int | None:
    try:
        return write()
    except WRITE_ERRORS as error:
        log.warning("%s not written (%s); the run goes on without it", what, describe_error(error))
        return None


def _lifecycle(
    state: RunState, summary: str | None, running_summary: str
) -> tuple[str, str, str | None, str]:
    """(title, status, conclusion, summary) of an `Archon run` check run for a run's or a revision's
    state: queued, in progress, or completed with its conclusion."""
    if state in RUN_CONCLUSIONS:
        return RUN_CHECK_TITLES[state], "completed", RUN_CONCLUSIONS[state], summary or state.value
    if state is RunState.QUEUED:
        return "Queued", "queued", None, running_summary
    return RUNNING_TITLE, "in_progress", None, running_summary


def _check_spec(
    head_sha: str, key: str, lifecycle: tuple[str, str, str | None, str], details_url: str | None
) -> CheckRunSpec:
    title, status, conclusion, summary = lifecycle
    return CheckRunSpec(
        name=RUN_CHECK, head_sha=head_sha, external_id=key, status=status, conclusion=conclusion,
        title=title, summary=summary, details_url=details_url,
    )  # fmt: skip


def run_check(record: RunRecord, head_sha: str) -> CheckRunSpec:
    """The `Archon run` check run for the record's state: in progress, or completed with its conclusion.
    (A run's check run is created when its pull request opens, so a queued run never has one.)"""
    url = record.status_comment_url
    where = f"the [status comment]({url})" if url else "the status comment"
    running = RUNNING_SUMMARY.format(run_id=record.run_id, where=where)
    state = RunState.RUNNING if record.state is RunState.QUEUED else record.state
    lifecycle = _lifecycle(state, record.summary, running)
    return _check_spec(head_sha, record.run_id, lifecycle, record.status_comment_url or record.pr_url)


def revision_check(record: RunRecord, revision: Revision, head_sha: str) -> CheckRunSpec:
    """The `Archon run` check run of one revision (its own external id): queued when triage enqueues it,
    in progress while its job runs, completed with its outcome."""
    key = REVISION_KEY.format(run_id=record.run_id, number=revision.number)
    running = REVISION_SUMMARY.format(number=revision.number, kind=revision.kind, run_id=record.run_id)
    return _check_spec(head_sha, key, _lifecycle(revision.state, revision.summary, running), record.pr_url)


def post_revision_check(forge: RepoForge, record: RunRecord, revision: Revision, head_sha: str) -> None:
    """Best-effort: the revision's check run on `head_sha`, brought to the revision's state."""
    _best_effort(
        f"run {record.run_id}: check run of revision {revision.number}",
        lambda: forge.create_check_run(revision_check(record, revision, head_sha)),
    )


def pull_head_or_none(forge: RepoForge, number: int | None) -> str | None:
    """The pull request's head sha, or None (logged) when it cannot be read: check runs are best-effort."""
    if number is None:
        return None
    try:
        return forge.pull_head(number)
    except WRITE_ERRORS as error:
        log.warning("the head of #%s could not be read (%s); no check run", number, describe_error(error))
        return None


class StatusEdits:
    """The status comment of one run, edited at most once per `interval_s` while the run goes.

    A change that comes sooner is not lost: its body is rendered at once (the record keeps changing)
    and written when the interval has passed, by a timer, unless a later change or the final state
    supersedes it first. `final` always writes, retried; `close` drops what is pending and waits for an
    edit in flight, so nothing stale can land after another writer's final state (`bot.failures`).
    A failed edit pauses edits for `cooldown_s`: an outage is not made worse by an edit per node."""

    def __init__(
        self,
        forge: RepoForge,
        store: RunStore,
        *,
        interval_s: float = 0.0,
        cooldown_s: float = PROGRESS_COOLDOWN_S,
        final_policy: RetryPolicy = FINAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clock`: seconds on a monotonic scale; tests pass their own to decide what comes "too soon"
        without depending on how fast a loaded machine runs (the timer itself waits in real time)."""
        self.forge, self.store, self.clock = forge, store, clock
        self.interval_s, self.cooldown_s, self.final_policy = interval_s, cooldown_s, final_policy
        self._lock = threading.Lock()
        self._next_at = 0.0  # monotonic time before which no progress edit is sent
        self._pending: tuple[RunRecord, str] | None = None
        self._timer: threading.Timer | None = None
        self._closed = False
        self._moved: PostedComment | None = None  # a comment the timer had to post anew (it was deleted)

    def show(self, record: RunRecord) -> None:
        """Save the record; edit the status comment now if the interval allows, else later (coalesced)."""
        with self._lock:
            self._adopt(record)
        self.store.save(record)
        body = render_status(record)
        with self._lock:
            if self._closed:
                return
            wait = self._next_at - self.clock()
            if record.status_comment_id is None or wait <= 0:
                self._drop_pending()
                self._edit(record, body)
            else:
                self._pending = (record, body)
                if self._timer is None:
                    self._timer = threading.Timer(wait, self._flush)
                    self._timer.daemon = True
                    self._timer.start()

    def final(self, record: RunRecord) -> None:
        """Save the record and write its state, retried within `final_policy`; raises if it never lands."""
        with self._lock:
            self._drop_pending()
            self._adopt(record)
            self.store.save(record)
            self._write(record, render_status(record), self.forge.with_policy(self.final_policy))

    def close(self) -> None:
        """No more progress edits from this object (pending ones are dropped; one in flight finishes)."""
        with self._lock:
            self._closed = True
            self._drop_pending()

    def _flush(self) -> None:
        with self._lock:
            pending, self._pending, self._timer = self._pending, None, None
            if pending is not None and not self._closed:
                self._edit(*pending, timer=True)

    def _adopt(self, record: RunRecord) -> None:
        """Where the timer's edit had to post the comment anew, the record learns it (in the run's
        thread: the timer never touches the record, which the run keeps changing)."""
        if self._moved is not None:
            record.status_comment_id, record.status_comment_url = self._moved.id, self._moved.html_url
            self._moved = None

    def _drop_pending(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._pending, self._timer = None, None

    def _edit(self, record: RunRecord, body: str, *, timer: bool = False) -> None:
        """One best-effort edit (held lock): a failure is logged and starts the cool-down."""
        self._next_at = self.clock() + self.interval_s
        try:
            if timer:
                self._moved = _put_status(self.forge.with_policy(ONCE), record, body)
                if self._moved.id == record.status_comment_id:
                    self._moved = None
            else:
                self._write(record, body, self.forge.with_policy(ONCE))
        except WRITE_ERRORS as error:
            self._next_at = self.clock() + max(self.cooldown_s, self.interval_s)
            log.warning(
                "run %s: status comment not updated (%s); the record is saved, edits pause for %.0fs",
                record.run_id,
                describe_error(error),
                self.cooldown_s,
            )

    def _write(self, record: RunRecord, body: str, forge: RepoForge) -> None:
        posted = _put_status(forge, record, body)
        if (posted.id, posted.html_url) != (record.status_comment_id, record.status_comment_url):
            record.status_comment_id, record.status_comment_url = posted.id, posted.html_url
            self.store.save(record)


def _put_status(forge: RepoForge, record: RunRecord, body: str) -> PostedComment:
    if record.status_comment_id is None:
        return forge.upsert_comment(record.config.issue, STATUS_KIND, record.run_id, body)
    return forge.edit_comment(record.config.issue, record.status_comment_id, STATUS_KIND, record.run_id, body)


class GitHubPublisher:
    """Plans, the pull request and reviews through the forge (retried writes); the status comment
    best-effort and coalesced while the run goes (`progress`, `StatusEdits`) and retried until it lands
    at the end (`finish`). The run's check run is created in progress with the pull request and
    completed once, by id, when the run ends."""

    def __init__(
        self,
        forge: RepoForge,
        store: RunStore,
        gated: Callable[[], bool],
        *,
        final_policy: RetryPolicy = FINAL,
        cooldown_s: float = PROGRESS_COOLDOWN_S,
        min_score: int | None = None,
        status: StatusEdits | None = None,
    ) -> None:
        """`min_score`: the repository's `evaluation.min_score` (the evaluation check run's conclusion).
        `status`: the job's status comment writer (shared by every publisher of the job, so its interval
        holds across them); by default one that writes every change."""
        self.forge, self.store, self.gated = forge, store, gated
        self.min_score = min_score
        self.status = status or StatusEdits(forge, store, cooldown_s=cooldown_s, final_policy=final_policy)

    def post_plan(self, record: RunRecord, text: str) -> str:
        key = f"{record.run_id}-{record.revision}"
        posted = self.forge.upsert_comment(
            record.config.issue, PLAN_KIND, key, plan_comment(record, text, self.gated())
        )
        for revision in range(record.revision):
            self._supersede(record, f"{record.run_id}-{revision}", posted.html_url)
        return posted.html_url

    def _supersede(self, record: RunRecord, key: str, url: str) -> None:
        old = self.forge.find_comment(record.config.issue, PLAN_KIND, key)
        if old is not None and not old.body.startswith("> ⚠️ **Superseded**"):
            self.forge.edit_comment(
                record.config.issue, old.id, PLAN_KIND, key, SUPERSEDED.format(url=url) + old.body
            )

    def open_pr(self, record: RunRecord, title: str, body: str) -> tuple[int | None, str]:
        assert record.branch and record.default_branch
        posted = self.forge.open_draft_pull(record.branch, record.default_branch, title, body, record.run_id)
        self._run_check(record, posted.id)
        return posted.id, posted.html_url

    def post_review(self, record: RunRecord, body: str, comments: list[dict]) -> str:
        """The evaluation as a COMMENT review on the run's pull request, and its check run."""
        assert record.pr_number is not None
        self.forge.post_review(record.pr_number, body, key=record.run_id, comments=comments)
        if record.evaluation is not None:
            evaluation = Evaluation.model_validate(record.evaluation)
            post_evaluation_check(
                self.forge, record.pr_number, evaluation, self.min_score, record.run_id, record.pr_url or ""
            )
        return record.pr_url or ""

    def _run_check(self, record: RunRecord, number: int) -> None:
        """The run's check run on the pull request's head, brought to the record's state (best-effort):
        one create (or, after a lost answer, the edit of what it made) and, at the end, one edit."""
        _best_effort(
            f"run {record.run_id}: check run",
            lambda: self.forge.create_check_run(run_check(record, head_of(self.forge, number))),
        )

    def progress(self, record: RunRecord) -> None:
        """Save the record, then edit the status comment, best-effort and coalesced (`StatusEdits`).

        A failed edit never fails the run: it is logged, and edits pause for a while; the record
        in Redis is already saved, and the terminal state goes out through `finish`, which retries.
        """
        self.status.show(record)

    def finish(self, record: RunRecord) -> bool:
        """Save the record, then write its terminal state (done, failed, cancelled, waiting) to the status
        comment, retried until it lands within `final_policy`. False (logged) if it never did."""
        try:
            self.status.final(record)
        except WRITE_ERRORS as error:
            log.error(
                "run %s: the final status (%s) could not be written to GitHub: %s",
                record.run_id,
                record.state,
                describe_error(error),
            )
            return False
        if record.pr_number is not None and record.state in RUN_CONCLUSIONS:
            self._run_check(record, record.pr_number)
        return True

    def close(self) -> None:
        """The run's job is over: no progress edit may land after this (pending ones are dropped)."""
        self.status.close()


class FolderPublisher:
    """`plan.md`, `pull-request.md`, `status.md` and `run.json` in a folder; `on_progress` for a display."""

    def __init__(self, folder: Path, on_progress: Callable[[RunRecord], None] | None = None) -> None:
        self.folder = folder
        self.on_progress = on_progress
        folder.mkdir(parents=True, exist_ok=True)

    def post_plan(self, record: RunRecord, text: str) -> str:
        path = self.folder / ("plan.md" if not record.revision else f"plan-r{record.revision}.md")
        path.write_text(plan_comment(record, text, gated=False) + "\n")
        return path.resolve().as_uri()

    def open_pr(self, record: RunRecord, title: str, body: str) -> tuple[int | None, str]:
        path = self.folder / "pull-request.md"
        path.write_text(f"# {title}\n\nBranch `{record.branch}` → `{record.default_branch}`\n\n{body}\n")
        return None, path.resolve().as_uri()

    def post_review(self, record: RunRecord, body: str, comments: list[dict]) -> str:
        inline = "".join(f"\n- `{c['path']}:{c['line']}` — {c['body']}" for c in comments)
        path = self.folder / "review.md"
        path.write_text(body + ("\n\n## Inline comments\n" + inline if inline else "") + "\n")
        return path.resolve().as_uri()

    def finish(self, record: RunRecord) -> bool:
        """The terminal state: a folder write either works or raises, so the same as `progress`."""
        self.progress(record)
        return True

    def progress(self, record: RunRecord) -> None:
        (self.folder / "status.md").write_text(with_marker(render_status(record), "local", record.run_id))
        data = default_redactor().redact_obj(record.model_dump(mode="json"))
        (self.folder / "run.json").write_text(json.dumps(data, indent=2) + "\n")
        if self.on_progress:
            self.on_progress(record)
