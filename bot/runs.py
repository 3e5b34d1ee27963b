"""Run records: what a run is, where its status comment lives, how far it got. Kept in Redis.

Any worker on any machine can pick up any job, so everything a job needs to find its run is here, keyed
by run id, plus an index per issue for `/archon status` and `/archon cancel`, and one per installation of
the runs in progress (ARCHON_MAX_CONCURRENT_RUNS), kept in the same write as the record.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import redis
from pydantic import BaseModel, Field

from bot.agent.ledger import ProviderStats
from bot.limits import index_active
from bot.providers.types import Usage
from bot.runconfig import RunConfig
from bot.secrets import Redactor, default_redactor

RECORD_TTL = 90 * 24 * 3600


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting for approval"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def active(self) -> bool:
        return self in (RunState.QUEUED, RunState.RUNNING)


class NodeState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


class NodeRun(BaseModel):
    """One workflow node of a run: what ran it, what it cost, what it produced."""

    id: str
    kind: str
    state: NodeState = NodeState.PENDING
    model: str | None = Field(None, description="Alias chosen for the node (agent nodes).")
    answered_by: str | None = Field(None, description="Provider/model that actually answered last.")
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0
    providers: dict[str, ProviderStats] = Field(default_factory=dict)
    models: dict[str, ProviderStats] = Field(
        default_factory=dict, description="The same counters per `provider/model`, for the cost table."
    )
    outputs: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class IssueInfo(BaseModel):
    """The issue a run works on, fixed once: from the accepted delivery, else its first API read.

    Retries, `/archon approve` and `/archon revise` reuse it, so edits to the issue after a maintainer
    accepted it never reach the models.
    """

    number: int
    title: str
    body: str = ""
    url: str = ""
    author: str = Field("", description="The issue's author (its login), shown to models beside its text.")
    delivery_id: str | None = Field(None, description="The delivery it was copied from; None: the API.")


class ReviewThread(BaseModel):
    """The review-comment thread a revision was asked for in: it is part of the feedback."""

    comment_id: int = Field(description="The comment that asked; the bot's reply goes in its thread.")
    path: str = ""
    line: int | None = None
    diff_hunk: str = ""
    earlier: list[str] = Field(default_factory=list, description="Earlier replies, `@login: text`.")


class Revision(BaseModel):
    """One `/archon revise` (or `replan`, or an opted-in "changes requested") on the run's pull request."""

    number: int = Field(description="1 for the first revision of the run.")
    kind: str = Field("revise", description="`revise` (implement only) or `replan` (plan, then implement).")
    feedback: str
    requested_by: str
    delivery_id: str = Field(description="The delivery that asked: a redelivery finds this revision.")
    via: str = Field("comment", description="`comment`, `review` or `thread`, for people.")
    thread: ReviewThread | None = None
    models: dict[str, str] = Field(default_factory=dict, description="Role → alias given in the command.")
    state: RunState = RunState.QUEUED
    cost_usd: float = 0.0
    commit: str | None = Field(None, description="The branch's head after the revision.")
    summary: str | None = None
    created_at: datetime = Field(default_factory=lambda: now())
    finished_at: datetime | None = None

    @property
    def job_id(self) -> str:
        return f"revise-{self.delivery_id}"


def now() -> datetime:
    return datetime.now(UTC)


def run_id_for(delivery_id: str) -> str:
    """Derived from the delivery, so a retried triage job reuses the run (and its status comment)."""
    return "r" + hashlib.sha256(delivery_id.encode()).hexdigest()[:10]


class RunRecord(BaseModel):
    run_id: str
    job_id: str
    installation_id: int
    config: RunConfig
    requested_by: str
    trigger: str = Field(description="What started it, for people: a label name or a command line.")
    state: RunState = RunState.QUEUED
    status_comment_id: int | None = None
    status_comment_url: str | None = None
    summary: str | None = None
    error: str | None = None
    created_at: datetime = Field(default_factory=now)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    issue: IssueInfo | None = None
    default_branch: str | None = None
    branch: str | None = None
    nodes: dict[str, NodeRun] = Field(default_factory=dict, description="In workflow order.")
    loops: dict[str, int] = Field(default_factory=dict, description="Loop node id → iterations run.")
    approved: bool = False
    feedback: str = ""
    revision: int = Field(0, description="How many times `/archon revise` re-planned this run.")
    plan_urls: list[str] = Field(default_factory=list, description="Plan comments, the current one last.")
    pr_number: int | None = None
    pr_url: str | None = None
    failed_node: str | None = None
    evaluation: dict[str, Any] | None = Field(None, description="The stored evaluation (JSON), if any.")
    bench_id: str | None = Field(None, description="The benchmark this run is a cell of.")
    open_pr: bool = Field(True, description="Benchmark cells open draft PRs only when asked.")
    revisions: list[Revision] = Field(default_factory=list, description="Revisions on its pull request.")

    @property
    def usage(self) -> Usage:
        return sum((node.usage for node in self.nodes.values()), Usage())

    def cancel(self, by: str) -> bool:
        """End the run as `/archon cancel` from @`by` does, its running node closed; False if it has
        ended already (nothing to cancel)."""
        if not (self.state.active or self.state is RunState.WAITING):
            return False
        self.state, self.finished_at, self.summary = RunState.CANCELLED, now(), f"Cancelled by @{by}."
        self.close_running("cancelled")
        return True

    def close_running(self, error: str) -> bool:
        """Mark the nodes still running failed, for a run ended from outside its job (a cancel, a dead
        work-horse), so `/archon retry` resumes at them. Returns whether any was running."""
        running = [node for node in self.nodes.values() if node.state is NodeState.RUNNING]
        for node in running:
            node.state, node.error, node.finished_at = NodeState.FAILED, error, now()
            self.failed_node = node.id
        return bool(running)

    @property
    def cost_usd(self) -> float:
        return round(sum(node.cost_usd for node in self.nodes.values()), 6)


class RunEnded(Exception):
    """A run's own job tried to write its record after another writer had ended the run (`/archon
    cancel`, or a failure path that declared its job dead): the job's copy is stale and must not land."""


def ended_elsewhere(stored: RunState, writing: RunState) -> bool:
    """Whether a job's write of `writing` over `stored` would undo an end it did not write: a cancelled
    run stays cancelled, and an ended run is never made queued or running again by its old job (only
    `/archon retry` or `approve` do that, through triage)."""
    if stored is RunState.CANCELLED:
        return writing is not RunState.CANCELLED
    return not stored.active and writing.active


class RunStore:
    """Redis adapter for run records. Records are redacted on save: they hold node errors, outputs and
    summaries, which quote commands, models and exceptions, and they outlive the run by months.

    A record has several writers: the run's job, triage (`/archon cancel`, `retry`) and the failure
    paths, on any machine. `for_job=True` is the store a run's job writes through: each save checks, in
    the same transaction, that nobody else ended the run meanwhile (else `RunEnded`). Writers that
    change a record they did not just make use `update`, a read-modify-write that cannot lose a
    concurrent write."""

    def __init__(
        self, connection: redis.Redis, redactor: Redactor | None = None, *, for_job: bool = False
    ) -> None:
        self.redis = connection
        self._redactor = redactor
        self._for_job = for_job

    @staticmethod
    def _key(run_id: str) -> str:
        return f"archon:run:{run_id}"

    @staticmethod
    def _issue_key(repo: str, issue: int) -> str:
        return f"archon:issue-runs:{repo}#{issue}"

    def save(self, record: RunRecord) -> None:
        text = self._text(record)
        if not self._for_job:
            with self.redis.pipeline() as pipe:
                self._write(pipe, record, text)
                pipe.execute()
            return

        def guarded(pipe: redis.client.Pipeline) -> None:
            raw = pipe.get(self._key(record.run_id))
            if raw is not None and ended_elsewhere(RunState(json.loads(raw)["state"]), record.state):
                raise RunEnded(f"run {record.run_id} was ended by another writer while its job ran")
            pipe.multi()
            self._write(pipe, record, text)

        self.redis.transaction(guarded, self._key(record.run_id))

    def update(self, run_id: str, change: Callable[[RunRecord], bool]) -> RunRecord | None:
        """Apply `change` to the stored record and write it back, atomically: if another writer saves
        the record in between, the read and `change` run again on what it wrote. `change` returns
        whether there is anything to write. Returns the record as written, or None (no record, or no
        change)."""
        key = self._key(run_id)

        def attempt(pipe: redis.client.Pipeline) -> RunRecord | None:
            raw = pipe.get(key)
            record = RunRecord.model_validate_json(raw) if raw else None
            if record is None or not change(record):
                return None
            pipe.multi()
            self._write(pipe, record, self._text(record))
            return record

        return self.redis.transaction(attempt, key, value_from_callable=True)

    def _text(self, record: RunRecord) -> str:
        data = (self._redactor or default_redactor()).redact_obj(record.model_dump(mode="json"))
        return json.dumps(data, ensure_ascii=False)

    def _write(self, pipe: redis.client.Pipeline, record: RunRecord, text: str) -> None:
        """The record, its issue's index and the installation's active set, queued on one pipeline."""
        config = record.config
        pipe.set(self._key(record.run_id), text, ex=RECORD_TTL)
        pipe.zadd(self._issue_key(config.repo, config.issue), {record.run_id: record.created_at.timestamp()})
        pipe.expire(self._issue_key(config.repo, config.issue), RECORD_TTL)
        if record.bench_id is None:  # a benchmark counts once, as itself (bot/bench/orchestrate.py)
            index_active(pipe, record.installation_id, record.run_id, record.state.active)

    def load(self, run_id: str) -> RunRecord | None:
        raw = self.redis.get(self._key(run_id))
        return RunRecord.model_validate_json(raw) if raw else None

    def for_issue(self, repo: str, issue: int) -> list[RunRecord]:
        ids = self.redis.zrange(self._issue_key(repo, issue), 0, -1)
        records = (self.load(i.decode() if isinstance(i, bytes) else i) for i in ids)
        return [r for r in records if r is not None]
