"""The front door's Redis side: one round trip per delivery, exactly once under redelivery, and jobs that
real RQ workers run. Correctness only; its speed is measured by scripts/bench_front_door.py."""

from __future__ import annotations

import threading
import uuid

import pytest
import redis
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus

from bot.events import CommandTask, LabelsTask, TaskEnvelope
from bot.metrics import HASH
from bot.queue import TRIAGE_QUEUE, JobQueue
from bot.rq_template import build, recorded
from bot.settings import Settings
from bot.web import create_app
from tests.support import delivery_headers, encode, labeled


class CountingConnection(redis.Connection):
    """Counts the writes to the socket: a pipeline or a script is one, each plain command one."""

    sends = 0

    def send_packed_command(self, command, check_health=True):  # type: ignore[no-untyped-def]
        type(self).sends += 1
        return super().send_packed_command(command, check_health)


@pytest.fixture
def counting(redis_conn: redis.Redis) -> redis.Redis:
    kwargs = redis_conn.connection_pool.connection_kwargs
    pool = redis.ConnectionPool(connection_class=CountingConnection, **kwargs)
    return redis.Redis(connection_pool=pool)


def _task(delivery: str, issue: int = 1) -> CommandTask:
    return CommandTask(
        delivery_id=delivery,
        installation_id=777,
        repo="octo/repo",
        issue=issue,
        is_pull_request=False,
        sender="alice",
        trigger="archon:plan-opus",
    )


def _rounds(connection: redis.Redis, call) -> int:  # type: ignore[no-untyped-def]
    connection.ping()  # a connection in the pool, the server's version known: not what is counted
    before = CountingConnection.sends
    call()
    return CountingConnection.sends - before


def test_accept_is_one_round_trip_including_the_count(counting: redis.Redis) -> None:
    queue = JobQueue(counting)
    queue.accept_delivery("warm", [_task("warm")])  # first use loads the script (NOSCRIPT → LOAD)

    count = [("HINCRBY", HASH, "accepted", 1)]
    assert (
        _rounds(counting, lambda: queue.accept_delivery("d-1", [_task("d-1"), _task("d-1", 2)], count)) == 1
    )
    assert _rounds(counting, lambda: queue.accept_delivery("d-1", [_task("d-1")], count)) == 1
    assert counting.hget(HASH, "accepted") == b"1"  # counted with the enqueue, not with the duplicate
    assert Queue(TRIAGE_QUEUE, connection=counting).job_ids == [
        "triage-warm-0",
        "triage-d-1-0",
        "triage-d-1-1",
    ]


def test_webhook_answers_an_accepted_delivery_in_one_round_trip(settings: Settings, counting) -> None:
    client = create_app(settings, counting).test_client()
    body = encode(labeled("archon:plan-opus impl-kimi"))
    for delivery in ("warm", "d-2"):
        headers = delivery_headers("issues", body, delivery=delivery)
        sent = _rounds(counting, lambda h=headers: client.post("/webhook", data=body, headers=h))
    assert sent == 1
    counts = {key.decode(): int(value) for key, value in counting.hgetall(HASH).items()}
    assert counts == {'["webhook_deliveries",{"outcome":"accepted"}]': 2}


def test_concurrent_redeliveries_enqueue_exactly_once(redis_conn: redis.Redis) -> None:
    delivery = f"storm-{uuid.uuid4().hex}"
    results: list[list[str] | None] = []
    barrier = threading.Barrier(16)

    def deliver() -> None:
        queue = JobQueue(redis.Redis(connection_pool=redis_conn.connection_pool))
        barrier.wait()
        results.append(queue.accept_delivery(delivery, [_task(delivery)]))

    threads = [threading.Thread(target=deliver) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results, key=bool) == [None] * 15 + [[f"triage-{delivery}-0"]]
    assert Queue(TRIAGE_QUEUE, connection=redis_conn).job_ids == [f"triage-{delivery}-0"]


def _labels(delivery: str) -> LabelsTask:
    return LabelsTask(delivery_id=delivery, installation_id=777, repos=("octo/repo", "octo/other"))


@pytest.mark.parametrize("make", [_task, _labels])
def test_written_job_is_what_rq_writes(redis_conn: redis.Redis, make) -> None:
    """The script replays RQ's own enqueue: the same hash fields, queue entry and queues set."""
    ours, theirs = "ours", "theirs"
    JobQueue(redis_conn).accept_delivery(ours, [make(ours)])
    queue = Queue(TRIAGE_QUEUE, connection=redis_conn)
    queue.enqueue_job(JobQueue._triage_job(queue, make(theirs), 0))
    mine, rqs = (redis_conn.hgetall(f"rq:job:triage-{name}-0") for name in (ours, theirs))
    volatile = {b"created_at", b"enqueued_at", b"data", b"description", b"last_heartbeat"}
    assert set(mine) == set(rqs)
    assert {k: v for k, v in mine.items() if k not in volatile} == {
        k: v for k, v in rqs.items() if k not in volatile
    }
    assert redis_conn.smembers("rq:queues") == {f"rq:queue:{TRIAGE_QUEUE}".encode()}
    assert redis_conn.ttl(f"archon:delivery:{ours}") > 3 * 24 * 3600
    assert Queue(TRIAGE_QUEUE, connection=redis_conn).job_ids == ["triage-ours-0", "triage-theirs-0"]
    # The volatile fields say the same, for their own delivery: the job's call, its text, its times.
    mine_job, rq_job = (Job.fetch(f"triage-{name}-0", connection=redis_conn) for name in (ours, theirs))
    assert mine_job.func_name == rq_job.func_name and mine_job.kwargs == rq_job.kwargs == {}
    assert mine_job.args == (TaskEnvelope(task=make(ours)).model_dump(mode="json"),)
    assert mine_job.description == f"triage {make(ours).kind} {ours}"
    assert mine_job.created_at == mine_job.enqueued_at and mine_job.created_at is not None


def test_a_job_rq_would_write_differently_is_refused_before_any_is_written(redis_conn: redis.Redis) -> None:
    """The template is checked against a second recording of RQ: a job whose fixed fields would differ
    from one job to the next (here its timeout follows its arguments) cannot be templated."""

    def make(queue: Queue, job_id: str, args: tuple, description: str) -> Job:
        return queue.create_job(
            "bot.jobs.triage", args=args, job_id=job_id, description=description, timeout=len(repr(args))
        )

    with pytest.raises(RuntimeError, match="cannot replay"):
        build(Queue(TRIAGE_QUEUE, connection=redis_conn), make)
    assert redis_conn.keys("rq:*") == []  # recorded, never sent


def test_written_job_runs_on_a_real_worker(redis_conn: redis.Redis, monkeypatch) -> None:
    """A SimpleWorker runs the job from the script; the job function is swapped for one that records
    its argument (the triage job itself needs GitHub), the job as written is not touched."""
    seen: list[dict] = []
    monkeypatch.setattr("bot.jobs.triage", lambda envelope: seen.append(envelope) or "done")
    [job_id] = JobQueue(redis_conn).accept_delivery("w-1", [_task("w-1")])
    worker = SimpleWorker([Queue(TRIAGE_QUEUE, connection=redis_conn)], connection=redis_conn)
    assert worker.work(burst=True)
    job = Job.fetch(job_id, connection=redis_conn)
    assert job.get_status() == JobStatus.FINISHED and job.return_value() == "done"
    assert seen == [{"task": _task("w-1").model_dump(mode="json")}]


def test_recording_refuses_what_a_script_cannot_replay(redis_conn: redis.Redis) -> None:
    with pytest.raises(RuntimeError, match="EVALSHA"):
        recorded(redis_conn, lambda pipe: pipe.evalsha("0" * 40, 0))
    assert recorded(redis_conn, lambda pipe: pipe.set("k", "v")) == [["SET", "k", "v"]]
    assert redis_conn.get("k") is None  # recorded, never sent


def test_redis_down_is_503_and_nothing_is_counted(settings: Settings) -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    client = create_app(settings, dead).test_client()
    body = encode(labeled("archon:plan-opus impl-kimi"))
    answer = client.post("/webhook", data=body, headers=delivery_headers("issues", body, delivery="down"))
    assert answer.status_code == 503 and answer.json["delivery"] == "down"


def test_accept_survives_a_flushed_script_and_a_closed_connection(redis_conn: redis.Redis) -> None:
    """Each handler thread holds its own connection for the accept script: a server that lost the script,
    or closed that connection while it was idle (a restart), costs no delivery."""
    queue = JobQueue(redis_conn)
    assert queue.accept_delivery("f-1", [_task("f-1")]) == ["triage-f-1-0"]
    redis_conn.script_flush()
    assert queue.accept_delivery("f-2", [_task("f-2")]) == ["triage-f-2-0"]
    redis_conn.client_kill_filter(_type="normal", skipme=True)
    assert queue.accept_delivery("f-3", [_task("f-3")]) == ["triage-f-3-0"]
    assert queue.accept_delivery("f-3", [_task("f-3")]) is None
    assert Queue(TRIAGE_QUEUE, connection=redis_conn).job_ids == [f"triage-f-{n}-0" for n in (1, 2, 3)]


def test_each_handler_thread_accepts_on_its_own_connection(counting: redis.Redis) -> None:
    """Held per thread (the same one for every delivery the thread answers), never shared between two."""
    queue = JobQueue(counting)
    held: dict[str, tuple[object, object]] = {}
    together = threading.Barrier(4)

    def accept(delivery: str) -> None:
        queue.accept_delivery(delivery, [_task(delivery)])
        first = queue._line()
        queue.accept_delivery(f"{delivery}-again", [_task(f"{delivery}-again")])
        held[delivery] = (first, queue._line())
        together.wait(timeout=60)  # all alive at once, so no two could have reused one object

    threads = [threading.Thread(target=accept, args=(f"t-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(first is again for first, again in held.values())
    assert len({id(first) for first, _ in held.values()}) == 4
    assert all(isinstance(first, CountingConnection) for first, _ in held.values())  # the client's class
    assert len(Queue(TRIAGE_QUEUE, connection=counting).job_ids) == 8
