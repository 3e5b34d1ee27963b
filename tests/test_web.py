"""The webhook endpoint, fed GitHub's own example payloads, signed like GitHub signs them."""

from __future__ import annotations

import json

import pytest
import redis
from rq import Queue

from bot.events import TaskEnvelope
from bot.queue import DELIVERY_TTL, TRIAGE_QUEUE
from bot.settings import ConfigurationError, Settings
from bot.triggers import Role, RunRequest
from bot.web import create_app, signature_ok
from tests.support import APP_ID, WEBHOOKS, commented, delivery_headers, encode, example, labeled, sign


@pytest.fixture
def client(settings: Settings, redis_conn: redis.Redis):
    return create_app(settings, redis_conn).test_client()


def post(client, event: str, payload: dict, **kwargs):
    body = encode(payload)
    headers = delivery_headers(event, body, **kwargs)
    return client.post("/webhook", data=body, headers=headers)


def queued(redis_conn: redis.Redis) -> list:
    return Queue(TRIAGE_QUEUE, connection=redis_conn).get_jobs()


def test_label_is_accepted_and_queued_with_plain_values(client, redis_conn) -> None:
    response = post(client, "issues", labeled("archon:plan-opus impl-kimi"), delivery="d-1")
    assert response.status_code == 202
    assert response.json == {"delivery": "d-1", "jobs": ["triage-d-1-0"]}
    [job] = queued(redis_conn)
    task = TaskEnvelope.model_validate(job.args[0]).task
    assert task.kind == "command" and task.installation_id == 777
    assert task.request == RunRequest(models={Role.PLAN: "opus", Role.IMPL: "kimi"})
    assert task.repo == "Codertocat/Hello-World" and task.issue == 1 and task.comment_id is None
    assert "secret" not in json.dumps(job.args).lower()


def test_comment_command_is_queued(client, redis_conn) -> None:
    response = post(client, "issue_comment", commented("/archon run plan=opus impl=kimi"))
    assert response.status_code == 202
    task = TaskEnvelope.model_validate(queued(redis_conn)[0].args[0]).task
    assert task.comment_id == example("issue_comment.created")["comment"]["id"]
    assert task.trigger == "`/archon run plan=opus impl=kimi`"


def test_malformed_command_is_queued_for_a_helpful_reply(client, redis_conn) -> None:
    response = post(client, "issue_comment", commented("/archon run plan=opus plan=kimi"))
    assert response.status_code == 202
    task = TaskEnvelope.model_validate(queued(redis_conn)[0].args[0]).task
    assert task.request is None and "given twice" in task.error
    assert task.usage.startswith("/archon run")


def test_redelivery_never_enqueues_twice(client, redis_conn) -> None:
    payload = labeled("archon:plan-opus")
    first = post(client, "issues", payload, delivery="same")
    again = post(client, "issues", payload, delivery="same")
    assert first.status_code == 202
    assert again.status_code == 200 and again.json["duplicate"] is True
    assert len(queued(redis_conn)) == 1
    assert redis_conn.ttl("archon:delivery:same") > 3 * 24 * 3600
    assert DELIVERY_TTL >= 3 * 24 * 3600


@pytest.mark.parametrize("header", [None, "", "sha256=", "sha256=" + "0" * 64, "sha1=abc"])
def test_missing_or_wrong_signature_is_401_and_queues_nothing(client, redis_conn, header) -> None:
    body = encode(labeled("archon:plan-opus"))
    headers = delivery_headers("issues", body)
    if header is None:
        del headers["X-Hub-Signature-256"]
    else:
        headers["X-Hub-Signature-256"] = header
    response = client.post("/webhook", data=body, headers=headers)
    assert response.status_code == 401
    assert queued(redis_conn) == []


def test_signature_made_with_another_secret_is_401(client) -> None:
    assert post(client, "issues", labeled("archon:plan-opus"), secret="not-ours").status_code == 401


def test_signature_is_checked_before_json(client) -> None:
    body = b"{not json"
    headers = delivery_headers("issues", body)
    headers["X-Hub-Signature-256"] = "sha256=" + "1" * 64
    assert client.post("/webhook", data=body, headers=headers).status_code == 401


@pytest.mark.parametrize("missing", ["X-GitHub-Event", "X-GitHub-Delivery"])
def test_missing_event_headers_are_400(client, missing) -> None:
    body = encode(labeled("archon:plan-opus"))
    headers = delivery_headers("issues", body)
    del headers[missing]
    assert client.post("/webhook", data=body, headers=headers).status_code == 400


def test_malformed_json_is_400(client) -> None:
    body = b'{"action": "labeled",'
    response = client.post("/webhook", data=body, headers=delivery_headers("issues", body))
    assert response.status_code == 400 and "malformed JSON" in response.json["error"]


def test_json_that_is_not_an_object_is_400(client) -> None:
    body = b"[1, 2]"
    assert client.post("/webhook", data=body, headers=delivery_headers("issues", body)).status_code == 400


def test_wrong_content_type_is_415(client) -> None:
    body = encode(labeled("archon:plan-opus"))
    headers = {**delivery_headers("issues", body), "Content-Type": "text/plain"}
    assert client.post("/webhook", data=body, headers=headers).status_code == 415


def test_form_encoded_delivery_is_understood(client, redis_conn) -> None:
    from urllib.parse import urlencode

    body = urlencode({"payload": json.dumps(labeled("archon:plan-opus"))}).encode()
    headers = {**delivery_headers("issues", body), "Content-Type": "application/x-www-form-urlencoded"}
    assert client.post("/webhook", data=body, headers=headers).status_code == 202


def test_payload_above_25_mb_is_413(client) -> None:
    body = b'{"pad": "' + b"x" * (25 * 1024 * 1024) + b'"}'
    response = client.post("/webhook", data=body, headers=delivery_headers("issues", body))
    assert response.status_code == 413


@pytest.mark.parametrize("name", ["ping", "ping.2", "ping.3", "ping.4"])
def test_ping_is_200(client, redis_conn, name) -> None:
    response = post(client, "ping", example(name))
    assert response.status_code == 200 and response.json["ok"] is True
    assert queued(redis_conn) == []


@pytest.mark.parametrize(
    ("event", "payload", "reason"),
    [
        ("push", example("push"), "event `push`"),
        ("issues", example("issues.opened"), "action `opened`"),
        ("issues", example("issues.labeled"), "not an `archon:` label"),
        ("issue_comment", example("issue_comment.created"), "does not start with `/archon`"),
        ("issue_comment", example("issue_comment.edited"), "action `edited`"),
        ("pull_request", example("pull_request.opened"), "event `pull_request`"),
        ("installation", example("installation.deleted"), "action `deleted`"),
        ("issues", labeled("archon:plan-opus") | {"installation": None}, "no installation"),
    ],
)
def test_events_we_do_not_act_on_are_200_with_a_reason(client, redis_conn, event, payload, reason) -> None:
    response = post(client, event, payload)
    assert response.status_code == 200
    assert reason in response.json["ignored"]
    assert queued(redis_conn) == []


def test_bots_never_trigger_work(client, redis_conn) -> None:
    by_bot = commented("/archon run")
    by_bot["sender"]["type"] = "Bot"
    own = commented("/archon help")
    own["comment"]["performed_via_github_app"] = {"id": APP_ID, "slug": "archon-bot"}
    other_app = commented("/archon run")
    other_app["comment"]["user"]["type"] = "Bot"
    label_by_bot = labeled("archon:plan-opus")
    label_by_bot["sender"]["type"] = "Bot"
    reasons = [
        post(client, e, p).json["ignored"]
        for e, p in [
            ("issue_comment", by_bot),
            ("issue_comment", own),
            ("issue_comment", other_app),
            ("issues", label_by_bot),
        ]
    ]
    assert reasons == [
        "sender is a bot",
        "comment was written by this app",
        "comment author is a bot",
        "sender is a bot",
    ]
    assert queued(redis_conn) == []


@pytest.mark.parametrize("name", ["installation.created", "installation_repositories.added"])
def test_installation_creates_labels(client, redis_conn, name) -> None:
    payload = example(name)
    response = post(client, name.split(".")[0], payload)
    assert response.status_code == 202
    task = TaskEnvelope.model_validate(queued(redis_conn)[0].args[0]).task
    key = "repositories" if name == "installation.created" else "repositories_added"
    assert task.kind == "labels" and task.repos == tuple(r["full_name"] for r in payload[key])


def test_payload_missing_fields_is_400(client) -> None:
    payload = labeled("archon:plan-opus")
    del payload["repository"]
    assert post(client, "issues", payload).status_code == 400


def test_redis_down_is_503_never_2xx(settings) -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    client = create_app(settings, dead).test_client()
    response = post(client, "issues", labeled("archon:plan-opus"))
    assert response.status_code == 503 and "redeliver" in response.json["error"]
    assert client.get("/healthz").status_code == 503
    assert post(client, "ping", example("ping")).status_code == 200


def test_healthz_reports_redis(client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json["redis"] == "ok"


def test_healthz_says_how_commands_run(settings, redis_conn, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot import sandbox

    answer = create_app(settings, redis_conn).test_client().get("/healthz").json["sandbox"]
    assert answer.startswith("bubblewrap, network none") or "unsandboxed" in answer
    monkeypatch.setattr(sandbox, "bwrap_problem", lambda: "bwrap is not installed")
    answer = create_app(settings, redis_conn).test_client().get("/healthz").json["sandbox"]
    assert answer == "unavailable (bwrap is not installed): commands run unsandboxed"
    off = settings.model_copy(update={"archon_sandbox": "off"})
    answer = create_app(off, redis_conn).test_client().get("/healthz").json["sandbox"]
    assert "ARCHON_SANDBOX=off" in answer


def test_refuses_to_start_without_a_secret(redis_conn) -> None:
    with pytest.raises(ConfigurationError, match="GITHUB_WEBHOOK_SECRET"):
        create_app(Settings(_env_file=None, github_webhook_secret=None), redis_conn)
    with pytest.raises(ConfigurationError, match="GITHUB_WEBHOOK_SECRET"):
        create_app(Settings(_env_file=None, github_webhook_secret=""), redis_conn)


def test_custom_webhook_path(settings, redis_conn) -> None:
    client = create_app(
        settings.model_copy(update={"webhook_path": "/hooks/github"}), redis_conn
    ).test_client()
    body = encode(example("ping"))
    assert client.post("/hooks/github", data=body, headers=delivery_headers("ping", body)).status_code == 200
    assert client.post("/webhook", data=body, headers=delivery_headers("ping", body)).status_code == 404


def test_signature_helper() -> None:
    assert signature_ok(b"k", b"body", sign(b"body", "k"))
    assert not signature_ok(b"k", b"body!", sign(b"body", "k"))


# --- input that cannot hurt ----------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["sha256=é" + "0" * 63, "sha256=☃", "sha256=\x00", "sha256=" + "ß" * 64])
def test_non_ascii_signature_is_401_not_500(client, redis_conn, header) -> None:
    body = encode(labeled("archon:plan-opus"))
    headers = {**delivery_headers("issues", body), "X-Hub-Signature-256": header}
    response = client.post("/webhook", data=body, headers=headers)
    assert response.status_code == 401 and "X-Hub-Signature-256" in response.json["error"]
    assert queued(redis_conn) == []


def _set(payload: dict, path: str, value) -> dict:
    *parents, last = path.split(".")
    target = payload
    for key in parents:
        target = target[key]
    target[last] = value
    return payload


@pytest.mark.parametrize(
    ("event", "path", "value", "named"),
    [
        ("issues", "label", 5, "label: Input should be a valid dictionary"),
        ("issues", "label.name", ["archon:plan-opus"], "label.name: Input should be a valid string"),
        ("issues", "sender", "maintainer", "sender: Input should be a valid dictionary"),
        ("issues", "sender.login", 42, "sender.login: Input should be a valid string"),
        ("issues", "installation", "777", "installation: Input should be a valid dictionary"),
        ("issues", "installation.id", "777", "installation.id: Input should be a valid integer"),
        ("issues", "issue", [], "issue: Input should be a valid dictionary"),
        ("issues", "issue.number", "1", "issue.number: Input should be a valid integer"),
        ("issues", "issue.number", 1.5, "issue.number: Input should be a valid integer"),
        ("issues", "issue.number", True, "issue.number: Input should be a valid integer"),
        ("issues", "issue.labels", {"name": "x"}, "issue.labels: Input should be a valid list"),
        ("issues", "issue.title", 7, "issue.title: Input should be a valid string"),
        ("issues", "repository.full_name", "../../etc", "repository.full_name: String should match"),
        ("issue_comment", "comment", 3, "comment: Input should be a valid dictionary"),
        ("issue_comment", "comment.id", "9", "comment.id: Input should be a valid integer"),
        (
            "issue_comment",
            "comment.body",
            {"text": "/archon run"},
            "comment.body: Input should be a valid string",
        ),
        ("issue_comment", "comment.user", "x", "comment.user: Input should be a valid dictionary"),
        ("issue_comment", "issue.pull_request", "yes", "issue.pull_request: Input should be a valid dict"),
    ],
)
def test_wrong_typed_field_is_400_naming_it(client, redis_conn, event, path, value, named) -> None:
    payload = labeled("archon:plan-opus") if event == "issues" else commented("/archon run")
    response = post(client, event, _set(payload, path, value))
    assert response.status_code == 400, response.json
    assert named in response.json["error"]
    assert queued(redis_conn) == []


@pytest.mark.parametrize("name", ["installation.created", "installation_repositories.added"])
def test_installation_with_wrong_repositories_is_400(client, redis_conn, name) -> None:
    key = "repositories" if name == "installation.created" else "repositories_added"
    payload = example(name) | {key: [{"full_name": 5}]}
    response = post(client, name.split(".")[0], payload)
    assert (
        response.status_code == 400
        and f"{key}.0.full_name: Input should be a valid string" in (response.json["error"])
    )


@pytest.mark.parametrize("levels", [65, 2000, 200_000])
def test_deep_nesting_is_400_naming_the_limit(client, redis_conn, levels) -> None:
    payload = labeled("archon:plan-opus")
    raw = encode(payload)[:-1] + b', "extra": ' + b"[" * levels + b"]" * levels + b"}"
    response = client.post("/webhook", data=raw, headers=delivery_headers("issues", raw))
    assert response.status_code == 400 and "nested deeper than 64" in response.json["error"]
    assert queued(redis_conn) == []


def test_nesting_within_the_limit_is_fine(client, redis_conn) -> None:
    payload = labeled("archon:plan-opus")
    raw = encode(payload)[:-1] + b', "extra": ' + b"[" * 60 + b"]" * 60 + b"}"
    assert client.post("/webhook", data=raw, headers=delivery_headers("issues", raw)).status_code == 202


@pytest.mark.parametrize("delivery", ["../x", "a b", "é", "x" * 101, "a.b"])
def test_malformed_delivery_id_is_400(client, redis_conn, delivery) -> None:
    response = post(client, "issues", labeled("archon:plan-opus"), delivery=delivery)
    assert response.status_code == 400 and "X-GitHub-Delivery" in response.json["error"]
    assert queued(redis_conn) == []


HANDLED = {
    "issues.labeled",
    "issue_comment.created",
    "installation.created",
    "installation_repositories.added",
}


@pytest.mark.parametrize(
    "name", sorted(p.stem for p in WEBHOOKS.glob("*.json") if ".".join(p.stem.split(".")[:2]) in HANDLED)
)
def test_every_github_example_of_a_handled_event_routes(client, redis_conn, name) -> None:
    """GitHub's own examples validate against the payload models, and route as the bot intends."""
    payload = example(name)
    event = name.split(".")[0]
    if event == "issues":
        payload["label"]["name"] = "archon:plan-opus"
    elif event == "issue_comment":
        payload["comment"]["body"] = "/archon status"
        payload["comment"]["performed_via_github_app"] = None
        payload["comment"]["user"]["type"] = payload["sender"]["type"] = "User"
    response = post(client, event, payload)
    assert response.status_code == 202, response.json
    [job] = queued(redis_conn)
    task = TaskEnvelope.model_validate(job.args[0]).task
    if task.kind == "command":
        assert task.issue == payload["issue"]["number"] and task.repo == payload["repository"]["full_name"]
        assert task.is_pull_request == ("pull_request" in payload["issue"])
        assert task.issue_title == payload["issue"]["title"]


# --- /readyz and /metrics ------------------------------------------------------------------------------


def test_readyz_without_workers_is_503_with_the_reason(client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "no live worker on archon-triage, archon-runs" in response.json["reason"]
    assert response.json["workers"] == {"archon-triage": 0, "archon-runs": 0}


def test_readyz_when_redis_is_down_is_503(settings) -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    response = create_app(settings, dead).test_client().get("/readyz")
    assert response.status_code == 503 and "Redis unreachable" in response.json["reason"]
