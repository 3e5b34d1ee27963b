"""A revision of the bot's own pull request: the bundled `revise` workflow on the pull request's branch.

The run record stays the run's: the engine works on a copy whose nodes are the revision's (seeded with
what the original run already did), and `RevisionPublisher` folds its progress back into the record's
`revisions` entry. New commits go on top of the pushed branch (the push's lease refuses anything else),
so a revision never force-pushes and never opens a second pull request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from bot.conventions import read_conventions
from bot.evaluation.schema import Evaluation
from bot.github.forge import SUPERSEDED_PREFIX, InlineComment, RepoForge
from bot.publish import REVISION_KEY, WRITE_ERRORS, GitHubPublisher, post_evaluation_check
from bot.repo_config import CONFIG_PATH, parse_repo_config, registry_for
from bot.runconfig import ResolvedModel
from bot.runner import execute, git_workspace
from bot.runs import NodeState, Revision, RunRecord, RunState, RunStore, now
from bot.settings import Settings
from bot.triggers import Role
from bot.workflow.engine import Outcome
from bot.workflow.report import pull_request_body
from bot.workflow.schema import REPO_DIR, WorkflowError, load_workflows

log = logging.getLogger(__name__)

WORKFLOW = "revise"
#: The nodes a revision takes from the original run instead of running them again.
SEEDED = {"revise": ("explore", "plan", "post-plan"), "replan": ("explore",)}
MAX_DIFF_CHARS = 60_000
BRANCH_GONE = "the pull request's branch `{branch}` is no longer on the remote, so there is nothing to revise"
REPLY = "revision {number} ({kind}): {summary}\n\n{commit} A fresh evaluation is posted as a review."
REVIEW_KEY = REVISION_KEY
REPLY_KIND = "reply"
INLINE_HEADING = "The review's comments on the diff:"
REVIEW_SUPERSEDED = SUPERSEDED_PREFIX + " by [the evaluation of revision {number}]({url}).\n\n"


def review_feedback(body: str, comments: Sequence[InlineComment]) -> str:
    """A review's feedback: its body, then each inline comment with its file, line and diff hunk (a
    "changes requested" review often says everything in those comments and nothing in its body)."""
    if not comments:
        return body
    parts = [body, "", INLINE_HEADING]
    for comment in comments:
        where = f"`{comment.path}`" + (f" line {comment.line}" if comment.line else "")
        parts += ["", f"On {where}:", comment.body.strip()]
        if comment.diff_hunk:
            parts += ["```diff", comment.diff_hunk, "```"]
    return "\n".join(parts)


def feedback_text(revision: Revision, diff: str) -> str:
    """What the implementer is told: the words, where they were written, and the current diff."""
    parts = [f"From @{revision.requested_by} (in a {revision.via}):", "", revision.feedback]
    if thread := revision.thread:
        where = f"`{thread.path}`" + (f" line {thread.line}" if thread.line else "")
        parts += ["", f"Written in a review thread on {where}, on this part of the diff:"]
        parts += ["```diff", thread.diff_hunk, "```"]
        if thread.earlier:
            parts += ["", "Earlier in the thread:", *(f"- {line}" for line in thread.earlier)]
    shown = diff if len(diff) <= MAX_DIFF_CHARS else diff[:MAX_DIFF_CHARS] + "\n… (diff truncated)"
    parts += ["", "The pull request's current diff:", "```diff", shown, "```"]
    return "\n".join(parts)


def work_record(record: RunRecord, revision: Revision, registry: Any, diff: str) -> RunRecord:
    """The copy the engine runs: the original's finished nodes to keep, the feedback, the models."""
    work = record.model_copy(deep=True)
    keep = SEEDED.get(revision.kind, ())
    work.nodes = {
        nid: node for nid, node in work.nodes.items() if nid in keep and node.state is NodeState.DONE
    }
    work.loops, work.failed_node, work.approved = {}, None, True
    work.feedback = feedback_text(revision, diff)
    if revision.kind == "replan":
        work.revision = record.revision + 1
    models = dict(work.config.models)
    for role, alias in revision.models.items():
        models[Role(role)] = ResolvedModel(alias=alias, spec=registry.get(alias))
    work.config = work.config.model_copy(update={"models": models})
    return work


class RevisionPublisher:
    """Publishes a revision: plans through the run's publisher, its own review, progress into the record."""

    def __init__(self, inner: GitHubPublisher, record: RunRecord, revision: Revision, seeded_cost: float):
        self.inner, self.record, self.revision, self.seeded_cost = inner, record, revision, seeded_cost

    def post_plan(self, work: RunRecord, text: str) -> str:
        url = self.inner.post_plan(work, text)
        self.record.revision = work.revision
        if url not in self.record.plan_urls:
            self.record.plan_urls.append(url)
        return url

    def open_pr(self, work: RunRecord, title: str, body: str) -> tuple[int | None, str]:
        return self.record.pr_number, self.record.pr_url or ""  # never a second pull request

    def post_review(self, work: RunRecord, body: str, comments: list[dict]) -> str:
        assert self.record.pr_number is not None
        key = REVIEW_KEY.format(run_id=self.record.run_id, number=self.revision.number)
        review_id = self.inner.forge.post_review(self.record.pr_number, body, key=key, comments=comments)
        self._supersede_reviews(f"{self.record.pr_url or ''}#pullrequestreview-{review_id}")
        if work.evaluation is not None:  # the revision's head gets its own `Archon evaluation` check run
            evaluation = Evaluation.model_validate(work.evaluation)
            post_evaluation_check(
                self.inner.forge, self.record.pr_number, evaluation, self.inner.min_score, key,
                self.record.pr_url or "",
            )  # fmt: skip
        return self.record.pr_url or ""

    def _supersede_reviews(self, url: str) -> None:
        """The run's earlier evaluation reviews (the run's own, earlier revisions') point to this one;
        best-effort: the fresh review stands without the notes."""
        assert self.record.pr_number is not None
        run_id, number = self.record.run_id, self.revision.number
        earlier = [run_id, *(REVIEW_KEY.format(run_id=run_id, number=n) for n in range(1, number))]
        note = REVIEW_SUPERSEDED.format(number=number, url=url)
        for key in earlier:
            try:
                self.inner.forge.supersede_review(self.record.pr_number, key, note)
            except WRITE_ERRORS as error:
                log.warning("run %s: review %s not marked superseded: %s", run_id, key, error)

    def progress(self, work: RunRecord) -> None:
        self.revision.cost_usd = round(work.cost_usd - self.seeded_cost, 6)
        self.record.evaluation = work.evaluation or self.record.evaluation
        self.inner.store.save(self.record)


def run_revision(
    record: RunRecord,
    revision: Revision,
    settings: Settings,
    forge: RepoForge,
    store: RunStore,
    token: Callable[[], str],
) -> Outcome:
    """Check out the pull request's branch, run the `revise` workflow there, and tell the maintainer.
    The repository's config, workflows and conventions come from the synced mirror, as in a run."""
    workspace = git_workspace(settings)
    workspace.sync(record.config.repo, token=token())
    files = workspace.snapshot(record.config.repo, token=token())
    config = parse_repo_config(files.read_file(CONFIG_PATH))
    workflows = load_workflows(files.read_dir(REPO_DIR))
    if WORKFLOW not in workflows:
        raise WorkflowError(f"there is no workflow `{WORKFLOW}`")
    registry = registry_for(config, settings)
    assert record.branch is not None
    worktree = workspace.prepare(
        record.config.repo, f"{record.run_id}-v{revision.number}", record.branch, token=token(), fetch=False
    )
    if not worktree.resumed:
        workspace.remove(worktree)
        return Outcome(RunState.FAILED, BRANCH_GONE.format(branch=record.branch))
    before, diff_before = worktree.head(), worktree.diff()
    work = work_record(record, revision, registry, diff_before)
    publisher = RevisionPublisher(
        GitHubPublisher(forge, store, lambda: False), record, revision, work.cost_usd
    )
    diff_after: list[str] = []
    real_review = publisher.post_review

    def post_review(work: RunRecord, body: str, comments: list[dict]) -> str:
        diff_after.append(worktree.diff())  # the worktree is gone once the engine returns
        return real_review(work, body, comments)

    publisher.post_review = post_review  # type: ignore[method-assign]
    outcome = execute(
        workflow=workflows[WORKFLOW], record=work, publisher=publisher, workspace=workspace,
        worktree=worktree, config=config, registry=registry, settings=settings, token=token,
        connection=store.redis, conventions=read_conventions(files.read_file),
    )  # fmt: skip
    commit = work.nodes.get("commit")
    sha = str(commit.outputs.get("sha") or "") if commit else ""
    revision.commit = sha if sha and sha != before else None
    revision.summary = _summary(work, outcome)
    finish(revision, outcome)  # the cost table's row shows the finished revision
    _update_pull_body(forge, record, diff_after[-1] if diff_after else diff_before)
    return outcome


def _summary(work: RunRecord, outcome: Outcome) -> str:
    node = work.nodes.get("revise")
    text = str(node.outputs.get("text") or "").strip() if node else ""
    if outcome.state is RunState.FAILED:
        return outcome.summary
    return text or outcome.summary


def _update_pull_body(forge: RepoForge, record: RunRecord, diff: str) -> None:
    """The pull request's body gains the revision's row in its cost table (best-effort: the revision
    stands without it, and the run record keeps the row)."""
    if record.pr_number is None:
        return
    review = record.nodes.get("self-review")
    body = pull_request_body(record, str(review.outputs.get("text") or "") if review else "", diff)
    try:
        forge.edit_pull_body(record.pr_number, body, key=record.run_id)
    except WRITE_ERRORS as error:
        log.warning("run %s: the pull request's body was not updated: %s", record.run_id, error)


def reply(forge: RepoForge, record: RunRecord, revision: Revision) -> None:
    """Say what changed: in the review thread the revision was asked in, else on the pull request."""
    commit = (
        f"New commit `{revision.commit[:7]}` on `{record.branch}`." if revision.commit else "No new commit."
    )
    text = f"@{revision.requested_by} " + REPLY.format(
        number=revision.number, kind=revision.kind, summary=revision.summary or revision.state, commit=commit
    )
    post_reply(forge, record, revision, text)


def post_reply(forge: RepoForge, record: RunRecord, revision: Revision, text: str) -> None:
    """Where the revision was asked: its review thread, else the pull request. The reply's marker is the
    revision's, so a retried job (or a lost answer and a retry) never posts it twice."""
    key = REVIEW_KEY.format(run_id=record.run_id, number=revision.number)
    if revision.thread is not None and record.pr_number is not None:
        forge.reply_in_thread(record.pr_number, revision.thread.comment_id, REPLY_KIND, key, text)
        return
    forge.upsert_comment(record.pr_number or record.config.issue, REPLY_KIND, key, text)


def finish(revision: Revision, outcome: Outcome) -> None:
    revision.state = RunState.DONE if outcome.state is RunState.DONE else RunState.FAILED
    revision.finished_at = now()
    if outcome.state is RunState.FAILED:
        revision.summary = outcome.summary
