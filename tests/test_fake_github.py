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


def test_enterprise_server_prefix() -> None:
    with FakeGitHub(APP_ID, app_key()[1], prefix="/api/v3") as gh:
        gh.add_repo(REPO, installation=INSTALLATION_ID)
        assert gh.api_url.endswith("/api/v3")
        assert client(gh).get_repo(REPO).full_name == REPO
        assert (
            requests.get(gh.api_url.removesuffix("/api/v3") + f"/repos/{REPO}", timeout=5).status_code == 404
        )
