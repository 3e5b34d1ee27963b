"""Tests for scripts/register_app.py (GitHub App manifest registration).

The script is not part of the `bot` package, so it is loaded from its path.
The end-to-end test runs the script's callback server against a tiny local
stand-in for GitHub's `POST /app-manifests/{code}/conversions`.
"""

from __future__ import annotations

import importlib.util
import json
import stat
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "register_app.py"

FAKE_PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIfake\n-----END RSA PRIVATE KEY-----\n"
WEBHOOK_SECRET = "e340154128314309424b7c8e90325147d99fdafa"
CLIENT_SECRET = "1234567890abcdef1234567890abcdef12345678"


def _load_script() -> ModuleType:
    """Import scripts/register_app.py under a private name (scripts/ is no package)."""
    spec = importlib.util.spec_from_file_location("register_app", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations via sys.modules
    spec.loader.exec_module(module)
    return module


ra = _load_script()


def conversion_body(slug: str = "archon-bot-test") -> dict[str, Any]:
    """A body shaped like GitHub's documented 201 response for a conversion."""
    return {
        "id": 1424,
        "slug": slug,
        "node_id": "MDM6QXBwNTk=",
        "owner": {"login": "octocat", "id": 1, "type": "User"},
        "name": "Archon Bot",
        "description": "Plans and implements issues.",
        "external_url": "https://github.com/your-org/archon-bot",
        "html_url": f"https://github.com/apps/{slug}",
        "created_at": "2024-01-10T14:59:50Z",
        "updated_at": "2024-01-10T14:59:50Z",
        "permissions": {
            "metadata": "read",
            "contents": "write",
            "issues": "write",
            "pull_requests": "write",
        },
        "events": ["issues", "issue_comment", "pull_request", "pull_request_review"],
        "client_id": "Iv1.8a61f9b3a7aba766",
        "client_secret": CLIENT_SECRET,
        "webhook_secret": WEBHOOK_SECRET,
        "pem": FAKE_PEM,
    }


# --- manifest -----------------------------------------------------------------


def test_manifest_has_required_permissions_and_events() -> None:
    manifest = ra.build_manifest(
        ra.load_manifest(ROOT / "app.yml"),
        "https://bot.example.com/webhook",
        ra.redirect_url_for(8765),
    )
    assert manifest["name"] == "Archon Bot"
    assert manifest["url"] and manifest["description"]
    assert manifest["public"] is False
    assert manifest["hook_attributes"] == {
        "url": "https://bot.example.com/webhook",
        "active": True,
    }
    assert manifest["redirect_url"] == "http://localhost:8765/callback"
    assert manifest["default_permissions"] == {
        "issues": "write",
        "pull_requests": "write",
        "contents": "write",
        "checks": "write",
        "metadata": "read",
    }
    events = manifest["default_events"]
    assert set(events) == {"issues", "issue_comment", "pull_request_review", "pull_request_review_comment"}
    assert "installation" not in events
    assert "installation_repositories" not in events
    json.dumps(manifest)  # must be JSON-serialisable for the form field


def test_manifest_subscribes_to_exactly_the_events_the_bot_handles() -> None:
    """An event the bot ignores would still cost a delivery (and a signature check) every time."""
    from bot.events import _HANDLERS

    automatic = {"installation", "installation_repositories"}  # GitHub sends these to every app
    handled = {event for event, _action in _HANDLERS} - automatic
    assert set(ra.load_manifest(ROOT / "app.yml")["default_events"]) == handled
    assert {event for event, _action in _HANDLERS} >= automatic


def test_build_manifest_leaves_template_untouched() -> None:
    template = {"name": "x", "hook_attributes": {"url": "https://placeholder"}}
    manifest = ra.build_manifest(template, "https://real/webhook", "http://localhost:1/callback")
    assert template == {"name": "x", "hook_attributes": {"url": "https://placeholder"}}
    assert manifest["hook_attributes"] == {"url": "https://real/webhook", "active": True}


def test_form_url_for_user_org_and_ghes() -> None:
    assert ra.build_form_url("https://github.com", "abc") == "https://github.com/settings/apps/new?state=abc"
    assert (
        ra.build_form_url("https://github.com/", "abc", org="my-org")
        == "https://github.com/organizations/my-org/settings/apps/new?state=abc"
    )
    assert (
        ra.build_form_url("https://ghe.example.com", "a b")
        == "https://ghe.example.com/settings/apps/new?state=a+b"
    )


def test_api_url_defaults() -> None:
    assert ra.resolve_api_url("https://github.com", None) == "https://api.github.com"
    assert ra.resolve_api_url("https://ghe.example.com", None) == "https://ghe.example.com/api/v3"
    assert ra.resolve_api_url("https://ghe.example.com", "https://x/api/v3/") == "https://x/api/v3"


def test_form_page_auto_submits_escaped_manifest() -> None:
    manifest = {"name": "It's <Archon>", "url": "https://x"}
    page = ra.render_form_page("https://github.com/settings/apps/new?state=s&x=1", manifest)
    assert "method='post'" in page
    assert "action='https://github.com/settings/apps/new?state=s&amp;x=1'" in page
    assert "name='manifest'" in page
    assert "<Archon>" not in page and "&lt;Archon&gt;" in page
    assert ".submit()" in page


# --- state --------------------------------------------------------------------


def test_state_match_passes() -> None:
    state = ra.new_state()
    ra.check_state(state, state)
    assert ra.new_state() != state


@pytest.mark.parametrize("received", ["other", "", None])
def test_state_mismatch_rejected(received: str | None) -> None:
    with pytest.raises(ra.StateMismatchError, match="does not match"):
        ra.check_state("expected-state", received)


def test_callback_with_wrong_state_never_calls_github(tmp_path: Path) -> None:
    config = make_config(tmp_path, api_url="http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(ra.StateMismatchError):
        ra.complete_registration(config, {"code": ["abc"], "state": ["forged"]})
    assert not (tmp_path / ".env").exists()


# --- conversion ---------------------------------------------------------------


def test_parse_conversion_keeps_secrets_out_of_repr() -> None:
    app = ra.parse_conversion(conversion_body())
    assert (app.id, app.slug) == (1424, "archon-bot-test")
    assert app.pem == FAKE_PEM and app.webhook_secret == WEBHOOK_SECRET
    text = repr(app)
    assert FAKE_PEM not in text and WEBHOOK_SECRET not in text and CLIENT_SECRET not in text


def test_parse_conversion_rejects_incomplete_answer() -> None:
    body = conversion_body()
    del body["pem"]
    with pytest.raises(ra.RegistrationError, match="pem"):
        ra.parse_conversion(body)
    with pytest.raises(ra.RegistrationError):
        ra.parse_conversion(["not", "an", "object"])


# --- env file -----------------------------------------------------------------


def test_update_env_preserves_unrelated_lines_and_replaces_in_place() -> None:
    text = (
        "# Archon Bot settings\n"
        "REDIS_URL=redis://localhost:6379/0\n"
        "GITHUB_APP_ID=1\n"
        "\n"
        "export GITHUB_WEBHOOK_SECRET=old\n"
        "OPENAI_API_KEY=sk-keep-me\n"
    )
    updated = ra.update_env_text(
        text,
        {"GITHUB_APP_ID": "1424", "GITHUB_WEBHOOK_SECRET": "new", "GITHUB_API_URL": "https://a"},
    )
    assert updated.splitlines() == [
        "# Archon Bot settings",
        "REDIS_URL=redis://localhost:6379/0",
        "GITHUB_APP_ID=1424",
        "",
        "export GITHUB_WEBHOOK_SECRET=new",
        "OPENAI_API_KEY=sk-keep-me",
        "GITHUB_API_URL=https://a",
    ]
    assert updated.endswith("\n")


def test_update_env_quotes_values_that_need_it() -> None:
    updated = ra.update_env_text("", {"GITHUB_PRIVATE_KEY_PATH": '/my keys/a"b.pem'})
    assert updated == 'GITHUB_PRIVATE_KEY_PATH="/my keys/a\\"b.pem"\n'


def test_update_env_does_not_touch_similar_keys() -> None:
    text = "GITHUB_APP_ID_OLD=7\n# GITHUB_APP_ID=commented\n"
    updated = ra.update_env_text(text, {"GITHUB_APP_ID": "9"})
    assert updated == "GITHUB_APP_ID_OLD=7\n# GITHUB_APP_ID=commented\nGITHUB_APP_ID=9\n"


def test_inline_private_key_is_reported_as_conflict() -> None:
    text = 'GITHUB_PRIVATE_KEY="-----BEGIN..."\nGITHUB_PRIVATE_KEY_PATH=k.pem\n'
    assert ra.env_conflicts(text) == ["GITHUB_PRIVATE_KEY"]
    assert ra.env_conflicts("GITHUB_PRIVATE_KEY_PATH=k.pem\n") == []


def test_save_credentials_writes_pem_0600_and_env(tmp_path: Path) -> None:
    env_path = tmp_path / ".env"
    env_path.write_text("LOG_LEVEL=debug\nGITHUB_APP_ID=1\n", encoding="utf-8")
    stale_pem = tmp_path / ra.pem_filename("archon-bot-test")
    stale_pem.write_text("old key", encoding="utf-8")
    stale_pem.chmod(0o644)  # an existing world-readable key must be tightened

    app = ra.parse_conversion(conversion_body())
    pem_path = ra.save_credentials(app, env_path, "https://github.com", "https://api.github.com")

    assert pem_path == tmp_path / "archon-bot.archon-bot-test.private-key.pem"
    assert pem_path.read_text(encoding="utf-8") == FAKE_PEM
    assert stat.S_IMODE(pem_path.stat().st_mode) == 0o600
    assert read_env(env_path) == {
        "LOG_LEVEL": "debug",
        "GITHUB_APP_ID": "1424",
        "GITHUB_PRIVATE_KEY_PATH": str(pem_path),
        "GITHUB_API_URL": "https://api.github.com",
        "GITHUB_GIT_URL": "https://github.com",
        "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    assert "client" not in env_path.read_text(encoding="utf-8").lower()


def test_new_env_file_is_owner_only(tmp_path: Path) -> None:
    env_path = tmp_path / ".env"
    ra.write_env_file(env_path, {"GITHUB_WEBHOOK_SECRET": "s"})
    assert stat.S_IMODE(env_path.stat().st_mode) == 0o600


def test_cli_requires_webhook_url() -> None:
    with pytest.raises(SystemExit):
        ra.parse_args([])
    with pytest.raises(SystemExit):
        ra.parse_args(["--webhook-url", "bot.example.com/webhook"])
    args = ra.parse_args(["--webhook-url", "https://bot.example.com/webhook", "--org", "acme"])
    assert (args.port, args.env_file, args.org) == (8765, Path(".env"), "acme")


# --- end to end: callback server + exchange against a local fake GitHub -------


class FakeConversions(BaseHTTPRequestHandler):
    """Answers POST /app-manifests/{code}/conversions like GitHub (201 or 404)."""

    server: FakeGitHubServer

    def do_POST(self) -> None:
        self.server.requests.append((self.path, dict(self.headers)))
        prefix, suffix = "/api/v3/app-manifests/", "/conversions"
        code = self.path.removeprefix(prefix).removesuffix(suffix)
        body = self.server.codes.pop(code, None) if self.path.startswith(prefix) else None
        status = 201 if body else 404
        payload = json.dumps(body or {"message": "Not Found"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep pytest output clean."""


class FakeGitHubServer(ThreadingHTTPServer):
    """Minimal GHES-like API root; codes are single-use, as on GitHub."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), FakeConversions)
        self.codes: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api/v3"


@pytest.fixture
def fake_github(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHubServer]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    server = FakeGitHubServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def make_config(tmp_path: Path, api_url: str, state: str = "s3cr3t-state") -> Any:
    manifest = ra.build_manifest(
        ra.load_manifest(ROOT / "app.yml"),
        "https://bot.example.com/webhook",
        ra.redirect_url_for(8765),
    )
    return ra.FlowConfig(
        manifest=manifest,
        form_url=ra.build_form_url("https://ghe.example.com", state),
        state=state,
        github_url="https://ghe.example.com",
        api_url=api_url,
        env_path=tmp_path / ".env",
    )


def test_end_to_end_callback_exchanges_code_and_writes_env(
    tmp_path: Path, fake_github: FakeGitHubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_github.codes["good-code"] = conversion_body()
    config = make_config(tmp_path, fake_github.api_url)
    server = ra.RegistrationServer(("127.0.0.1", 0), config)
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(ra.serve_until_registered(server)), daemon=True)
    thread.start()
    local = server.local_url.rstrip("/")
    http = requests.Session()
    http.trust_env = False
    try:
        start = http.get(f"{local}/", timeout=5)
        assert start.status_code == 200
        assert "https://ghe.example.com/settings/apps/new?state=s3cr3t-state" in start.text

        forged = http.get(f"{local}/callback", params={"code": "good-code", "state": "x"}, timeout=5)
        assert forged.status_code == 400 and "State mismatch" in forged.text
        assert fake_github.requests == [] and not config.env_path.exists()

        expired = http.get(
            f"{local}/callback", params={"code": "expired", "state": "s3cr3t-state"}, timeout=5
        )
        assert expired.status_code == 502 and "404" in expired.text
        assert not config.env_path.exists()

        done = http.get(f"{local}/callback", params={"code": "good-code", "state": "s3cr3t-state"}, timeout=5)
        assert done.status_code == 200
        assert "https://github.com/apps/archon-bot-test/installations/new" in done.text
        thread.join(timeout=5)
        assert not thread.is_alive()
    finally:
        server.server_close()

    path, headers = fake_github.requests[-1]
    assert path == "/api/v3/app-manifests/good-code/conversions"
    assert headers["Accept"] == "application/vnd.github+json"
    assert "Authorization" not in headers

    result = outcome[0]
    env = read_env(config.env_path)
    assert env["GITHUB_APP_ID"] == "1424"
    assert env["GITHUB_WEBHOOK_SECRET"] == WEBHOOK_SECRET
    assert env["GITHUB_API_URL"] == fake_github.api_url
    assert env["GITHUB_GIT_URL"] == "https://ghe.example.com"
    assert Path(env["GITHUB_PRIVATE_KEY_PATH"]) == result.pem_path
    assert stat.S_IMODE(result.pem_path.stat().st_mode) == 0o600
    for page in (start.text, forged.text, expired.text, done.text):
        assert WEBHOOK_SECRET not in page and "PRIVATE KEY" not in page

    ra._report(result)
    printed = capsys.readouterr()
    assert "https://github.com/apps/archon-bot-test/installations/new" in printed.out
    for secret in (WEBHOOK_SECRET, CLIENT_SECRET, "PRIVATE KEY"):
        assert secret not in printed.out + printed.err


def read_env(path: Path) -> dict[str, str]:
    """Tiny KEY=value reader for assertions (values here are never quoted)."""
    pairs = (
        line.split("=", 1)
        for line in path.read_text(encoding="utf-8").splitlines()
        if "=" in line and not line.startswith("#")
    )
    return {key.removeprefix("export "): value for key, value in pairs}
