"""The fake GitHub must be as strict as GitHub where the bot could go wrong: App JWTs, token scope,
request shapes. These tests hold it to that, with PyGithub and raw HTTP as clients."""

from __future__ import annotations

import time

import jwt
import pytest
import requests
from github import Auth, Github, GithubException, GithubIntegration

from bot.fakes.github import FakeGitHub
from bot.fakes.stack import app_key_pair
from tests.support import APP_ID, INSTALLATION_ID, REPO, app_key


def client(github: FakeGitHub, installation: int = INSTALLATION_ID) -> Github:
    auth = Auth.AppAuth(APP_ID, app_key()[0]).get_installation_auth(installation)
    return Github(auth=auth, base_url=github.api_url, seconds_between_writes=0, retry=None)


def test_app_jwt_is_verified_with_the_apps_public_key(github: FakeGitHub) -> None:
    stranger = Auth.AppAuth(APP_ID, app_key_pair()[0])
    with pytest.raises(GithubException) as raised:
        GithubIntegration(auth=stranger, base_url=github.api_url).get_app()
    assert raised.value.status == 401
    assert (
        GithubIntegration(auth=Auth.AppAuth(APP_ID, app_key()[0]), base_url=github.api_url).get_app().id
        == APP_ID
    )


def test_jwt_living_longer_than_ten_minutes_is_refused(github: FakeGitHub) -> None:
    now = int(time.time())
    token = jwt.encode({"iat": now, "exp": now + 3600, "iss": str(APP_ID)}, app_key()[0], algorithm="RS256")
    answer = requests.get(f"{github.api_url}/app", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert answer.status_code == 401 and "too far in the future" in answer.json()["message"]


def test_installation_token_only_opens_its_own_repositories(github: FakeGitHub) -> None:
    github.add_repo("someone-else/private", installation=999)
    gh = client(github)
    assert gh.get_repo(REPO).full_name == REPO
    with pytest.raises(GithubException) as raised:
        _ = gh.get_repo("someone-else/private").full_name
    assert raised.value.status == 404
    github.violations.clear()  # a 404 is not a contract violation


def test_unauthenticated_calls_are_refused(github: FakeGitHub) -> None:
    answer = requests.get(f"{github.api_url}/repos/{REPO}/issues/1", timeout=5)
    assert answer.status_code == 401 and answer.json()["message"] == "Requires authentication"


def test_comments_paginate_with_link_headers(github: FakeGitHub) -> None:
    for index in range(45):
        github.add_comment(REPO, 1, f"comment {index}", author="maintainer")
    comments = list(client(github).get_repo(REPO).get_issue(1).get_comments())
    assert [c.body for c in comments] == [f"comment {i}" for i in range(45)]
    assert len(github.calls_to("GET", rf"/repos/{REPO}/issues/1/comments")) == 2


def test_label_already_exists_is_422_like_github(github: FakeGitHub) -> None:
    repo = client(github).get_repo(REPO)
    repo.create_label("archon:bench", "5319e7", "benchmark")
    with pytest.raises(GithubException) as raised:
        repo.create_label("ARCHON:BENCH", "5319e7", "again")
    assert raised.value.status == 422
    assert raised.value.data["errors"][0]["code"] == "already_exists"
    github.violations.clear()


def test_requests_that_break_the_openapi_description_are_recorded(github: FakeGitHub) -> None:
    gh = client(github)
    gh.get_repo(REPO)  # obtain a token through PyGithub
    token = next(t for t in github._tokens)
    headers = {"Authorization": f"token {token}"}
    answer = requests.post(
        f"{github.api_url}/repos/{REPO}/issues/1/reactions",
        json={"content": "party"},
        headers=headers,
        timeout=5,
    )
    assert answer.status_code == 422
    assert any("reactions" in v for v in github.violations)
    github.violations.clear()


def test_injected_failures_are_retried_by_pygithub(github: FakeGitHub) -> None:
    github.fail_next("GET", rf"/repos/{REPO}/issues/1", 502)
    auth = Auth.AppAuth(APP_ID, app_key()[0]).get_installation_auth(INSTALLATION_ID)
    from github import GithubRetry

    gh = Github(auth=auth, base_url=github.api_url, retry=GithubRetry(total=2, backoff_factor=0.01))
    assert gh.get_repo(REPO).get_issue(1).title == "Spelling error in the README file"
    assert [c.status for c in github.calls_to("GET", rf"/repos/{REPO}/issues/1")] == [502, 200]


def test_injected_failures_can_come_after_the_call_is_performed(github: FakeGitHub) -> None:
    """A lost answer: the comment exists, yet the client is told 502 (with the headers asked for)."""
    from bot.fakes.github_state import SECONDARY_RATE_LIMITED

    issue = client(github).get_repo(REPO).get_issue(1)
    github.fail_next("POST", rf"/repos/{REPO}/issues/1/comments", 502, after=True, body="lost")
    issue.create_comment("kept")  # the body does not match: not failed
    with pytest.raises(GithubException) as raised:
        issue.create_comment("lost")
    assert raised.value.status == 502
    assert [c["body"] for c in github.comments(REPO, 1)] == ["kept", "lost"]
    github.fail_next(
        "POST",
        rf"/repos/{REPO}/issues/1/comments",
        403,
        headers={"Retry-After": "7"},
        message=SECONDARY_RATE_LIMITED,
    )
    with pytest.raises(GithubException) as raised:
        issue.create_comment("limited")
    assert raised.value.status == 403 and raised.value.headers["retry-after"] == "7"
    assert "secondary rate limit" in raised.value.data["message"]
    assert len(github.comments(REPO, 1)) == 2  # failed before: not performed


def test_enterprise_server_prefix() -> None:
    with FakeGitHub(APP_ID, app_key()[1], prefix="/api/v3") as gh:
        gh.add_repo(REPO, installation=INSTALLATION_ID)
        assert gh.api_url.endswith("/api/v3")
        assert client(gh).get_repo(REPO).full_name == REPO
        assert (
            requests.get(gh.api_url.removesuffix("/api/v3") + f"/repos/{REPO}", timeout=5).status_code == 404
        )


def bare_repo_with_branch(tmp_path) -> tuple:
    """A bare repository with `main` and a branch `fix` that edits one file and adds another."""
    import subprocess

    work, bare = tmp_path / "work", tmp_path / "remotes" / "Codertocat" / "Hello-World.git"
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
        "PATH": "/usr/bin:/bin",
    }

    def git(*args, cwd=work):
        subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env=env)

    work.mkdir()
    git("init", "-q", "-b", "main")
    (work / "app.py").write_text("a = 1\nb = 2\nc = 3\n")
    git("add", "-A")
    git("commit", "-qm", "base")
    git("checkout", "-qb", "fix")
    (work / "app.py").write_text("a = 1\nb = 20\nc = 3\n")
    (work / "test_app.py").write_text("def test():\n    assert True\n")
    git("add", "-A")
    git("commit", "-qm", "fix")
    bare.parent.mkdir(parents=True)
    git("clone", "-q", "--bare", str(work), str(bare), cwd=tmp_path)
    return bare


def test_draft_pull_requests_and_reviews(github: FakeGitHub, tmp_path) -> None:
    from bot.github.forge import RepoForge

    github.add_repo(REPO, installation=INSTALLATION_ID, git_dir=bare_repo_with_branch(tmp_path))
    github.add_issue(REPO, 1)
    forge = RepoForge(client(github), REPO)
    first = forge.open_draft_pull("fix", "main", "Fix b", "Fixes #1", key="r1")
    again = forge.open_draft_pull("fix", "main", "Fix b", "Fixes #1", key="r1")
    assert first == again and first.id == 2  # pull requests share numbers with issues
    [pull] = github.pulls(REPO)
    assert pull["draft"] is True and pull["head"]["ref"] == "fix" and "archon-bot:pull:r1" in pull["body"]
    assert (pull["additions"], pull["deletions"], pull["changed_files"]) == (3, 1, 2)
    files = {name: patch for name, _, patch in forge.pull_diff_files(2)}
    assert {name: status for name, status, _ in forge.pull_diff_files(2)} == {
        "app.py": "modified",
        "test_app.py": "added",
    }
    assert set(files) == {"app.py", "test_app.py"} and "+b = 20" in files["app.py"]
    comment = {"path": "app.py", "line": 2, "side": "RIGHT", "body": "why 20?"}
    review = forge.post_review(2, "Looks fine", key="r1", comments=[comment])
    assert forge.post_review(2, "Looks fine", key="r1", comments=[comment]) == review
    [stored] = github.reviews(REPO, 2)
    assert stored["state"] == "COMMENTED" and stored["comments"] == [comment]
    assert github.violations == []
    with pytest.raises(GithubException) as raised:
        forge.post_review(2, "x", key="r2", comments=[{**comment, "line": 99}])
    assert raised.value.status == 422
    github.violations.clear()


def test_pull_request_needs_an_existing_branch(github: FakeGitHub, tmp_path) -> None:
    github.add_repo(REPO, installation=INSTALLATION_ID, git_dir=bare_repo_with_branch(tmp_path))
    with pytest.raises(GithubException) as raised:
        client(github).get_repo(REPO).create_pull(base="main", head="nope", title="t", body="b", draft=True)
    assert raised.value.status == 422
    github.violations.clear()


def pull_with_branch(github: FakeGitHub, tmp_path) -> tuple[Github, int]:
    """A client and the number of a pull request someone opened on the `fix` branch."""
    github.add_repo(
        REPO,
        installation=INSTALLATION_ID,
        git_dir=bare_repo_with_branch(tmp_path),
        collaborators={"maintainer": "maintain"},
    )
    return client(github), github.add_pull(REPO, head="fix", title="Fix b")


def test_review_comments_threads_and_replies(github: FakeGitHub, tmp_path) -> None:
    gh, number = pull_with_branch(github, tmp_path)
    review = github.add_review(
        REPO,
        number,
        "Please look again",
        author="maintainer",
        event="REQUEST_CHANGES",
        comments=[{"path": "app.py", "line": 2, "body": "why 20?"}],
    )
    assert review["state"] == "CHANGES_REQUESTED" and review["author_association"] == "COLLABORATOR"
    [root] = github.review_comments(REPO, number)
    assert root["pull_request_review_id"] == review["id"] and "in_reply_to_id" not in root
    assert root["diff_hunk"].startswith("@@ ") and root["diff_hunk"].endswith("+b = 20")
    pull = gh.get_repo(REPO).get_pull(number)
    reply = pull.create_review_comment_reply(root["id"], "Because the spec says so.")
    assert reply.in_reply_to_id == root["id"] and reply.path == "app.py" and reply.line == 2
    assert reply.user.login == github.bot_login
    second = github.add_review_comment(REPO, number, "ok", author="maintainer", in_reply_to=root["id"])
    assert second["in_reply_to_id"] == root["id"]
    assert [c.body for c in pull.get_review_comments()] == ["why 20?", "Because the spec says so.", "ok"]
    assert pull.get_review_comment(root["id"]).diff_hunk == root["diff_hunk"]
    assert github.violations == []


def test_a_reviews_inline_comments_through_the_forge(github: FakeGitHub, tmp_path) -> None:
    """`GET .../reviews/{review_id}/comments` (validated against the description), read the way triage
    reads a "changes requested" review: only that review's comments; 404 for a review not on the pull."""
    from bot.github.forge import InlineComment, RepoForge

    gh, number = pull_with_branch(github, tmp_path)
    github.add_review(
        REPO, number, "", author="maintainer", comments=[{"path": "app.py", "line": 2, "body": "x"}]
    )
    review = github.add_review(
        REPO, number, "", author="maintainer", event="REQUEST_CHANGES",
        comments=[{"path": "app.py", "line": 2, "body": "why 20?"}],
    )  # fmt: skip
    forge = RepoForge(gh, REPO)
    assert forge.latest_review_id(number, "maintainer", "CHANGES_REQUESTED") == review["id"]
    assert forge.latest_review_id(number, "someone", "CHANGES_REQUESTED") is None
    [comment] = forge.review_inline_comments(number, review["id"])
    assert isinstance(comment, InlineComment) and (comment.path, comment.line, comment.body) == (
        "app.py", 2, "why 20?",
    )  # fmt: skip
    assert comment.diff_hunk.startswith("@@ ") and comment.diff_hunk.endswith("+b = 20")
    with pytest.raises(GithubException) as raised:
        forge.review_inline_comments(number, review["id"] + 1000)
    assert raised.value.status == 404
    assert github.violations == []


def test_review_comments_must_sit_on_the_diff_and_replies_on_a_root(github: FakeGitHub, tmp_path) -> None:
    gh, number = pull_with_branch(github, tmp_path)
    with pytest.raises(ValueError):
        github.add_review_comment(REPO, number, "off", author="maintainer", path="app.py", line=40)
    root = github.add_review_comment(REPO, number, "hm", author="maintainer", path="test_app.py", line=1)
    reply = github.add_review_comment(REPO, number, "yes", author="maintainer", in_reply_to=root["id"])
    pull = gh.get_repo(REPO).get_pull(number)
    with pytest.raises(GithubException) as raised:
        pull.create_review_comment_reply(reply["id"], "to a reply")
    assert raised.value.status == 422
    github.violations.clear()


def test_bot_review_inline_comments_become_review_comments(github: FakeGitHub, tmp_path) -> None:
    gh, number = pull_with_branch(github, tmp_path)
    comment = {"path": "app.py", "line": 2, "side": "RIGHT", "body": "why 20?"}
    created = (
        gh.get_repo(REPO).get_pull(number).create_review(body="Review", event="COMMENT", comments=[comment])
    )
    [stored] = github.reviews(REPO, number)
    assert stored["comments"] == [comment]
    [inline] = github.review_comments(REPO, number)
    assert inline["pull_request_review_id"] == created.id and inline["user"]["type"] == "Bot"
    assert github.violations == []


def test_check_run_lifecycle(github: FakeGitHub, tmp_path) -> None:
    gh, number = pull_with_branch(github, tmp_path)
    repo = gh.get_repo(REPO)
    sha = repo.get_pull(number).head.sha
    run = repo.create_check_run("Archon run", sha, status="queued", external_id="run-1")
    run.edit(status="in_progress")
    run.edit(conclusion="success", output={"title": "Done", "summary": "All green"})
    [shown] = github.check_runs(REPO, sha)
    assert (shown["status"], shown["conclusion"], shown["output"]["title"]) == (
        "completed",
        "success",
        "Done",
    )
    assert shown["pull_requests"][0]["number"] == number and shown["external_id"] == "run-1"
    assert github.check_run_statuses(run.id) == ["queued", "in_progress", "completed"]
    assert repo.get_check_run(run.id).conclusion == "success"
    again = repo.create_check_run("Archon run", sha, conclusion="failure")
    from github.CheckRun import CheckRun
    from github.PaginatedList import PaginatedList

    def listed(**params: str) -> list[int]:
        url = f"{repo.url}/commits/{sha}/check-runs"
        return [r.id for r in PaginatedList(CheckRun, repo._requester, url, params, list_item="check_runs")]

    assert listed() == [again.id]  # filter=latest: the newest of each name
    assert listed(filter="all") == [run.id, again.id]
    assert listed(check_name="other") == []
    assert github.violations == []


def test_check_runs_are_as_strict_as_github(github: FakeGitHub, tmp_path) -> None:
    gh, number = pull_with_branch(github, tmp_path)
    repo = gh.get_repo(REPO)
    sha = repo.get_pull(number).head.sha
    for bad in ({"head_sha": "0" * 40}, {"status": "completed"}, {"output": {"summary": "no title"}}):
        with pytest.raises(GithubException) as raised:
            repo.create_check_run(**{"name": "Archon run", "head_sha": sha, **bad})
        assert raised.value.status == 422
    assert github.check_runs(REPO) == []
    github.violations.clear()


def test_pull_request_head_follows_its_branch(github: FakeGitHub, tmp_path) -> None:
    import subprocess

    gh, number = pull_with_branch(github, tmp_path)
    bare = github._repo(REPO).git_dir
    before = github.pulls(REPO)[0]["head"]["sha"]
    tree = subprocess.run(
        ["git", "--git-dir", str(bare), "rev-parse", "fix^{tree}"], capture_output=True, text=True, check=True
    ).stdout.strip()
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
    }
    commit = subprocess.run(
        ["git", "--git-dir", str(bare), "commit-tree", tree, "-p", before, "-m", "more"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.strip()
    subprocess.run(["git", "--git-dir", str(bare), "update-ref", "refs/heads/fix", commit], check=True)
    assert gh.get_repo(REPO).get_pull(number).head.sha == commit != before


def test_pull_body_and_review_edits_keep_markers_and_are_redacted(github: FakeGitHub, tmp_path) -> None:
    """PATCH /pulls/{n} and PUT /pulls/{n}/reviews/{id}, through the forge (the one writer)."""
    from bot.github.forge import RepoForge
    from bot.secrets import Redactor

    github.add_repo(REPO, installation=INSTALLATION_ID, git_dir=bare_repo_with_branch(tmp_path),
                    collaborators={"maintainer": "maintain"})  # fmt: skip
    github.add_issue(REPO, 1)
    forge = RepoForge(client(github), REPO, redactor=Redactor(["s3cr3t-value"]))
    number = forge.open_draft_pull("fix", "main", "Fix b", "Fixes #1", key="r1").id
    forge.edit_pull_body(number, "Fixes #1\n\n| 1 | s3cr3t-value |", key="r1")
    [pull] = github.pulls(REPO)
    assert "| 1 |" in pull["body"] and "archon-bot:pull:r1" in pull["body"] and "s3cr3t" not in pull["body"]
    assert forge.open_draft_pull("fix", "main", "Fix b", "Fixes #1", key="r1").id == number  # still the run's
    forge.post_review(number, "Score 50/70", key="r1", comments=[])
    note = "> ⚠️ **Superseded** by [the next one](http://x).\n\n"
    assert forge.supersede_review(number, "r1", note) and forge.supersede_review(number, "r1", note)
    assert forge.supersede_review(number, "r9", note) is False
    [review] = github.reviews(REPO, number)
    assert review["body"].startswith(note) and review["body"].count("Superseded") == 1
    someone = github.add_review(REPO, number, "mine", author="maintainer")
    with pytest.raises(GithubException) as raised:  # only its author may edit a review
        reviews = client(github).get_repo(REPO).get_pull(number).get_reviews()
        next(r for r in reviews if r.id == someone["id"]).edit("hijacked")
    assert raised.value.status == 403
    assert github.violations == []


TWO_HUNKS = """diff --git a/m.py b/m.py
--- a/m.py
+++ b/m.py
@@ -1,3 +1,3 @@
 a = 1
-b = 2
+b = 20
 c = 3
@@ -20,3 +20,4 @@
 x = 1
 y = 2
+z = 3
 w = 4
"""


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"start_line": 1, "line": 3}, None),
        ({"start_line": 20, "line": 23}, None),
        ({"start_line": 1, "line": 3, "side": "LEFT", "start_side": "LEFT"}, None),
        ({"start_line": 3, "line": 3}, "START_NOT_BEFORE_LINE"),
        ({"start_line": 3, "line": 2}, "START_NOT_BEFORE_LINE"),
        ({"start_line": 1, "line": 3, "start_side": "LEFT"}, "START_SIDE_DIFFERS"),
        ({"start_line": 2, "line": 21}, "NOT_ONE_HUNK"),
        ({"start_line": 19, "line": 21}, "NOT_ONE_HUNK"),  # 19 is not shown at all
    ],
)
def test_multi_line_review_comments_are_placed_as_on_github(spec: dict, problem: str | None) -> None:
    from bot.fakes import github_pulls as gp

    expected = [getattr(gp, problem)] if problem else []
    assert gp.unanchored(TWO_HUNKS, [{"path": "m.py", "body": "b", **spec}]) == expected


def test_a_review_with_a_misplaced_range_is_refused_with_422(github: FakeGitHub, tmp_path) -> None:
    from bot.fakes.github_pulls import START_NOT_BEFORE_LINE

    gh, number = pull_with_branch(github, tmp_path)
    pull = gh.get_repo(REPO).get_pull(number)
    ok = {"path": "app.py", "start_line": 1, "start_side": "RIGHT", "line": 3, "side": "RIGHT", "body": "b"}
    pull.create_review(body="fine", event="COMMENT", comments=[ok])
    with pytest.raises(GithubException) as raised:
        pull.create_review(body="no", event="COMMENT", comments=[{**ok, "start_line": 3}])
    assert raised.value.status == 422 and START_NOT_BEFORE_LINE in str(raised.value.data)
    assert len(github.reviews(REPO, number)) == 1
    github.violations.clear()
