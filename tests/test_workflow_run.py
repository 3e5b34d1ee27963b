"""A labelled issue becomes a plan comment and a draft pull request: triage and run jobs on a real RQ
worker in-process, the fake GitHub (OpenAPI-validated), a real bare remote, and scripted models."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import redis
from rq import Queue

from bot.runs import NodeState, RunState, RunStore
from bot.sample_repo import ISSUE_BODY, ISSUE_TITLE
from tests.support import INSTALLATION_ID, REPO, labeled
from tests.test_triage import bot_comments, command, deliver, run_labelled_issue, work

RUNS = "archon-runs"


def show(bare: Path, ref: str, path: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(bare), "show", f"{ref}:{path}"], capture_output=True, text=True, check=True
    ).stdout


def comments_of(github, kind: str) -> list[dict]:
    return [c for c in bot_comments(github) if f"archon-bot:{kind}:" in c["body"]]


def test_label_to_plan_comment_and_draft_pull_request(github, redis_conn: redis.Redis, remote: Path) -> None:
    payload = labeled("archon:plan-opus impl-kimi", sender="maintainer")
    payload["issue"].update(title=ISSUE_TITLE, body=ISSUE_BODY)  # the delivery carries the issue as it is
    deliver(redis_conn, "issues", payload)
    work(redis_conn)
    work(redis_conn, RUNS)
    [record] = RunStore(redis_conn).for_issue(REPO, 1)
    assert record.state is RunState.DONE, record.error
    assert [n.state for n in record.nodes.values()] == [NodeState.DONE] * 9
    # the plan, as an issue comment
    [plan] = comments_of(github, "plan")
    assert "## Root cause" in plan["body"] and "planned by `opus`" in plan["body"]
    # the branch carries the fix, and the once-failing test passes on it
    assert record.branch.startswith("archon/issue-1-opus-kimi-")
    assert "re.findall" in show(remote, record.branch, "textkit/slug.py")
    # the draft pull request
    [pull] = github.pulls(REPO)
    assert pull["draft"] is True and pull["head"]["ref"] == record.branch and pull["base"]["ref"] == "main"
    assert pull["title"] == f"Fix #1: {ISSUE_TITLE}"
    assert pull["body"].startswith("Fixes #1") and plan["html_url"] in pull["body"]
    assert "## Deviations from the plan" in pull["body"] and "scripted:demo-kimi" in pull["body"]
    # the status comment: every node, and links to the plan and the pull request
    [status] = comments_of(github, "status")
    assert "✅ **Done**" in status["body"] and pull["html_url"] in status["body"]
    for node in ("explore", "plan", "post-plan", "implement", "validate", "self-review", "commit", "open-pr"):
        assert f"| {node} |" in status["body"]
    assert record.cost_usd > 0 and record.nodes["plan"].model == "opus"
    assert record.nodes["validate"].outputs["passed"] is True
    # the evaluation, as a COMMENT review with an inline comment on a line of the diff
    [review] = github.reviews(REPO, pull["number"])
    assert review["state"] == "COMMENTED" and "62 / 70" in review["body"]
    assert review["comments"] == [
        {
            "path": "textkit/slug.py",
            "line": 8,
            "side": "RIGHT",
            "body": 'Consider a test for `slugify("!!!")` returning an empty string.',
        }
    ]
    assert record.evaluation["total"] == 62 and record.evaluation["rubric_version"]
    assert record.nodes["evaluate"].cost_usd > 0


def failing_implement(tmp_path: Path, monkeypatch) -> Path:
    """Scripts that make the implementing model fail twice in a row (its provider is down)."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "demo-kimi-implement.jsonl").write_text('{"error": "server"}\n{"error": "server"}\n')
    monkeypatch.setenv("ARCHON_SCRIPTS_DIR", str(scripts))
    return scripts


def test_a_failed_node_is_named_and_retry_resumes_from_it(
    github, redis_conn, remote, tmp_path, monkeypatch
) -> None:
    scripts = failing_implement(tmp_path, monkeypatch)
    deliver(redis_conn, "issues", labeled("archon:plan-opus impl-kimi", sender="maintainer"))
    work(redis_conn)
    work(redis_conn, RUNS)
    [record] = RunStore(redis_conn).for_issue(REPO, 1)
    assert record.state is RunState.FAILED and record.failed_node == "implement"
    [status] = comments_of(github, "status")
    assert "Node `implement` failed: provider failed" in status["body"]
    assert "`/archon retry` to resume from `implement`" in status["body"]
    # the provider is back; retry resumes from the failed node and keeps the plan
    (scripts / "demo-kimi-implement.jsonl").unlink()
    command(github, redis_conn, "/archon retry")
    work(redis_conn, RUNS)
    [record] = RunStore(redis_conn).for_issue(REPO, 1)
    assert record.state is RunState.DONE
    assert record.nodes["explore"].attempts == 1 and record.nodes["plan"].attempts == 1
    assert record.nodes["implement"].attempts == 2
    assert len(comments_of(github, "plan")) == 1 and len(comments_of(github, "status")) == 1
    assert len(github.pulls(REPO)) == 1


def test_gate_stops_after_the_plan_until_approved(github, redis_conn, remote) -> None:
    command(github, redis_conn, "/archon run plan=opus impl=kimi gate=plan")
    work(redis_conn, RUNS)
    [record] = RunStore(redis_conn).for_issue(REPO, 1)
    assert record.state is RunState.WAITING
    [plan] = comments_of(github, "plan")
    assert "`/archon approve`" in plan["body"]
    [status] = comments_of(github, "status")
    assert "Waiting for approval" in status["body"] and plan["html_url"] in status["body"]
    assert github.pulls(REPO) == []
    command(github, redis_conn, "/archon approve")
    work(redis_conn, RUNS)
    [record] = RunStore(redis_conn).for_issue(REPO, 1)
    assert record.state is RunState.DONE and record.nodes["plan"].attempts == 1
    assert len(github.pulls(REPO)) == 1


def test_revise_replans_with_feedback_and_supersedes_the_old_plan(
    github, redis_conn, remote, worker_env
) -> None:
    command(github, redis_conn, "/archon run gate=plan")
    work(redis_conn, RUNS)
    command(github, redis_conn, "/archon revise Also keep digits, and say so in the test plan.")
    work(redis_conn, RUNS)
    [record] = RunStore(redis_conn).for_issue(REPO, 1)
    assert record.state is RunState.WAITING and record.revision == 1
    old, new = comments_of(github, "plan")
    assert old["body"].startswith("> ⚠️ **Superseded** by [a revised plan](" + new["html_url"])
    assert "revision 1" in new["body"]
    transcript = Path(worker_env["ARCHON_DATA_DIR"]) / "runs" / record.run_id / "transcripts" / "plan-2.jsonl"
    assert "Also keep digits" in transcript.read_text()
    command(github, redis_conn, "/archon approve")
    work(redis_conn, RUNS)
    [record] = RunStore(redis_conn).for_issue(REPO, 1)
    assert record.state is RunState.DONE and new["html_url"] in github.pulls(REPO)[0]["body"]


def test_a_broken_workflow_file_is_reported_on_the_issue(github, redis_conn, remote) -> None:
    broken = (
        "name: fix-issue\ndescription: loops\nnodes:\n"
        "  - {id: a, kind: shell, command: 'true', depends_on: [b]}\n"
        "  - {id: b, kind: shell, command: 'true', depends_on: [a]}\n"
    )
    github.add_repo(
        REPO,
        installation=INSTALLATION_ID,
        collaborators={"maintainer": "maintain"},
        files={".archon/workflows/fix-issue.yml": broken},
        git_dir=remote,
    )
    github.add_issue(REPO, 1, title=ISSUE_TITLE)
    command(github, redis_conn, "/archon run")
    work(redis_conn, RUNS)
    [status] = comments_of(github, "status")
    assert "Failed" in status["body"] and ".archon/workflows/fix-issue.yml" in status["body"]
    assert "cycle" in status["body"]


def test_two_issues_at_once_get_their_own_branches_and_pull_requests(github, redis_conn, remote) -> None:
    github.add_issue(REPO, 2, title="Another slug bug", body="Same bug, seen elsewhere.")
    deliver(redis_conn, "issues", labeled("archon:plan-opus impl-kimi", sender="maintainer"))
    second = labeled("archon:plan-opus impl-kimi", sender="maintainer")
    second["issue"]["number"] = 2
    deliver(redis_conn, "issues", second)
    work(redis_conn)
    work(redis_conn, RUNS)
    pulls = github.pulls(REPO)
    assert sorted(p["body"].splitlines()[0] for p in pulls) == ["Fixes #1", "Fixes #2"]
    assert len({p["head"]["ref"] for p in pulls}) == 2


def no_plan_judge(scripts: Path) -> None:
    """The demo's judge script without fidelity: the right answer when there is no plan."""
    from importlib import resources

    source = Path(str(resources.files("bot.providers.scripts") / "demo-opus-evaluate.jsonl"))
    turn = json.loads(source.read_text().splitlines()[1])
    arguments = turn["tool_calls"][0]["arguments"]
    arguments["scores"] = [s for s in arguments["scores"] if s["dimension"] != "fidelity"]
    arguments["comments"] = [{"path": "textkit/slug.py", "line": 6, "body": "A one-line fix, nicely done."}]
    scripts.mkdir(exist_ok=True)
    (scripts / "demo-opus-evaluate.jsonl").write_text(json.dumps(turn) + "\n")


def push_human_fix(remote: Path, tmp_path: Path) -> None:
    work = tmp_path / "human"
    subprocess.run(["git", "clone", "-q", str(remote), str(work)], check=True)
    path = work / "textkit" / "slug.py"
    path.write_text(
        path.read_text().replace(
            '"-".join(title.lower().split(" "))',
            '"-".join("".join(c for c in w if c.isalnum()) for w in title.lower().split())',
        )
    )
    env = {
        "GIT_AUTHOR_NAME": "Hu Man",
        "GIT_AUTHOR_EMAIL": "h@example.com",
        "GIT_COMMITTER_NAME": "Hu Man",
        "GIT_COMMITTER_EMAIL": "h@example.com",
        "PATH": "/usr/bin:/bin",
    }
    for args in (
        ["checkout", "-qb", "human-fix"],
        ["commit", "-qam", "Fix slugify"],
        ["push", "-q", "origin", "human-fix"],
    ):
        subprocess.run(["git", *args], cwd=work, check=True, env=env)


def evaluate_human_fix(github, redis_conn, remote, tmp_path, monkeypatch, write_judge) -> int:
    """A person's pull request fixing slugify, scored by `/archon evaluate` with the judge that
    `write_judge` scripts; returns the pull request's number."""
    write_judge(tmp_path / "judges")
    monkeypatch.setenv("ARCHON_SCRIPTS_DIR", str(tmp_path / "judges"))
    push_human_fix(remote, tmp_path)
    number = github.add_pull(REPO, head="human-fix", title="Fix slugify", author="someone")
    command(github, redis_conn, "/archon evaluate", pull_request=True, issue=number)
    work(redis_conn, RUNS)
    return number


def test_evaluate_a_pull_request_a_person_wrote(github, redis_conn, remote, tmp_path, monkeypatch) -> None:
    number = evaluate_human_fix(github, redis_conn, remote, tmp_path, monkeypatch, no_plan_judge)
    [review] = github.reviews(REPO, number)
    assert review["state"] == "COMMENTED" and "/ 60" in review["body"] and "n/a" in review["body"]
    assert review["comments"][0]["line"] == 6
    replies = [c["body"] for c in bot_comments(github, number) if "archon-bot:reply:" in c["body"]]
    assert any("posted as a review" in r for r in replies)


def test_evaluate_with_an_unknown_judge_starts_nothing(github, redis_conn, remote, tmp_path) -> None:
    push_human_fix(remote, tmp_path)
    number = github.add_pull(REPO, head="human-fix", title="Fix slugify")
    command(github, redis_conn, "/archon evaluate eval=nope", pull_request=True, issue=number)
    [reply] = [c["body"] for c in bot_comments(github, number)]
    assert "`eval=nope` is not a model alias" in reply
    assert Queue(RUNS, connection=redis_conn).get_jobs() == []


def _push_commit(bare: Path, files: dict[str, str], message: str) -> None:
    """A commit on the remote's `main`, as a maintainer would have pushed it before the run."""
    work = bare.parent / ".edit"
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True)
    for path, text in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    git = ["git", "-C", str(work), "-c", "user.name=m", "-c", "user.email=m@example.org"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", message], check=True)
    subprocess.run([*git, "push", "-q", "origin", "HEAD:main"], check=True)


LEGACY_TEST = """import unittest


class LegacyTest(unittest.TestCase):
    def test_known_broken(self):
        self.assertEqual(1, 2, "broken on main long before this run")
"""


def test_a_pre_existing_failure_does_not_cost_the_implementer_an_attempt(
    github, redis_conn: redis.Redis, remote: Path
) -> None:
    _push_commit(remote, {"tests/test_legacy.py": LEGACY_TEST}, "a test that already fails on main")
    record = run_labelled_issue(redis_conn)
    assert record.state is RunState.DONE, record.error
    validate = record.nodes["validate"]
    assert validate.attempts == 1 and validate.outputs["passed"] is True
    assert record.nodes["implement"].attempts == 1
    assert validate.outputs["base"] is not None  # the merge base ran too
    comparison = validate.outputs["comparison"]
    assert any("test_known_broken" in t or "unittest" in t for t in comparison["pre_existing"]), comparison
    assert comparison["new_failures"] == []
    [pull] = github.pulls(REPO)
    [review] = github.reviews(REPO, pull["number"])
    assert "Validation, measured" in review["body"] and "Already failing on the base branch" in review["body"]


def test_an_implementation_that_changes_nothing_fails_fast(
    github, redis_conn: redis.Redis, remote: Path, tmp_path: Path, monkeypatch
) -> None:
    """No validation, no second attempt: there is nothing the checks could say about no change."""
    from bot.providers.scripted import ScriptedTurn, dump_script

    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "demo-kimi-implement.jsonl").write_text(dump_script([ScriptedTurn(text="Nothing to do.")]))
    monkeypatch.setenv("ARCHON_SCRIPTS_DIR", str(scripts))
    record = run_labelled_issue(redis_conn)
    assert record.state is RunState.FAILED and record.nodes["validate"].state == NodeState.FAILED
    assert "changed no files" in (record.error or "")
    assert record.nodes["implement"].attempts == 1 and record.nodes["validate"].outputs == {}
