"""End to end: gunicorn serving the app factory and a separate `archon-bot worker` process, a real
Redis, and the fake GitHub (validating every request against GitHub's OpenAPI description).
GitHub's own example payloads, signed, go in over HTTP; what comes out is read from the fake GitHub.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from bot.fakes.stack import LocalStack
from tests.support import INSTALLATION_ID, OPENAPI, REPO, commented, labeled


@pytest.fixture(scope="module", params=["", "/api/v3"], ids=["github.com", "enterprise-server"])
def stack(request) -> Iterator[LocalStack]:
    with LocalStack(openapi=OPENAPI, github_prefix=request.param) as stack:
        yield stack


@pytest.fixture
def github(stack: LocalStack) -> Iterator:
    gh = stack.github
    gh.reset()
    gh.add_repo(REPO, installation=INSTALLATION_ID, collaborators={"maintainer": "admin", "reader": "read"})
    gh.add_issue(REPO, 1, title="Spelling error in the README file", author="Codertocat")
    yield gh
    print(stack.logs())  # pytest shows captured output only when the test fails
    assert gh.violations == []


def status_comment(gh) -> dict | None:
    found = [c for c in gh.comments(REPO, 1) if "archon-bot:status:" in c["body"]]
    return found[0] if found else None


def test_signed_label_to_status_comment(stack: LocalStack, github) -> None:
    answer = stack.deliver("issues", labeled("archon:plan-opus impl-kimi", sender="maintainer"))
    assert answer.status_code == 202, answer.text
    assert answer.json()["jobs"] == [f"triage-{answer.json()['delivery']}-0"]
    github.wait_for(lambda: github.reactions(REPO, 1) == ["eyes"])
    first = github.wait_for(lambda: status_comment(github))
    assert "plan-opus impl-kimi" in first["body"]
    # the run worker picks the run up and edits the same comment to its final state
    done = github.wait_for(lambda: (c := status_comment(github)) and "Done" in c["body"] and c, timeout=30)
    assert done["id"] == first["id"]
    assert len(github.comments(REPO, 1)) == 1


def test_redelivery_is_not_queued_twice(stack: LocalStack, github) -> None:
    payload = commented("/archon help", sender="reader")
    github.add_comment(REPO, 1, "/archon help", author="reader", comment_id=payload["comment"]["id"])
    first = stack.deliver("issue_comment", payload, delivery="same-delivery")
    again = stack.deliver("issue_comment", payload, delivery="same-delivery")
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["duplicate"] is True
    github.wait_for(lambda: any("here is what I understand" in c["body"] for c in github.comments(REPO, 1)))
    assert len(github.comments(REPO, 1)) == 2  # the command and one reply


def test_bad_signature_is_refused(stack: LocalStack, github) -> None:
    answer = stack.deliver(
        "issues", labeled("archon:plan-opus impl-kimi"), delivery="forged", secret="not-the-secret"
    )
    assert answer.status_code == 401
    assert not redis.Redis.from_url(stack.redis.url).exists("archon:delivery:forged")
