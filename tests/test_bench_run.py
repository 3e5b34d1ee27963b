"""The benchmark end to end on an in-process RQ worker: one exploration per issue shared by every cell,
a 2×2 matrix of scripted models that differ in quality (the judge's script per pairing) and in cost
(their prices), a hung cell stopped by its job timeout, and the report (comment, JSON, Markdown, PNG,
HTML). Separate worker processes: tests/test_bench_processes.py."""

from __future__ import annotations

import json
import re
import shutil
from importlib import resources
from pathlib import Path

import pytest

from bot.bench.orchestrate import BenchStore
from bot.runs import RunStore
from tests.support import REPO, labeled
from tests.test_triage import bot_comments, command, deliver, work

RUNS = "archon-runs"
BUNDLED = Path(str(resources.files("bot.providers.scripts")))
#: The fixed judge's total per pairing (plan, impl): planning with opus scores higher.
TOTALS = {("opus", "opus"): 64, ("opus", "kimi"): 62, ("kimi", "opus"): 45, ("kimi", "kimi"): 41}


def judge_script(total: int) -> str:
    turn = json.loads((BUNDLED / "demo-opus-evaluate.jsonl").read_text().splitlines()[1])
    scores = turn["tool_calls"][0]["arguments"]["scores"]
    each, extra = divmod(total, 7)
    for index, score in enumerate(scores):
        score["score"] = each + (1 if index < extra else 0)
    return json.dumps(turn) + "\n"


@pytest.fixture
def scripts(tmp_path: Path, monkeypatch) -> Path:
    """Scripted stand-ins for both models in both roles, a judge per pairing."""
    folder = tmp_path / "bench-scripts"
    folder.mkdir()
    shutil.copy(BUNDLED / "demo-opus-plan.jsonl", folder / "demo-kimi-plan.jsonl")
    shutil.copy(BUNDLED / "demo-kimi-implement.jsonl", folder / "demo-opus-implement.jsonl")
    shutil.copy(BUNDLED / "demo-kimi-self-review.jsonl", folder / "demo-opus-self-review.jsonl")
    for (plan, impl), total in TOTALS.items():
        (folder / f"demo-opus-evaluate-{plan}-{impl}.jsonl").write_text(judge_script(total))
    monkeypatch.setenv("ARCHON_SCRIPTS_DIR", str(folder))
    return folder


def test_a_two_by_two_matrix_from_a_label(github, redis_conn, remote, scripts, worker_env) -> None:
    deliver(redis_conn, "issues", labeled("archon:bench", sender="maintainer"))
    work(redis_conn)
    work(redis_conn, RUNS)
    [bench] = [
        BenchStore(redis_conn).load(key.decode().split(":")[-1]) for key in redis_conn.keys("archon:bench:*")
    ]
    assert bench.state == "done" and len(bench.cells) == 4
    assert bench.estimate_usd > 0 and bench.estimate_usd < bench.cap_usd
    # one exploration for the issue, shared: no cell ran its own explore node
    cells = [RunStore(redis_conn).load(ref.run_id) for ref in bench.cells]
    assert all(c.nodes["explore"].attempts == 0 and c.nodes["explore"].state == "done" for c in cells)
    assert {c.nodes["explore"].outputs["text"] for c in cells} == {bench.explorations[1].text}
    # the report comment, with the data
    [status] = [
        c for c in bot_comments(github) if "archon-bot:bench:" in c["body"] and "-status" in c["body"]
    ]
    [report] = [c for c in bot_comments(github) if "-report -->" in c["body"]]
    assert "✅ Done." in status["body"] and status["body"].count("| #1 |") == 4
    assert "```mermaid" in report["body"] and "quadrantChart" in report["body"]
    folder = Path(worker_env["ARCHON_DATA_DIR"]) / "bench" / bench.bench_id
    data = json.loads((folder / "bench.json").read_text())
    totals = {(p["plan"], p["impl"]): p["total"]["mean"] for p in data["summary"]["pairings"]}
    assert totals == {pair: float(total) for pair, total in TOTALS.items()}
    assert (folder / "chart.png").read_bytes().startswith(b"\x89PNG")
    assert "chart.png" in (folder / "bench.html").read_text()
    # cells push their branches but open no pull requests unless asked
    assert github.pulls(REPO) == []
    assert len({c.branch for c in cells}) == 4
    costs = {(c.config.models["plan"].alias, c.config.models["impl"].alias): c.cost_usd for c in cells}
    assert costs[("opus", "opus")] > costs[("kimi", "kimi")]


def test_a_hung_cell_is_a_failed_row_with_its_reason(
    github, redis_conn, remote, scripts, monkeypatch
) -> None:
    (scripts / "demo-kimi-implement-kimi-kimi.jsonl").write_text(
        '{"tool_calls": [{"name": "run", "arguments": {"command": "sleep 60"}}]}\n'
    )
    monkeypatch.setenv("ARCHON_RUN_TIMEOUT", "4")
    command(github, redis_conn, "/archon bench plan=kimi impl=kimi,opus")
    work(redis_conn, RUNS)
    [report] = [c for c in bot_comments(github) if "-report -->" in c["body"]]
    assert "timed out after 4s" in report["body"]
    [status] = [c for c in bot_comments(github) if "-status -->" in c["body"]]
    assert "❌ timed out after 4s" in status["body"] and "✅ 45 / 70" in status["body"]


def test_over_budget_benchmarks_do_not_start(github, redis_conn, remote, scripts, monkeypatch) -> None:
    monkeypatch.setenv("ARCHON_BENCH_MAX_USD", "0.01")
    command(github, redis_conn, "/archon bench")
    work(redis_conn, RUNS)
    [status] = [c for c in bot_comments(github) if "-status -->" in c["body"]]
    assert "❌ Failed." in status["body"] and "above the cap of USD 0.01" in status["body"]
    # no cell record (`b<bench hex>c<n>`); the bench id is random hex and may itself contain "c1"
    cells = [
        key for key in redis_conn.keys("archon:run:*") if re.fullmatch(rb"archon:run:b[0-9a-f]{10}c\d+", key)
    ]
    assert cells == []


def test_unknown_models_in_the_matrix_start_nothing(github, redis_conn, remote) -> None:
    command(github, redis_conn, "/archon bench plan=opus,nope")
    [reply] = [c["body"] for c in bot_comments(github)]
    assert "`nope` is not a model alias here" in reply


def test_archon_bot_bench_on_a_local_repository(tmp_path: Path, scripts, monkeypatch, capsys) -> None:
    from bot import sample_repo
    from bot.cli import main

    bare = sample_repo.create_bare_remote(tmp_path / "remotes", "octo/sample")
    issue = tmp_path / "issue.md"
    issue.write_text(f"# {sample_repo.ISSUE_TITLE}\n\n{sample_repo.ISSUE_BODY}\n")
    monkeypatch.setenv("ARCHON_ENV_FILE", "")
    monkeypatch.setenv("ARCHON_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ARCHON_MODELS_FILE", str(sample_repo.write_models_file(tmp_path / "models.yml")))
    code = main(["bench", "--repo", str(bare), "--issue-files", str(issue), "--out", str(tmp_path / "out")])
    output = capsys.readouterr().out
    assert code == 0, output
    [folder] = (tmp_path / "out").iterdir()
    data = json.loads((folder / "bench.json").read_text())
    totals = {(p["plan"], p["impl"]): p["total"]["mean"] for p in data["summary"]["pairings"]}
    assert totals == {pair: float(total) for pair, total in TOTALS.items()}
    assert "97% of OO's score" in output
    assert len(list((folder / "cells").iterdir())) == 4


def test_prs_on_request_and_repeats(github, redis_conn, remote, scripts) -> None:
    command(github, redis_conn, "/archon bench plan=opus impl=kimi repeat=2 prs=yes")
    work(redis_conn, RUNS)
    pulls = github.pulls(REPO)
    assert len(pulls) == 2 and all(p["draft"] for p in pulls)
    assert all(github.reviews(REPO, p["number"]) for p in pulls)  # each cell's evaluation, as a review
    [report] = [c for c in bot_comments(github) if "-report -->" in c["body"]]
    assert "62 ± 0" in report["body"] or "62.0 ± 0.0" in report["body"]


def test_cancel_stops_a_benchmark_before_its_cells_run(github, redis_conn, remote, scripts) -> None:
    command(github, redis_conn, "/archon bench")
    command(github, redis_conn, "/archon cancel")
    work(redis_conn, RUNS)
    [status] = [c for c in bot_comments(github) if "-status -->" in c["body"]]
    assert "❌ Failed." in status["body"] and "Cancelled by @maintainer" in status["body"]
    replies = [c["body"] for c in bot_comments(github) if "archon-bot:reply:" in c["body"]]
    assert any("cancelled benchmark `b" in r for r in replies)
    assert not [c for c in bot_comments(github) if "-report -->" in c["body"]]


def test_status_lists_benchmarks(github, redis_conn, remote, scripts) -> None:
    command(github, redis_conn, "/archon bench plan=opus impl=kimi")
    command(github, redis_conn, "/archon status", sender="reader")
    replies = [c["body"] for c in bot_comments(github) if "archon-bot:reply:" in c["body"]]
    assert any("benchmark `b" in r and "queued, 1 cell(s)" in r for r in replies)
