"""RQ's enqueue of one kind of job, recorded once and replayed by a Lua script with only what varies.

Building a `rq.job.Job` and letting RQ queue its writes on a pipeline costs the web handler more than
everything else it does (objects, serializer look-ups, a dozen HSET arguments packed one by one). But
for jobs made by one function with one set of options, RQ writes the same commands every time except
for five values: the job id (also inside its key), the serialized call, the description and two
timestamps. So RQ's own enqueue of a probe job is recorded (on a pipeline that is never sent), the
probe's values are replaced by slots, and the result becomes Lua statements; a delivery then sends
five values per job. The template is checked against a second recording with other values before it
is used: if the installed RQ writes anything that is not a slot or the same for every job, building
fails with the difference, rather than jobs being written that RQ's workers would misread.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from rq import Queue
from rq.job import Job
from rq.utils import utcformat

#: What differs between two jobs of one template, in the order `JobTemplate.values` gives them.
SLOTS = ("id", "data", "description", "created_at", "enqueued_at")
#: Stand-ins a template is recorded with (values no job of the bot has), and those it is checked with.
PROBE = ("archon-template-probe-7c1d0e", ({"archon-template-probe": 1},), "archon template probe")
CHECK = ("archon-template-check-51f9aa", ({"archon-template-check": [2, "two"]},), "archon template check")
PROBE_CREATED = datetime(2001, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)
#: Commands a script cannot run inside itself, or that would change what "recorded" means.
NOT_REPLAYABLE_COMMANDS = frozenset(
    {"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "WATCH", "MULTI", "EXEC"}
)
NOT_REPLAYABLE = "RQ wrote {command} while enqueueing; bot.queue.accept_delivery cannot replay it in a script"
MISMATCH = (
    "RQ {version} enqueues jobs in a way bot.rq_template cannot replay: for a second job it wrote\n"
    "  {theirs}\nwhere the template gives\n  {ours}"
)

#: One argument: literal bytes and slot indexes, concatenated (`rq:job:` + the id is a job's key).
Arg = tuple[bytes | int, ...]
Command = tuple[Arg, ...]
#: Makes the job a template stands for: (queue, job id, positional arguments, description) → Job.
MakeJob = Callable[[Queue, str, tuple[Any, ...], str], Job]


def recorded(connection: redis.Redis, write: Callable[[redis.client.Pipeline], object]) -> list[list[Any]]:
    """The commands `write` queues on a pipeline, as argument lists, without sending them."""
    pipe = connection.pipeline()
    try:
        pipe.multi()  # RQ puts a pipeline it is given in MULTI mode; buffered either way, never sent
        write(pipe)
        commands = [list(args) for args, _ in pipe.command_stack]
    finally:
        pipe.reset()
    for command in commands:
        name = str(command[0]).upper()
        if name in NOT_REPLAYABLE_COMMANDS:
            raise RuntimeError(NOT_REPLAYABLE.format(command=name))
    return commands


def _encoded(connection: redis.Redis, commands: list[list[Any]]) -> list[list[bytes]]:
    """The commands as the bytes redis-py sends (a `JobStatus` as `queued`, an int as its digits)."""
    encode = connection.get_encoder().encode
    return [[bytes(encode(arg)) for arg in command] for command in commands]


def _slotted(arg: bytes, values: Sequence[bytes]) -> Arg:
    """`arg` as literal parts and slots: whole if it is one of the values, else around the job id."""
    if arg in values:
        return (values.index(arg),)
    job_id = values[0]
    if job_id not in arg:
        return (arg,)
    parts: list[bytes | int] = []
    for index, piece in enumerate(arg.split(job_id)):
        if index:
            parts.append(0)
        if piece:
            parts.append(piece)
    return tuple(parts)


def _lua_string(data: bytes) -> str:
    """A Lua string literal of any bytes: printable ASCII as is, the rest as 3-digit decimal escapes."""
    return '"' + "".join(chr(b) if 32 <= b < 127 and b not in b'"\\' else f"\\{b:03d}" for b in data) + '"'


def _lua_arg(arg: Arg) -> str:
    return " .. ".join(f"v[{part + 1}]" if isinstance(part, int) else _lua_string(part) for part in arg)


@dataclass(frozen=True)
class JobTemplate:
    """What RQ writes to enqueue a job of one kind, with the values of one job as slots."""

    commands: tuple[Command, ...]
    func_name: str
    dumps: Callable[[Any], bytes]

    def values(
        self, job_id: str, args: tuple[Any, ...], description: str, created: str, enqueued: str
    ) -> list:
        """The slots' values for one job: what `Job.to_dict` would give for it (`data` is RQ's serializer
        applied to the call, zlib-compressed, as `Job.data` and `Job.to_dict` make it)."""
        data = zlib.compress(self.dumps((self.func_name, None, args, {})))
        return [job_id, data, description, created, enqueued]

    def render(self, values: Sequence[bytes]) -> list[list[bytes]]:
        """The commands for one job, in Python (how the template is checked against RQ)."""
        return [
            [b"".join(values[part] if isinstance(part, int) else part for part in arg) for arg in command]
            for command in self.commands
        ]

    def lua(self) -> str:
        """Lua statements writing one job whose slot values are in the table `v`."""
        return "\n".join(
            "redis.call(" + ", ".join(_lua_arg(arg) for arg in command) + ")" for command in self.commands
        )


def _enqueue(queue: Queue, job: Job, created: datetime | None = None) -> tuple[list[list[Any]], Job]:
    if created is not None:
        job.created_at = created
    return recorded(queue.connection, lambda pipe: queue.enqueue_job(job, pipeline=pipe)), job


def _stamps(job: Job) -> tuple[str, str]:
    assert job.created_at is not None and job.enqueued_at is not None  # set by create and enqueue
    return utcformat(job.created_at), utcformat(job.enqueued_at)


def build(queue: Queue, make: MakeJob) -> JobTemplate:
    """Record RQ enqueueing a probe job made by `make`, template it, and check the template on a
    second job: RuntimeError if RQ wrote anything for it the template would not."""
    connection = queue.connection
    commands, probe = _enqueue(queue, make(queue, *PROBE), created=PROBE_CREATED)
    assert probe.func_name is not None
    partial = JobTemplate((), probe.func_name, queue.serializer.dumps)
    encode = connection.get_encoder().encode
    probe_values = [bytes(encode(v)) for v in partial.values(*PROBE, *_stamps(probe))]
    template = JobTemplate(
        tuple(
            tuple(_slotted(arg, probe_values) for arg in command)
            for command in _encoded(connection, commands)
        ),
        probe.func_name,
        queue.serializer.dumps,
    )
    theirs, check = _enqueue(queue, make(queue, *CHECK))
    theirs_bytes = _encoded(connection, theirs)
    ours = template.render([bytes(encode(v)) for v in template.values(*CHECK, *_stamps(check))])
    if ours != theirs_bytes:
        raise RuntimeError(MISMATCH.format(version=_rq_version(), theirs=theirs_bytes, ours=ours))
    return template


def _rq_version() -> str:
    from rq import __version__

    return __version__


def now_stamp() -> str:
    """The time as RQ writes `created_at` and `enqueued_at`: `rq.utils.utcformat` of a UTC now."""
    return stamp_of(time.time_ns())


def stamp_of(ns: int) -> str:
    """`utcformat` of the UTC time `ns` nanoseconds after the epoch, formatted from the integer: the
    same text for a third of the CPU of an aware `datetime` and `strftime` (it is on every delivery)."""
    seconds, micros = divmod(ns // 1000, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}Z"
