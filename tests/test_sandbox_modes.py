"""`ARCHON_SANDBOX` as operators meet it: what a worker does on a machine with and without bubblewrap."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bot import sandbox
from bot.sandbox import Sandbox, SandboxPolicy, SandboxUnavailableError
from bot.settings import ConfigurationError
from bot.worker import check_sandbox


@pytest.fixture
def no_bwrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "bwrap_problem", lambda: "bwrap is not installed")


def test_required_refuses_without_bwrap(no_bwrap) -> None:
    with pytest.raises(SandboxUnavailableError, match="not installed"):
        _ = Sandbox(SandboxPolicy(mode="required")).enabled


def test_auto_runs_unsandboxed_and_says_so(no_bwrap, settings, caplog: pytest.LogCaptureFixture) -> None:
    assert Sandbox(SandboxPolicy(mode="auto")).enabled is False
    with caplog.at_level("WARNING"):
        line = check_sandbox(settings)
    assert "unsandboxed" in line and "unsandboxed" in caplog.text


def test_a_worker_with_required_does_not_start_without_bwrap(no_bwrap, settings) -> None:
    required = settings.model_copy(update={"archon_sandbox": "required"})
    with pytest.raises(ConfigurationError, match="ARCHON_SANDBOX=required but bwrap is not installed"):
        check_sandbox(required)


def test_the_worker_command_fails_fast_with_required_and_no_bwrap(worker_env, tmp_path) -> None:
    """A real `archon-bot worker` process, PATH without bwrap: a one-line error, exit status not 0."""
    env = {**worker_env, "ARCHON_SANDBOX": "required", "PATH": str(tmp_path), "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "worker", "--queues", "archon-triage", "--burst"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "ARCHON_SANDBOX=required" in done.stderr and "Traceback" not in done.stderr


def test_unknown_mode_is_a_configuration_error(settings) -> None:
    from pydantic import ValidationError

    from bot.settings import Settings

    with pytest.raises(ValidationError, match="archon_sandbox"):
        Settings(_env_file=None, archon_sandbox="sometimes")
