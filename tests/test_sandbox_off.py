"""The one command runner without bubblewrap (`ARCHON_SANDBOX=off`, or `auto` where bwrap is missing).

There is no PID namespace here. `sandbox_reaper.py` must still make a command's whole tree die: when it
ends, at its deadline, and when the job that started it dies, including processes that `setsid`
out of its process group. These tests run real processes, whether or not bwrap is installed.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bot.sandbox import Sandbox, SandboxPolicy
from tests.test_sandbox import _wait_for as wait_for
from tests.test_sandbox import running, token

OFF = Sandbox(SandboxPolicy(mode="off"))


def sleeping(mark: str) -> int:
    """How many live processes are exactly `sleep MARK` (the reaper's and the job's command lines hold
    MARK too)."""
    count = 0
    for pid in running(mark):
        try:
            count += Path(f"/proc/{pid}/cmdline").read_bytes() == f"sleep\0{mark}\0".encode()
        except OSError:
            continue
    return count


def test_a_setsid_straggler_holding_the_output_dies_when_the_command_ends(tmp_path: Path) -> None:
    mark = token()
    done = OFF.run(
        f"echo hi; setsid sleep {mark} & sleep {mark} >/dev/null 2>&1 & true", root=tmp_path, timeout_s=120
    )
    # The straggler holds the output pipe: without the reaper the call took all 120 s and "timed out".
    assert not done.sandboxed and not done.timed_out
    assert (done.output, done.exit_code) == (b"hi\n", 0)
    assert running(mark) == []


def test_every_descendant_dies_at_the_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-off-mode-secret")
    mark = token()
    done = OFF.run(f"env; setsid sleep {mark} & (sleep {mark} &) ; sleep {mark}", root=tmp_path, timeout_s=1)
    assert done.timed_out and done.exit_code == -signal.SIGKILL
    assert b"sk-off-mode-secret" not in done.output and b"PATH=" in done.output
    assert running(mark) == []


def test_the_commands_exit_code_and_signal_are_its_own(tmp_path: Path) -> None:
    assert OFF.run("exit 3", root=tmp_path, timeout_s=60).exit_code == 3
    assert OFF.run("kill -TERM $$", root=tmp_path, timeout_s=60).exit_code == -signal.SIGTERM
    assert OFF.run(["true"], root=tmp_path, timeout_s=60).exit_code == 0


def test_a_command_that_signals_its_own_group_is_still_cleaned_up(tmp_path: Path) -> None:
    mark = token()
    done = OFF.run(f"setsid sleep {mark} & sleep 0.2; kill 0", root=tmp_path, timeout_s=120)
    assert not done.timed_out and done.exit_code == -signal.SIGTERM
    assert running(mark) == []


def test_a_missing_program_gets_a_shells_answer(tmp_path: Path) -> None:
    done = OFF.run(["no-such-program-archon"], root=tmp_path, timeout_s=60)
    assert done.exit_code == 127 and b"cannot run no-such-program-archon" in done.output


def test_the_command_sees_default_signal_dispositions(tmp_path: Path) -> None:
    """The reaper ignores SIGTERM, SIGINT and SIGHUP for itself. A command must not inherit that."""
    done = OFF.run(["grep", "-E", "^Sig(Ign|Cgt):", "/proc/self/status"], root=tmp_path, timeout_s=60)
    ignored = int(done.output.split(b"SigIgn:")[1].split()[0], 16)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        assert not ignored & (1 << (sig - 1)), sig


def test_a_command_dies_with_the_job_that_started_it(tmp_path: Path) -> None:
    mark = token()
    starter = (
        "from pathlib import Path\n"
        "from bot.sandbox import Sandbox, SandboxPolicy\n"
        f"Sandbox(SandboxPolicy(mode='off')).run('echo up > up; setsid sleep {mark} & exec sleep {mark}', "
        f"root=Path({str(tmp_path)!r}), timeout_s=600)\n"
    )
    job = subprocess.Popen([sys.executable, "-c", starter])
    wait_for(lambda: (tmp_path / "up").exists() and sleeping(mark) == 2)
    job.kill()
    job.wait()
    wait_for(lambda: running(mark) == [])


def test_both_ways_of_finding_children_agree() -> None:
    """The /proc scan is the fallback for kernels without `/proc/<pid>/task/<tid>/children`."""
    from bot import sandbox_reaper

    sleepers = [subprocess.Popen(["sleep", token()]) for _ in range(2)]
    try:
        found = sandbox_reaper._children()
        assert {p.pid for p in sleepers} <= set(found)
        assert sorted(found) == sorted(sandbox_reaper._children_by_scan())
    finally:
        for sleeper in sleepers:
            sleeper.kill()
            sleeper.wait()
