"""Run records: what a run is, where its status comment lives, how far it got. Kept in Redis.

Any worker on any machine can pick up any job, so everything a job needs to find its run is here, keyed
by run id, plus an index per issue for `/archon status` and `/archon cancel`.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from enum import StrEnum

import redis
from pydantic import BaseModel, Field

from bot.runconfig import RunConfig

RECORD_TTL = 90 * 24 * 3600


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def active(self) -> bool:
        return self in (RunState.QUEUED, RunState.RUNNING)


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


class RunStore:
    """Redis adapter for run records."""

    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection

    @staticmethod
    def _key(run_id: str) -> str:
        return f"archon:run:{run_id}"

    @staticmethod
    def _issue_key(repo: str, issue: int) -> str:
        return f"archon:issue-runs:{repo}#{issue}"

    def save(self, record: RunRecord) -> None:
        config = record.config
        with self.redis.pipeline() as pipe:
            pipe.set(self._key(record.run_id), record.model_dump_json(), ex=RECORD_TTL)
            pipe.zadd(
                self._issue_key(config.repo, config.issue), {record.run_id: record.created_at.timestamp()}
            )
            pipe.expire(self._issue_key(config.repo, config.issue), RECORD_TTL)
            pipe.execute()

    def load(self, run_id: str) -> RunRecord | None:
        raw = self.redis.get(self._key(run_id))
        return RunRecord.model_validate_json(raw) if raw else None

    def for_issue(self, repo: str, issue: int) -> list[RunRecord]:
        ids = self.redis.zrange(self._issue_key(repo, issue), 0, -1)
        records = (self.load(i.decode() if isinstance(i, bytes) else i) for i in ids)
        return [r for r in records if r is not None]
