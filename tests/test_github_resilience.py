"""GitHub writes that survive: 5xx, lost answers and secondary rate limits, against the fake GitHub
(OpenAPI-validated), a real Redis and real RQ workers in-process, as in `test_triage.py`.

A lost answer is the fake performing a call and then answering an error (`fail_next(after=True)`): a
writer that simply posts again leaves a duplicate, which these tests would see.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from github import GithubException

from bot.fakes.github import FakeGitHub
from bot.fakes.github_state import SECONDARY_RATE_LIMITED
from bot.github.auth import installation_github
from bot.github.forge import RepoForge, RetryPolicy
from bot.publish import GitHubPublisher
from bot.runs import NodeState, RunState, RunStore
from bot.settings import load_settings
from tests.support import INSTALLATION_ID, REPO, labeled
from tests.test_fake_github import bare_repo_with_branch
from tests.test_triage import bot_comments, deliver, run_labelled_issue, work

pytestmark = pytest.mark.usefixtures("worker_env")

COMMENTS = rf"/repos/{REPO}/issues/1/comments"
COMMENT = rf"/repos/{REPO}/issues/comments/\d+"
#: Short waits so the tests take seconds; the budget still allows several attempts.
QUICK = RetryPolicy(budget_s=20, first_wait_s=0.05, max_wait_s=0.2, rate_limit_wait_s=0.2)


def forge(policy: RetryPolicy = QUICK) -> RepoForge:
    """The bot's own forge over the bot's own client (its transport retries included)."""
    return RepoForge(installation_github(load_settings(), INSTALLATION_ID), REPO, policy=policy)


def statuses(github: FakeGitHub, method: str, path: str) -> list[int]:
    return [call.status for call in github.calls_to(method, path)]


def status_comments(github: FakeGitHub) -> list[dict]:
    return [c for c in bot_comments(github) if "archon-bot:status:" in c["body"]]


# --- lost answers: a retried create finds what the first one made ------------------------------------


def test_a_comment_whose_answer_was_lost_is_not_posted_twice(github: FakeGitHub) -> None:
    github.fail_next("POST", COMMENTS, 502, after=True)
    posted = forge().upsert_comment(1, "reply", "d1", "Hello")
    [comment] = bot_comments(github)
    assert comment["id"] == posted.id and comment["body"].startswith("Hello")
    assert statuses(github, "POST", COMMENTS) == [502]  # performed once; the retry looked and found it


def test_a_pull_request_whose_answer_was_lost_is_opened_once(github: FakeGitHub, tmp_path: Path) -> None:
    github.add_repo(REPO, installation=INSTALLATION_ID, git_dir=bare_repo_with_branch(tmp_path))
    github.fail_next("POST", rf"/repos/{REPO}/pulls", 502, after=True, times=2)
    posted = forge().open_draft_pull("fix", "main", "Fix it", "The change.", key="r1")
    [pull] = github.pulls(REPO)
    assert pull["number"] == posted.id and pull["draft"] is True
    assert statuses(github, "POST", rf"/repos/{REPO}/pulls") == [502]


def test_a_review_whose_answer_was_lost_is_posted_once(github: FakeGitHub, tmp_path: Path) -> None:
    github.add_repo(REPO, installation=INSTALLATION_ID, git_dir=bare_repo_with_branch(tmp_path))
    number = github.add_pull(REPO, head="fix", title="A change")
    reviews = rf"/repos/{REPO}/pulls/{number}/reviews"
    github.fail_next("POST", reviews, 503, after=True)
    review_id = forge().post_review(number, "Looks fine.", key="eval-1", comments=[])
    [review] = github.reviews(REPO, number)
    assert review["id"] == review_id and review["body"].startswith("Looks fine.")
    assert statuses(github, "POST", reviews) == [503]


def test_a_failure_before_the_create_is_simply_retried(github: FakeGitHub) -> None:
    github.fail_next("POST", COMMENTS, 500, times=2)
    forge().upsert_comment(1, "reply", "d1", "Hello")
    assert len(bot_comments(github)) == 1
    assert statuses(github, "POST", COMMENTS) == [500, 500, 201]


def test_edits_are_retried_by_the_transport(github: FakeGitHub) -> None:
    posted = forge().upsert_comment(1, "reply", "d1", "Hello")
    github.fail_next("PATCH", COMMENT, 502, times=3, after=True)
    forge().edit_comment(1, posted.id, "reply", "d1", "Hello again")
    assert bot_comments(github)[0]["body"] == "Hello again"
    assert statuses(github, "PATCH", COMMENT) == [502, 502, 502, 200]


# --- secondary rate limits ----------------------------------------------------------------------------


def test_a_secondary_rate_limit_is_waited_out_as_retry_after_says(github: FakeGitHub) -> None:
    limited = {"Retry-After": "1"}
    github.fail_next("POST", COMMENTS, 403, headers=limited, message=SECONDARY_RATE_LIMITED)
    forge().upsert_comment(1, "reply", "d1", "Hello")
    first, second = github.calls_to("POST", COMMENTS)
    assert (first.status, second.status) == (403, 201)
    assert second.at - first.at >= 1.0  # `retry-after: 1`, not the policy's 0.05 s backoff
    assert len(bot_comments(github)) == 1


def test_a_rate_limit_without_a_header_waits_the_policys_minimum(github: FakeGitHub) -> None:
    github.fail_next("POST", COMMENTS, 429, message=SECONDARY_RATE_LIMITED)
    forge(RetryPolicy(budget_s=20, first_wait_s=0.01, max_wait_s=0.01, rate_limit_wait_s=0.5)).upsert_comment(
        1, "reply", "d1", "Hello"
    )
    first, second = github.calls_to("POST", COMMENTS)
    assert (first.status, second.status) == (429, 201) and second.at - first.at >= 0.5


def test_a_plain_403_is_not_retried(github: FakeGitHub) -> None:
    github.fail_next("POST", COMMENTS, 403, times=3)
    with pytest.raises(GithubException) as raised:
        forge().upsert_comment(1, "reply", "d1", "Hello")
    assert raised.value.status == 403 and statuses(github, "POST", COMMENTS) == [403]


def test_a_write_gives_up_within_its_budget(github: FakeGitHub) -> None:
    github.fail_next("POST", COMMENTS, 502, times=1000)
    with pytest.raises(GithubException) as raised:
        forge(RetryPolicy(budget_s=1.0, first_wait_s=0.2, max_wait_s=0.2)).upsert_comment(1, "r", "d1", "Hi")
    assert raised.value.status == 502 and 2 <= len(statuses(github, "POST", COMMENTS)) < 20


# --- the status comment during and at the end of a run -----------------------------------------------


def test_three_502s_on_the_status_edit_do_not_fail_the_run(github: FakeGitHub, redis_conn, remote) -> None:
    github.fail_next("PATCH", COMMENT, 502, times=3)
    record = run_labelled_issue(redis_conn)
    assert record.state is RunState.DONE, record.error
    [status] = status_comments(github)
    assert "✅ **Done**" in status["body"] and record.pr_url in status["body"]
    assert statuses(github, "PATCH", COMMENT)[:4] == [502, 502, 502, 200]


def test_status_edits_that_keep_failing_never_fail_the_run(github: FakeGitHub, redis_conn, remote) -> None:
    github.fail_next("PATCH", COMMENT, 502, times=10_000, body=r"\*\*Running\*\*")
    record = run_labelled_issue(redis_conn)
    assert record.state is RunState.DONE, record.error
    assert all(n.state is NodeState.DONE for n in record.nodes.values())
    [status] = status_comments(github)
    assert "✅ **Done**" in status["body"] and record.pr_url in status["body"]
    failed = [c for c in github.calls_to("PATCH", COMMENT) if c.status == 502]
    assert failed and all("**Running**" in c.body["body"] for c in failed)


def queued_record(redis_conn):
    """A run accepted by triage (its Queued status comment posted), as a worker would load it."""
    deliver(redis_conn, "issues", labeled("archon:plan-opus impl-kimi"))
    work(redis_conn)
    [record] = RunStore(redis_conn).for_issue(REPO, 1)
    return record


def test_the_final_status_is_retried_until_it_lands(github: FakeGitHub, redis_conn) -> None:
    record = queued_record(redis_conn)
    store = RunStore(redis_conn)
    publisher = GitHubPublisher(forge(), store, lambda: False, final_policy=QUICK)
    github.fail_next("PATCH", COMMENT, 502, times=9, body=r"\*\*Done\*\*")  # beyond the transport's 4 tries
    record.state, record.summary = RunState.DONE, "All done."
    assert publisher.finish(record) is True
    [status] = status_comments(github)
    assert "✅ **Done**" in status["body"] and "All done." in status["body"]
    assert statuses(github, "PATCH", COMMENT) == [502] * 9 + [200]
    assert store.load(record.run_id).state is RunState.DONE


def test_progress_is_best_effort_and_finish_says_when_it_gave_up(github: FakeGitHub, redis_conn) -> None:
    record = queued_record(redis_conn)
    store = RunStore(redis_conn)
    publisher = GitHubPublisher(
        forge(),
        store,
        lambda: False,
        final_policy=RetryPolicy(budget_s=0.5, first_wait_s=0.1, max_wait_s=0.1),
    )
    github.fail_next("PATCH", COMMENT, 502, times=10_000)
    record.state = RunState.RUNNING
    publisher.progress(record)  # fails, logged; the record is saved all the same
    publisher.progress(record)  # within the cool-down: not even tried
    assert store.load(record.run_id).state is RunState.RUNNING
    assert len(github.calls_to("PATCH", COMMENT)) == 4  # one edit, with the transport's retries
    record.state = RunState.FAILED
    assert publisher.finish(record) is False
    assert store.load(record.run_id).state is RunState.FAILED
    assert "Queued" in status_comments(github)[0]["body"]


# --- an evaluation that fails after the pull request is open -----------------------------------------


def test_a_failed_evaluation_leaves_the_run_done_with_its_pull_request(
    github: FakeGitHub, redis_conn, remote, tmp_path: Path, monkeypatch
) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "demo-opus-evaluate.jsonl").write_text('{"error": "server"}\n{"error": "server"}\n')
    monkeypatch.setenv("ARCHON_SCRIPTS_DIR", str(scripts))
    record = run_labelled_issue(redis_conn)
    assert record.state is RunState.DONE and record.error is None
    evaluate = record.nodes["evaluate"]
    assert evaluate.state is NodeState.FAILED and evaluate.error
    assert record.failed_node is None
    [pull] = github.pulls(REPO)
    [status] = status_comments(github)
    body = status["body"]
    assert "✅ **Done**" in body and "❌ **Failed**" not in body
    assert f"[draft pull request]({pull['html_url']})" in body
    assert "The evaluation failed:" in body and evaluate.error.rstrip(".") in body
    assert "`/archon evaluate` on the pull request" in body
