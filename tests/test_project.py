"""The project's contract with newcomers and operators: README, CI, Procfile, .env.example, the demo."""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path

import pytest
from rich.console import Console

from bot.demo import run_demo
from bot.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
#: Read before `Settings` exists (it names the settings file), so not a field of it.
PROCESS_VARIABLES = {"ARCHON_ENV_FILE"}


def readme_commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    return [block.strip() for block in blocks]


def test_readme_quickstart_is_two_commands_and_ci_runs_the_second() -> None:
    demo, tests = readme_commands()[:2]
    assert demo.endswith("archon-bot demo") and "\n" not in demo
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci


def env_example() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    documented = {}
    for previous, line in itertools.pairwise(lines):
        if match := re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line):
            assert previous.startswith("# "), f"{match[1]} has no comment line above it"
            documented[match[1]] = match[2]
    return documented


def test_env_example_documents_every_setting_and_nothing_else() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    assert set(env_example()) == fields | PROCESS_VARIABLES


def test_env_example_defaults_are_the_real_defaults(tmp_path, monkeypatch) -> None:
    for name in env_example():
        monkeypatch.delenv(name, raising=False)
    text = (ROOT / ".env.example").read_text()
    text = text.replace("GITHUB_APP_ID=\n", "GITHUB_APP_ID=1\n")
    text = text.replace("GITHUB_WEBHOOK_SECRET=\n", "GITHUB_WEBHOOK_SECRET=s3cret\n")
    (tmp_path / ".env").write_text(text)
    from_file = Settings(_env_file=tmp_path / ".env")
    defaults = Settings(_env_file=None, github_app_id=1, github_webhook_secret="s3cret")
    assert from_file.model_dump() == defaults.model_dump()


def test_procfile_starts_web_and_worker() -> None:
    procfile = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line)
    assert set(procfile) == {"web", "worker"}
    assert "gunicorn" in procfile["web"] and "'bot.web:create_app()'" in procfile["web"]
    # PORT, WEB_CONCURRENCY and the logs come from Settings (so from `.env` too) through the config
    # module; a `--bind`/`--workers` flag here would override it and ignore `.env`.
    assert "-c python:bot.gunicorn_conf" in procfile["web"]
    assert "--bind" not in procfile["web"] and "--workers" not in procfile["web"]
    assert procfile["worker"] == "archon-bot worker"


def test_settings_take_process_variables_from_the_env_file(tmp_path, monkeypatch) -> None:
    for name in ("PORT", "LOG_LEVEL", "LOG_FORMAT", "WEB_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / ".env").write_text("PORT=4100\nLOG_LEVEL=debug\nLOG_FORMAT=json\nWEB_CONCURRENCY=5\n")
    settings = Settings(_env_file=tmp_path / ".env")
    assert (settings.port, settings.log_level, settings.log_format) == (4100, "DEBUG", "json")
    assert settings.web_concurrency == 5


def test_the_data_dir_is_absolute_whatever_the_working_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("ARCHON_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert Settings(_env_file=None).archon_data_dir == tmp_path.resolve() / ".archon"
    monkeypatch.setenv("ARCHON_DATA_DIR", "~/data")
    assert Settings(_env_file=None).archon_data_dir == Path.home().resolve() / "data"


def test_demo_runs_end_to_end() -> None:
    console = Console(record=True, width=160, force_terminal=False)
    assert run_demo(console) == 0
    text = console.export_text()
    assert "scripted" in text and "✅ Done." in text
    assert "HTTP 401" in text and "delivery was already received" in text and "@bob sorry" in text
    assert "## Root cause" not in text and "Root cause" in text  # the plan, rendered
    assert '+    return "-".join(re.findall(r"[a-z0-9]+", title.lower()))' in text
    assert "Tests pass." in text and "__pycache__" not in text
    assert "62 / 70" in text and "inline on textkit/slug.py:8" in text


@pytest.mark.skipif(not os.environ.get("CI"), reason="only CI must have bubblewrap")
def test_ci_runs_the_suite_with_the_sandbox() -> None:
    """`.ci/run` installs bubblewrap, so in CI the sandbox tests never skip."""
    from bot.sandbox import bwrap_problem

    assert bwrap_problem() is None
