"""Property-based fuzzing of the webhook: GitHub's own example payloads, mutated (types changed, keys
dropped, values nested deeply, unicode everywhere), correctly signed and delivered through the Flask app
against the real private Redis. Whatever arrives, the answer is never a 5xx and every refusal names why.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given
from hypothesis import settings as fuzzing
from hypothesis import strategies as st
from rq import Queue

from bot.events import TaskEnvelope
from bot.queue import TRIAGE_QUEUE
from bot.web import create_app
from tests.support import WEBHOOKS, delivery_headers, example

HANDLED = (
    "issues.labeled",
    "issue_comment.created",
    "installation.created",
    "installation_repositories.added",
)
NAMES = sorted(p.stem for p in WEBHOOKS.glob("*.json") if ".".join(p.stem.split(".")[:2]) in HANDLED)
OTHERS = ["ping", "push", "issues.opened", "pull_request.opened", "issue_comment.edited"]
DEEP = "\x00deep\x00"  # a placeholder string, replaced by raw nesting after encoding

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def armed(name: str) -> dict[str, Any]:
    """An example the bot acts on: an `archon:` label, a `/archon` command by a person."""
    payload = example(name)
    if name.startswith("issues.labeled"):
        payload["label"]["name"] = "archon:plan-opus impl-kimi"
    elif name.startswith("issue_comment.created"):
        payload["comment"]["body"] = "/archon run plan=opus"
        payload["comment"]["performed_via_github_app"] = None
        payload["comment"]["user"]["type"] = payload["sender"]["type"] = "User"
    return payload


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path into a JSON value (the value itself included)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value[:3]):
            found += paths(child, (*prefix, index))
    return found


def replace(payload: dict, path: tuple, value: Any, drop: bool = False) -> None:
    if not path:
        return
    parent = payload
    for key in path[:-1]:
        parent = parent[key]
    if drop:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(NAMES + OTHERS))
    payload = armed(name)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(paths(payload)))
        mutation = draw(st.sampled_from(["value", "drop", "nest", "unicode", "deep", "number"]))
        if mutation == "drop":
            replace(payload, path, None, drop=bool(path))
        elif mutation == "nest":
            levels = draw(st.integers(1, 70))
            current = _get(payload, path)
            for _ in range(levels):
                current = draw(st.sampled_from([[current], {"x": current}]))
            replace(payload, path, current)
        elif mutation == "deep":
            replace(payload, path, DEEP)
        elif mutation == "unicode":
            replace(payload, path, draw(st.text(min_size=0, max_size=30)))
        elif mutation == "number":
            replace(payload, path, draw(st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)))
        else:
            replace(payload, path, draw(json_values))
    body = json.dumps(payload, ensure_ascii=draw(st.booleans())).encode()
    levels = draw(st.integers(65, 5000))
    body = body.replace(json.dumps(DEEP).encode(), b"[" * levels + b"]" * levels)
    # Mostly the example's own event; sometimes another handled one, so shapes meet the wrong model.
    event = draw(st.sampled_from([name, name, *HANDLED])).split(".")[0]
    return event, body


def _get(payload: Any, path: tuple) -> Any:
    for key in path:
        payload = payload[key]
    return payload


@pytest.fixture
def client(settings, redis_conn: redis.Redis):
    return create_app(settings, redis_conn).test_client()


@fuzzing(
    max_examples=200,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(delivery=deliveries())
def test_no_signed_delivery_gets_a_5xx(client, redis_conn, delivery) -> None:
    event, body = delivery
    response = client.post(
        "/webhook", data=body, headers=delivery_headers(event, body, delivery=uuid.uuid4().hex)
    )
    assert response.status_code < 500, response.get_data(as_text=True)[:2000]
    answer = response.json
    if response.status_code >= 300:
        assert isinstance(answer.get("error"), str) and answer["error"], answer
    elif response.status_code == 202:
        for job_id in answer["jobs"]:
            job = redis_conn.hgetall(f"rq:job:{job_id}")
            assert job, job_id
    else:
        assert answer.get("ignored") or answer.get("ok"), answer


@fuzzing(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.text(max_size=80), body=st.binary(max_size=200))
def test_garbage_signatures_are_401(client, header, body) -> None:
    headers = {**delivery_headers("issues", body), "X-Hub-Signature-256": header}
    try:
        response = client.post("/webhook", data=body, headers=headers)
    except ValueError:
        return  # the test client itself refuses a header with a newline; a server never sees it
    assert response.status_code == 401 and "X-Hub-Signature-256" in response.json["error"]


def test_accepted_fuzz_tasks_are_plain_values(client, redis_conn) -> None:
    """The property above checks shapes; this pins that what a mutated-but-valid delivery queues
    is a validated task (unicode title, no body, pull request) and nothing of the raw payload."""
    payload = armed("issue_comment.created")
    payload["issue"]["title"] = "ünïcødé ☃ \u202e"
    del payload["issue"]["body"]
    payload["issue"]["pull_request"] = {"url": "x"}
    payload["comment"]["extra"] = [[[{"deep": "ignored"}]]]
    body = json.dumps(payload, ensure_ascii=False).encode()
    response = client.post("/webhook", data=body, headers=delivery_headers("issue_comment", body))
    assert response.status_code == 202
    [job] = Queue(TRIAGE_QUEUE, connection=redis_conn).get_jobs()
    task = TaskEnvelope.model_validate(job.args[0]).task
    assert task.is_pull_request and task.issue_title is None and "deep" not in json.dumps(job.args)


def test_the_strategy_reaches_every_branch(client) -> None:
    """Guard against a fuzzer that only ever produces 400s: each kind of answer occurs in a fixed sample."""
    from hypothesis import find

    for wanted in (202, 200, 400):
        find(
            deliveries(),
            lambda d, code=wanted: _answer(client, d) == code,
            settings=fuzzing(max_examples=500),
        )


def _answer(client, delivery: tuple[str, bytes]) -> int:
    event, body = delivery
    return client.post("/webhook", data=body, headers=delivery_headers(event, body)).status_code


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff\\ud800", "\\u0000", "\\u202e"])
def test_lone_surrogates_and_controls_in_json_are_harmless(client, redis_conn, escape) -> None:
    """JSON can carry a lone surrogate (`"\\ud800"`), which no UTF-8 encoder accepts: what is queued
    can always be encoded (it is logged, sent to models and posted back)."""
    payload = armed("issue_comment.created")
    payload["issue"]["title"] = "MARK"
    payload["comment"]["body"] = "/archon run plan=opus MARK"
    body = json.dumps(payload).replace("MARK", escape).encode()
    response = client.post("/webhook", data=body, headers=delivery_headers("issue_comment", body))
    assert response.status_code == 202, response.get_data(as_text=True)
    [job] = Queue(TRIAGE_QUEUE, connection=redis_conn).get_jobs()
    task = TaskEnvelope.model_validate(job.args[0]).task
    for text in (task.issue_title, task.trigger, task.error or ""):
        text.encode("utf-8")


def test_a_login_that_is_not_a_login_is_400(client, redis_conn) -> None:
    payload = armed("issue_comment.created")
    payload["sender"]["login"] = "@all"
    body = json.dumps(payload).encode()
    response = client.post("/webhook", data=body, headers=delivery_headers("issue_comment", body))
    assert response.status_code == 400 and "sender.login: String should match" in response.json["error"]
