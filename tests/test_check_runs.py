"""Check runs on the bot's pull requests: `Archon run` follows a run (in progress → completed with the
run's outcome) and `Archon evaluation` carries each evaluation's score, `neutral` unless the repository
sets `evaluation.min_score`. End to end through triage and run jobs on a real RQ worker, the fake GitHub
(OpenAPI-validated), a real bare remote and scripted models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from rq.job import Job
from rq.queue import Queue
from rq.registry import FinishedJobRegistry

from bot.evaluation.review import CHECK_NAME, check_conclusion, render_check
from bot.evaluation.schema import Evaluation
from bot.publish import RUN_CHECK, run_check
from bot.runs import RunState
from bot.sample_repo import FILES
from tests.support import REPO
from tests.test_triage import command, run_labelled_issue, work
from tests.test_workflow_run import RUNS, _push_commit, no_plan_judge, push_human_fix

pytestmark = pytest.mark.usefixtures("worker_env")


def with_min_score(remote: Path, github, min_score: int) -> None:
    """`evaluation: {min_score: N}` in the repository's config, on the default branch and in the API."""
    text = FILES[".github/archon.yml"] + f"evaluation:\n  min_score: {min_score}\n"
    _push_commit(remote, {".github/archon.yml": text}, "require a score")
    github._repo(REPO).files[".github/archon.yml"] = text.encode()


def checks_named(github, name: str) -> list[dict]:
    return [run for run in github.check_runs(REPO) if run["name"] == name]


def test_a_run_and_its_evaluation_as_check_runs(github, redis_conn: redis.Redis, remote: Path) -> None:
    with_min_score(remote, github, 60)
    record = run_labelled_issue(redis_conn)
    assert record.state is RunState.DONE, record.error
    [pull] = github.pulls(REPO)
    head = pull["head"]["sha"]
    [run] = checks_named(github, RUN_CHECK)
    assert (run["head_sha"], run["status"], run["conclusion"]) == (head, "completed", "success")
    assert github.check_run_statuses(run["id"]) == ["in_progress", "completed"]
    assert run["external_id"] == record.run_id and run["pull_requests"][0]["number"] == pull["number"]
    assert run["details_url"] == record.status_comment_url
    outcomes = {state: run_check(record.model_copy(update={"state": state}), head) for state in RunState}
    assert {state: (c.status, c.conclusion) for state, c in outcomes.items() if c.conclusion} == {
        RunState.DONE: ("completed", "success"),
        RunState.FAILED: ("completed", "failure"),
        RunState.CANCELLED: ("completed", "cancelled"),
    }
    [evaluation] = checks_named(github, CHECK_NAME)
    assert evaluation["head_sha"] == head and evaluation["conclusion"] == "success"  # 62 ≥ 60
    assert evaluation["output"]["title"] == "Score 62 / 70 (needs 60 to pass)"
    summary = evaluation["output"]["summary"]
    assert "| Dimension | Score | Rationale |" in summary and "| Root-cause analysis | 9 |" in summary


def test_below_min_score_the_evaluation_fails(github, redis_conn: redis.Redis, remote: Path) -> None:
    with_min_score(remote, github, 63)
    assert run_labelled_issue(redis_conn).state is RunState.DONE
    [evaluation] = checks_named(github, CHECK_NAME)
    assert evaluation["conclusion"] == "failure" and "(needs 63 to pass)" in evaluation["output"]["title"]


def test_archon_evaluate_creates_one_check_run_even_when_retried(
    github, redis_conn: redis.Redis, remote: Path, tmp_path: Path, monkeypatch
) -> None:
    no_plan_judge(tmp_path / "judges")
    monkeypatch.setenv("ARCHON_SCRIPTS_DIR", str(tmp_path / "judges"))
    push_human_fix(remote, tmp_path)
    number = github.add_pull(REPO, head="human-fix", title="Fix slugify", author="someone")
    # The first create is performed but its answer is lost: the forge's retry must find it.
    github.fail_next("POST", rf"/repos/{REPO}/check-runs", 502, after=True)
    command(github, redis_conn, "/archon evaluate", pull_request=True, issue=number)
    work(redis_conn, RUNS)
    head = github.pulls(REPO)[0]["head"]["sha"]
    [check] = github.check_runs(REPO, head)
    assert check["name"] == CHECK_NAME and check["conclusion"] == "neutral"
    assert check["output"]["title"].startswith("Score ") and check["output"]["title"].endswith(" / 60")
    assert "n/a (no plan)" in check["output"]["summary"]
    # RQ runs the whole job again (a retry after a crash): still one check run, and one review.
    [job_id] = FinishedJobRegistry(RUNS, connection=redis_conn).get_job_ids()
    Queue(RUNS, connection=redis_conn).enqueue_job(Job.fetch(job_id, connection=redis_conn))
    work(redis_conn, RUNS)
    assert [c["id"] for c in github.check_runs(REPO)] == [check["id"]]
    assert len(github.reviews(REPO, number)) == 1


def test_without_the_checks_permission_the_run_still_finishes(
    github, redis_conn: redis.Redis, remote: Path
) -> None:
    """An installation that has not accepted `checks: write` yet: GitHub answers 403 to every check-run
    call, and the run, its pull request and its review go on without them."""
    refused = "Resource not accessible by integration"
    for method, path in (
        ("GET", r".*/check-runs"),
        ("POST", r".*/check-runs"),
        ("PATCH", r".*/check-runs/\d+"),
    ):
        github.fail_next(method, path, 403, times=20, message=refused)
    record = run_labelled_issue(redis_conn)
    assert record.state is RunState.DONE, record.error
    [pull] = github.pulls(REPO)
    assert github.reviews(REPO, pull["number"]) and github.check_runs(REPO) == []
    assert {c.status for c in github.calls_to("GET", r".*/check-runs")} == {403}


# --- rendering and conclusions, without GitHub ------------------------------------------------------


def evaluation(total: float | None) -> Evaluation:
    """The demo judge's evaluation, with its total set (None: a failed evaluation)."""
    from importlib import resources

    from bot.evaluation.schema import SubmitEvaluation, combine, failed
    from bot.evaluation.signals import Signals

    if total is None:
        return failed("judge down", True, Signals(), ["opus"])
    source = Path(str(resources.files("bot.providers.scripts") / "demo-opus-evaluate.jsonl"))
    arguments = json.loads(source.read_text().splitlines()[1])["tool_calls"][0]["arguments"]
    done = combine([SubmitEvaluation.model_validate(arguments)], True, ["opus"], Signals())
    return done.model_copy(update={"total": total})


@pytest.mark.parametrize(
    ("total", "min_score", "conclusion"),
    [
        (62, None, "neutral"),
        (62, 62, "success"),
        (61.9, 62, "failure"),
        (None, None, "neutral"),
        (None, 10, "failure"),
    ],
)
def test_conclusion_follows_min_score(total: float | None, min_score: int | None, conclusion: str) -> None:
    assert check_conclusion(evaluation(total), min_score) == conclusion


def test_a_failed_evaluation_says_so_in_its_check_run() -> None:
    title, summary = render_check(evaluation(None), 50)
    assert title == "The evaluation failed (needs 50 to pass)" and "judge down" in summary
