"""`archon-bot` as people meet it: a real subprocess, one-line errors with exit status 2, help with
defaults and examples, a data directory that does not depend on the working directory, and the same
settings (PORT, LOG_LEVEL, LOG_FORMAT) honoured by gunicorn started from the Procfile."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from bot import sample_repo
from bot.redis_server import RedisServer, free_port
from tests.support import SECRET

ROOT = Path(__file__).resolve().parent.parent
ARCHON_BOT = str(Path(sys.executable).with_name("archon-bot"))
ERROR_PREFIX = "archon-bot: error: "
#: A value shaped like a secret, to show that no message ever quotes it.
SECRET_LOOKING = "sk-cli-test-0123456789abcdefghij"


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment without any of the bot's settings (nor a `.env`), plus `extra`."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "ARCHON_", "REDIS_"))}
    for name in ("PORT", "LOG_LEVEL", "LOG_FORMAT", "WEB_CONCURRENCY"):
        keep.pop(name, None)
    return {**keep, "ARCHON_ENV_FILE": "", "HOME": str(tmp_path / "home"), **extra}


def cli(*args: str, env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ARCHON_BOT, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), done.stderr
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def issue_file(tmp_path: Path) -> Path:
    path = tmp_path / "issue.md"
    path.write_text(f"# {sample_repo.ISSUE_TITLE}\n\n{sample_repo.ISSUE_BODY}\n")
    return path


@pytest.fixture
def models_env(tmp_path: Path) -> dict[str, str]:
    models = sample_repo.write_models_file(tmp_path / "models.yml")
    return clean_env(tmp_path, ARCHON_MODELS_FILE=str(models), ARCHON_DATA_DIR=str(tmp_path / "data"))


def test_a_bad_setting_is_one_line_naming_the_variable_but_not_its_value(tmp_path: Path) -> None:
    env = clean_env(tmp_path, GITHUB_APP_ID=SECRET_LOOKING, PORT="eighty")
    line = assert_one_line_error(cli("demo", env=env, cwd=tmp_path), "GITHUB_APP_ID", "PORT")
    assert SECRET_LOOKING not in line and "eighty" not in line


def test_a_bad_setting_in_the_env_file_is_reported_too(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LOG_FORMAT=yaml\n")
    env = clean_env(tmp_path, ARCHON_ENV_FILE=".env")
    assert_one_line_error(cli("demo", env=env, cwd=tmp_path), "LOG_FORMAT", "'text' or 'json'")


def test_missing_credentials_are_a_configuration_error(tmp_path: Path) -> None:
    done = cli("worker", env=clean_env(tmp_path), cwd=tmp_path)
    assert_one_line_error(done, "GITHUB_APP_ID must be set")


def test_an_unknown_model_alias(tmp_path: Path, models_env, issue_file) -> None:
    bare = sample_repo.create_bare_remote(tmp_path / "remotes", "octo/sample")
    done = cli(
        "run",
        "--repo",
        str(bare),
        "--issue-file",
        str(issue_file),
        "--plan",
        "nosuch",
        env=models_env,
        cwd=tmp_path,
    )
    assert_one_line_error(done, "nosuch", "unknown model alias")


def test_a_repository_that_does_not_exist(tmp_path: Path, models_env, issue_file) -> None:
    done = cli(
        "run",
        "--repo",
        str(tmp_path / "nowhere"),
        "--issue-file",
        str(issue_file),
        env=models_env,
        cwd=tmp_path,
    )
    assert_one_line_error(done, "nowhere")


def test_an_issue_file_that_does_not_exist(tmp_path: Path, models_env) -> None:
    bare = sample_repo.create_bare_remote(tmp_path / "remotes", "octo/sample")
    done = cli("run", "--repo", str(bare), "--issue-file", "missing.md", env=models_env, cwd=tmp_path)
    assert_one_line_error(done, "No such file", "missing.md")


def test_evaluate_in_a_folder_that_is_not_there(tmp_path: Path, models_env) -> None:
    done = cli(
        "evaluate",
        "--repo",
        str(tmp_path / "gone"),
        "--base",
        "a",
        "--head",
        "b",
        env=models_env,
        cwd=tmp_path,
    )
    assert_one_line_error(done, "gone")


def test_a_malformed_archon_yml(tmp_path: Path, models_env, issue_file) -> None:
    repo = tmp_path / "checkout"
    repo.mkdir()
    (repo / ".github").mkdir()
    (repo / ".github" / "archon.yml").write_text("validate: [unclosed\n")
    git = ["git", "-c", "user.name=T", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=repo, check=True)
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "bad config"], cwd=repo, check=True)
    done = cli("run", "--repo", str(repo), "--issue-file", str(issue_file), env=models_env, cwd=tmp_path)
    assert_one_line_error(done, ".github/archon.yml", "not valid YAML")


def test_debug_shows_the_traceback_and_still_exits_2(tmp_path: Path) -> None:
    done = cli("worker", "--debug", env=clean_env(tmp_path), cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback (most recent call last)" in done.stderr and "ConfigurationError" in done.stderr
    assert done.stderr.strip().splitlines()[-1] == ERROR_PREFIX + "GITHUB_APP_ID must be set"


def test_every_subcommand_help_shows_defaults_and_an_example(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    for command in ("serve", "worker", "labels", "run", "evaluate", "bench", "demo"):
        done = cli(command, "--help", env=env, cwd=tmp_path)
        assert done.returncode == 0 and "example:" in done.stdout, done.stdout
        assert f"archon-bot {command}" in done.stdout.split("example:")[1]
    assert "(default: archon-runs)" in cli("run", "--help", env=env, cwd=tmp_path).stdout
    assert "(default: opus,kimi)" in cli("bench", "--help", env=env, cwd=tmp_path).stdout


def test_run_with_the_default_data_dir_from_another_working_directory(tmp_path: Path, issue_file) -> None:
    """The default ARCHON_DATA_DIR is relative; git runs in mirrors and worktrees, so it must be resolved."""
    bare = sample_repo.create_bare_remote(tmp_path / "remotes", "octo/sample")
    work = tmp_path / "somewhere" / "else"
    work.mkdir(parents=True)
    env = clean_env(tmp_path, ARCHON_MODELS_FILE=str(sample_repo.write_models_file(tmp_path / "models.yml")))
    done = cli("run", "--repo", str(bare), "--issue-file", str(issue_file), env=env, cwd=work, timeout=300)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    assert (work / ".archon" / "git").is_dir()
    [folder] = (work / "archon-runs").iterdir()
    assert "## Root cause" in (folder / "plan.md").read_text()


# --- The Procfile's web command, with its settings from a `.env` file. ---------------------------------


def procfile_command(name: str) -> list[str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    command = dict(line.split(": ", 1) for line in lines if line)[name]
    words = shlex.split(os.path.expandvars(command))
    return [str(Path(sys.executable).with_name(words[0])), *words[1:]]


def wait_for(url: str, timeout: float = 180) -> requests.Response:
    """Any answer (the health check may say 503 while it probes); gunicorn imports slowly when loaded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            return requests.get(url, timeout=5)
        time.sleep(0.2)
    raise TimeoutError(url)


def test_gunicorn_from_the_procfile_honours_port_and_logs_from_env_file(tmp_path: Path) -> None:
    port = free_port()
    with RedisServer() as server:
        (tmp_path / ".env").write_text(
            f"PORT={port}\nLOG_LEVEL=debug\nLOG_FORMAT=json\nWEB_CONCURRENCY=1\n"
            f"GITHUB_WEBHOOK_SECRET={SECRET}\nREDIS_URL={server.url}\nARCHON_SANDBOX=off\n"
        )
        env = clean_env(tmp_path, ARCHON_ENV_FILE=".env")
        with (tmp_path / "web.log").open("wb") as log:
            web = subprocess.Popen(procfile_command("web"), cwd=tmp_path, env=env, stdout=log, stderr=log)
            try:
                answer = wait_for(f"http://127.0.0.1:{port}/healthz")
            finally:
                web.send_signal(signal.SIGTERM)
                web.wait(timeout=60)
    assert answer.status_code == 200, answer.text
    records = [json.loads(line) for line in (tmp_path / "web.log").read_text().splitlines() if line]
    assert {r["logger"] for r in records} >= {"gunicorn.error", "gunicorn.access"}
    assert any(r["level"] == "DEBUG" for r in records)  # LOG_LEVEL=debug reached gunicorn
    booted = [r for r in records if r["message"].startswith("Booting worker")]
    assert len(booted) == 1  # WEB_CONCURRENCY=1
    assert any("/healthz" in r["message"] and r["logger"] == "gunicorn.access" for r in records)
    assert SECRET not in (tmp_path / "web.log").read_text()


def test_json_lines_carry_the_ids_of_the_log_context(tmp_path: Path) -> None:
    """The same setup the CLI, gunicorn and the workers use, in a fresh process, with a secret to redact."""
    code = (
        "import logging\n"
        "from bot.logs import log_context, setup_logging\n"
        "from bot.secrets import install, Redactor\n"
        f"install(Redactor([{SECRET_LOOKING!r}]))\n"
        "setup_logging('INFO', 'json')\n"
        "with log_context(delivery_id='d-1', job_id='run-7'):\n"
        "    with log_context(run_id='r-9'):\n"
        f"        logging.getLogger('bot.jobs').info('token %s used', {SECRET_LOOKING!r})\n"
        "logging.getLogger('rq.worker').info('outside')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(tmp_path), timeout=60
    )
    inside, outside = (json.loads(line) for line in done.stderr.splitlines())
    assert (inside["delivery_id"], inside["job_id"], inside["run_id"]) == ("d-1", "run-7", "r-9")
    assert inside["message"] == "token [REDACTED] used" and inside["logger"] == "bot.jobs"
    assert "delivery_id" not in outside and outside["message"] == "outside"


def test_a_worker_logs_in_the_format_and_level_of_the_env_file(tmp_path: Path, redis_server) -> None:
    """RQ adds no handler of its own once the root logger has one, so its lines follow LOG_FORMAT too."""
    from tests.support import app_key

    private, _ = app_key()
    (tmp_path / ".env").write_text(
        f"LOG_FORMAT=json\nLOG_LEVEL=debug\nREDIS_URL={redis_server.url}\nGITHUB_APP_ID=1\n"
    )
    env = clean_env(tmp_path, ARCHON_ENV_FILE=".env", GITHUB_PRIVATE_KEY=private)
    done = cli("worker", "--queues", "archon-cli-test", "--burst", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stderr.splitlines()]
    assert any(r["logger"] == "bot.worker" and r["message"].startswith("sandbox: ") for r in records)
    assert any(r["logger"] == "rq.worker" and "archon-cli-test" in r["message"] for r in records)
    assert any(r["level"] == "DEBUG" for r in records)
    assert private.splitlines()[1] not in done.stderr
