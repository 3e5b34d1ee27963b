"""A whole run with a sloppy implementer (issue 14): the scripted Kimi copies `read_file`'s line-number
prefixes into every edit, the forgiving edit tools apply them by a fallback rule, the run is Done, and the
pull request's cost table says so per node and model. Real RQ, the fake GitHub, a real bare remote."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from bot.providers.factory import BUNDLED_SCRIPTS
from bot.providers.scripted import SLOPPY_HEADER, ScriptedProvider, Sloppiness
from bot.runs import RunState
from tests.support import REPO
from tests.test_triage import run_labelled_issue

IMPLEMENT = "demo-kimi-implement.jsonl"


def sloppy_implement(tmp_path: Path, monkeypatch, sloppiness: Sloppiness) -> Path:
    """The bundled implement script with a sloppiness header, in ARCHON_SCRIPTS_DIR."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    bundled = (resources.files(BUNDLED_SCRIPTS) / IMPLEMENT).read_text()
    header = f"{SLOPPY_HEADER} {json.dumps(sloppiness.model_dump(mode='json'))}\n"
    (scripts / IMPLEMENT).write_text(header + bundled)
    monkeypatch.setenv("ARCHON_SCRIPTS_DIR", str(scripts))
    return scripts / IMPLEMENT


def test_a_script_header_makes_the_scripted_model_sloppy(tmp_path, monkeypatch) -> None:
    path = sloppy_implement(tmp_path, monkeypatch, Sloppiness(rate=1.0, seed=3, mistakes=("tabs",)))
    provider = ScriptedProvider.from_file(path)
    assert provider.sloppy == Sloppiness(rate=1.0, seed=3, mistakes=("tabs",))
    assert ScriptedProvider.from_file(resources.files(BUNDLED_SCRIPTS) / IMPLEMENT).sloppy is None  # type: ignore[arg-type]


def test_a_bad_sloppiness_header_names_the_file(tmp_path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(f'{SLOPPY_HEADER} {{"rate": 3}}\n')
    try:
        ScriptedProvider.from_file(path)
    except ValueError as error:
        assert f"{path}:1" in str(error)
    else:
        raise AssertionError("a rate of 3 was accepted")


def test_a_sloppy_implementer_still_gets_the_run_done(
    github, redis_conn, remote, tmp_path, monkeypatch
) -> None:
    sloppy_implement(tmp_path, monkeypatch, Sloppiness(rate=1.0, seed=1, mistakes=("line_numbers",)))
    record = run_labelled_issue(redis_conn)
    assert record.state is RunState.DONE, record.error
    implement = record.nodes["implement"]
    [(key, stats)] = implement.models.items()
    assert key == "scripted/scripted:demo-kimi-implement"
    assert stats.edits == 2 and stats.edits_fallback == 2 and stats.edits_refused == 0
    assert implement.providers["scripted"].edits_fallback == 2
    [pull] = github.pulls(REPO)
    [row] = [line for line in pull["body"].splitlines() if line.startswith("| ✅ | implement |")]
    assert row.endswith("| `scripted:demo-kimi-implement`: 2 edits, 2 by a fallback; 4 tool calls |"), row
    [total] = [line for line in pull["body"].splitlines() if "**Total**" in line]
    assert "2 by a fallback" in total
