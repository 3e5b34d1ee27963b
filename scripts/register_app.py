#!/usr/bin/env python3
"""Register Archon Bot as a GitHub App through GitHub's manifest flow.

Clicking through GitHub's "new app" form by hand is error-prone (one missed
permission and the bot fails at runtime), so this script sends the reviewed
manifest in ``app.yml`` instead and stores the resulting credentials in ``.env``:

1. a page on ``127.0.0.1:PORT`` auto-POSTs the manifest to GitHub;
2. GitHub creates the app and redirects the browser to ``/callback?code=&state=``;
3. the one-time code is exchanged (``POST /app-manifests/{code}/conversions``)
   for the app id, private key and webhook secret, which are written to disk.

Secrets are never printed. Only stdlib, requests and pyyaml are used so the
script runs before the bot itself is configured.
"""

from __future__ import annotations

import argparse
import copy
import hmac
import html
import json
import os
import re
import secrets
import sys
import webbrowser
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MANIFEST = ROOT / "app.yml"
DEFAULT_GITHUB_URL = "https://github.com"
DEFAULT_API_URL = "https://api.github.com"
DEFAULT_PORT = 8765
ENV_KEY_RE = re.compile(r"^(\s*(?:export\s+)?)([A-Za-z_][A-Za-z0-9_]*)\s*=")
SAFE_ENV_VALUE_RE = re.compile(r"[A-Za-z0-9_./:@+-]*")
# Inline key in the env file; the bot rejects it together with GITHUB_PRIVATE_KEY_PATH.
CONFLICTING_KEYS = frozenset({"GITHUB_PRIVATE_KEY"})


class RegistrationError(Exception):
    """A failure the operator must see; the message never contains secrets."""


class StateMismatchError(RegistrationError):
    """The callback's state is not ours: possible CSRF or a stale browser tab."""


@dataclass(frozen=True)
class AppConversion:
    """What GitHub returns for a manifest code; secrets are kept out of repr()."""

    id: int
    slug: str
    html_url: str
    client_id: str
    pem: str = field(repr=False)
    webhook_secret: str | None = field(repr=False)
    client_secret: str | None = field(repr=False)


@dataclass(frozen=True)
class Registration:
    """Outcome of a successful flow: where things were written, nothing secret."""

    app: AppConversion
    env_path: Path
    pem_path: Path

    @property
    def install_url(self) -> str:
        """GitHub's page for installing the app on accounts and repositories."""
        return f"{self.app.html_url.rstrip('/')}/installations/new"


@dataclass(frozen=True)
class FlowConfig:
    """Everything the local callback server needs, fixed before it starts."""

    manifest: dict[str, Any]
    form_url: str
    state: str
    github_url: str
    api_url: str
    env_path: Path


# --- pure helpers -----------------------------------------------------------


def load_manifest(path: Path = DEFAULT_MANIFEST) -> dict[str, Any]:
    """Read app.yml; it is the single reviewed source of permissions and events."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise RegistrationError(f"{path} is not a YAML mapping")
    return data


def build_manifest(template: dict[str, Any], webhook_url: str, redirect_url: str) -> dict[str, Any]:
    """Fill in the deployment-specific URLs without mutating the loaded template."""
    manifest = copy.deepcopy(template)
    hook = dict(manifest.get("hook_attributes") or {})
    hook["url"] = webhook_url
    hook.setdefault("active", True)
    manifest["hook_attributes"] = hook
    manifest["redirect_url"] = redirect_url
    return manifest


def build_form_url(github_url: str, state: str, org: str | None = None) -> str:
    """URL the manifest form POSTs to; an org path makes the org own the app."""
    base = github_url.rstrip("/")
    path = f"/organizations/{quote(org, safe='')}" if org else ""
    return f"{base}{path}/settings/apps/new?{urlencode({'state': state})}"


def redirect_url_for(port: int) -> str:
    """Callback GitHub redirects to; localhost so it works on any machine."""
    return f"http://localhost:{port}/callback"


def resolve_api_url(github_url: str, api_url: str | None) -> str:
    """Default the REST root so GHES users only need to pass --github-url."""
    if api_url:
        return api_url.rstrip("/")
    if github_url.rstrip("/") == DEFAULT_GITHUB_URL:
        return DEFAULT_API_URL
    return f"{github_url.rstrip('/')}/api/v3"


def new_state() -> str:
    """Unguessable state so a forged callback cannot make us store its app."""
    return secrets.token_urlsafe(32)


def check_state(expected: str, received: str | None) -> None:
    """Reject callbacks that this run did not start (constant-time compare)."""
    if not received or not hmac.compare_digest(expected.encode(), received.encode()):
        raise StateMismatchError(
            "The state returned by GitHub does not match this registration. "
            "Start again from the page this script printed."
        )


def render_form_page(form_url: str, manifest: dict[str, Any]) -> str:
    """HTML that POSTs the manifest to GitHub by itself (GitHub requires a POST)."""
    action = html.escape(form_url, quote=True)
    value = html.escape(json.dumps(manifest), quote=True)
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<title>Register Archon Bot</title></head><body>"
        f"<form id='manifest-form' method='post' action='{action}'>"
        f"<input type='hidden' name='manifest' value='{value}'>"
        "<p>Sending the Archon Bot manifest to GitHub&hellip;</p>"
        "<button type='submit'>Continue to GitHub</button></form>"
        "<script>document.getElementById('manifest-form').submit();</script>"
        "</body></html>"
    )


def render_message_page(title: str, message: str) -> str:
    """Minimal result page; the text is escaped because it may echo user input."""
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p></body></html>"
    )


def parse_conversion(data: Any) -> AppConversion:
    """Validate GitHub's conversion response so a bad answer fails loudly."""
    if not isinstance(data, dict):
        raise RegistrationError("GitHub's conversion response is not a JSON object")
    missing = [key for key in ("id", "slug", "pem", "html_url") if not data.get(key)]
    if missing:
        raise RegistrationError(f"GitHub's conversion response lacks: {', '.join(missing)}")
    return AppConversion(
        id=int(data["id"]),
        slug=str(data["slug"]),
        html_url=str(data["html_url"]),
        client_id=str(data.get("client_id") or ""),
        pem=str(data["pem"]),
        webhook_secret=data.get("webhook_secret") or None,
        client_secret=data.get("client_secret") or None,
    )


def format_env_value(value: str) -> str:
    """Quote only when needed, so simple values stay readable and diffable."""
    if SAFE_ENV_VALUE_RE.fullmatch(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def update_env_text(text: str, updates: dict[str, str]) -> str:
    """Replace keys in place and append new ones; every other line is kept as is."""
    lines = text.splitlines()
    seen: set[str] = set()
    for index, line in enumerate(lines):
        match = ENV_KEY_RE.match(line)
        if match and match.group(2) in updates:
            prefix, key = match.group(1), match.group(2)
            lines[index] = f"{prefix}{key}={format_env_value(updates[key])}"
            seen.add(key)
    lines += [f"{key}={format_env_value(value)}" for key, value in updates.items() if key not in seen]
    return "\n".join(lines) + "\n"


def env_conflicts(text: str) -> list[str]:
    """Keys that would clash with what we write (the bot refuses both key settings)."""
    keys = {m.group(2) for line in text.splitlines() if (m := ENV_KEY_RE.match(line))}
    return sorted(keys & CONFLICTING_KEYS)


def pem_filename(slug: str) -> str:
    """Name of the key file; the slug keeps keys of several apps apart."""
    safe_slug = re.sub(r"[^A-Za-z0-9_.-]", "-", slug)
    return f"archon-bot.{safe_slug}.private-key.pem"


def env_updates(app: AppConversion, pem_path: Path, github_url: str, api_url: str) -> dict[str, str]:
    """The settings the bot reads; the client secret is unused so not stored."""
    updates = {
        "GITHUB_APP_ID": str(app.id),
        "GITHUB_PRIVATE_KEY_PATH": str(pem_path),
        "GITHUB_API_URL": api_url.rstrip("/"),
        "GITHUB_GIT_URL": github_url.rstrip("/"),
    }
    if app.webhook_secret:
        updates["GITHUB_WEBHOOK_SECRET"] = app.webhook_secret
    return updates


# --- side effects -----------------------------------------------------------


def write_private(path: Path, content: str) -> None:
    """Write a file readable by the owner only, also when it already existed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(content)


def write_env_file(env_path: Path, updates: dict[str, str]) -> None:
    """Merge into .env; a new file is owner-only since it holds the webhook secret."""
    if env_path.exists():
        text = env_path.read_text(encoding="utf-8")
        env_path.write_text(update_env_text(text, updates), encoding="utf-8")
    else:
        write_private(env_path, update_env_text("", updates))


def save_credentials(app: AppConversion, env_path: Path, github_url: str, api_url: str) -> Path:
    """Store key first, then .env, so .env never points at a missing key."""
    pem_path = env_path.parent / pem_filename(app.slug)
    write_private(pem_path, app.pem)
    write_env_file(env_path, env_updates(app, pem_path, github_url, api_url))
    return pem_path


def exchange_code(api_url: str, code: str, timeout: float = 30.0) -> AppConversion:
    """Trade the one-time code for the app credentials (no auth: the code is it)."""
    url = f"{api_url.rstrip('/')}/app-manifests/{quote(code, safe='')}/conversions"
    headers = {"Accept": "application/vnd.github+json", "User-Agent": "archon-bot-register"}
    try:
        response = requests.post(url, headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        raise RegistrationError(f"Could not reach {api_url}: {exc}") from exc
    if not response.ok:
        raise RegistrationError(
            f"GitHub answered {response.status_code} to the code exchange: {_error_message(response)}"
        )
    try:
        return parse_conversion(response.json())
    except ValueError as exc:
        raise RegistrationError("GitHub's conversion response is not JSON") from exc


def _error_message(response: requests.Response) -> str:
    """GitHub's own error text, e.g. an expired code (valid for one hour)."""
    try:
        return str(response.json().get("message", response.reason))
    except (ValueError, AttributeError):
        return str(response.reason)


def complete_registration(config: FlowConfig, query: dict[str, list[str]]) -> Registration:
    """Handle /callback: verify state, exchange the code, persist credentials."""
    check_state(config.state, _first(query, "state"))
    code = _first(query, "code")
    if not code:
        raise RegistrationError("GitHub's redirect carried no code.")
    app = exchange_code(config.api_url, code)
    try:
        pem_path = save_credentials(app, config.env_path, config.github_url, config.api_url)
    except OSError as exc:
        raise RegistrationError(
            f"App created at {app.html_url} but its credentials could not be saved ({exc}). "
            "Generate a new private key and webhook secret in the app settings."
        ) from exc
    return Registration(app=app, env_path=config.env_path, pem_path=pem_path)


def _first(query: dict[str, list[str]], key: str) -> str | None:
    """First value of a query parameter, as parse_qs returns lists."""
    values = query.get(key)
    return values[0] if values else None


# --- local HTTP server --------------------------------------------------------


class RegistrationServer(HTTPServer):
    """Local server that holds the flow config and, once done, the result."""

    def __init__(self, address: tuple[str, int], config: FlowConfig) -> None:
        super().__init__(address, CallbackHandler)
        self.config = config
        self.result: Registration | None = None

    @property
    def local_url(self) -> str:
        """Start page URL to open in the browser."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


class CallbackHandler(BaseHTTPRequestHandler):
    """Serves the auto-submitting form on / and finishes the flow on /callback."""

    server: RegistrationServer

    def do_GET(self) -> None:
        """Route the two pages this flow needs; everything else is a 404."""
        parts = urlsplit(self.path)
        if parts.path == "/":
            config = self.server.config
            self._send(200, render_form_page(config.form_url, config.manifest))
        elif parts.path == "/callback":
            self._callback(parse_qs(parts.query))
        else:
            self._send(404, render_message_page("Not found", "Nothing here."))

    def _callback(self, query: dict[str, list[str]]) -> None:
        """Finish the flow; errors become a page and the server keeps waiting."""
        try:
            result = complete_registration(self.server.config, query)
        except StateMismatchError as exc:
            self._send(400, render_message_page("State mismatch", str(exc)))
            return
        except RegistrationError as exc:
            self._send(502, render_message_page("Registration failed", str(exc)))
            return
        self.server.result = result
        message = (
            f"App '{result.app.slug}' created; credentials written to {result.env_path}. "
            f"Install it on your repositories: {result.install_url}"
        )
        self._send(200, render_message_page("Archon Bot registered", message))

    def _send(self, status: int, body: str) -> None:
        """Send HTML that is never cached and leaks no code via Referer."""
        payload = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence access logs: the callback query string carries the code."""


def serve_until_registered(server: RegistrationServer) -> Registration:
    """Answer requests one by one until a callback succeeded."""
    while server.result is None:
        server.handle_request()
    return server.result


# --- command line -------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; see docs/github-app.md for examples."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--webhook-url",
        required=True,
        type=_http_url,
        help="public URL of the bot's webhook, e.g. https://bot.example.com/webhook",
    )
    parser.add_argument("--org", help="register the app under this organization")
    parser.add_argument(
        "--github-url",
        default=DEFAULT_GITHUB_URL,
        type=_http_url,
        help="GitHub web URL; for GHES https://HOST (default: %(default)s)",
    )
    parser.add_argument(
        "--api-url",
        type=_http_url,
        help="REST API root (default: https://api.github.com, "
        "or GITHUB_URL/api/v3 when --github-url is not github.com)",
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        default=Path(".env"),
        help="env file to create or update (default: %(default)s)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="local port for the callback server (default: %(default)s)",
    )
    parser.add_argument(
        "--manifest",
        type=Path,
        default=DEFAULT_MANIFEST,
        help="manifest template (default: app.yml of this repository)",
    )
    parser.add_argument(
        "--no-browser",
        action="store_true",
        help="only print the URL to open instead of launching a browser",
    )
    return parser.parse_args(argv)


def _http_url(value: str) -> str:
    """argparse type: reject typos like a missing scheme before GitHub does."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {value!r}")
    return value.rstrip("/") if parts.path in ("", "/") else value


def build_config(args: argparse.Namespace) -> FlowConfig:
    """Turn options into the immutable flow config (new random state each run)."""
    state = new_state()
    manifest = build_manifest(load_manifest(args.manifest), args.webhook_url, redirect_url_for(args.port))
    return FlowConfig(
        manifest=manifest,
        form_url=build_form_url(args.github_url, state, args.org),
        state=state,
        github_url=args.github_url.rstrip("/"),
        api_url=resolve_api_url(args.github_url, args.api_url),
        env_path=args.env_file,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the flow end to end; exit code 0 once credentials are on disk."""
    args = parse_args(argv)
    try:
        config = build_config(args)
        server = RegistrationServer(("127.0.0.1", args.port), config)
    except (RegistrationError, OSError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Open {server.local_url} to register the app on {config.github_url}.")
    if not args.no_browser:
        webbrowser.open(server.local_url)
    try:
        with server:
            result = serve_until_registered(server)
    except KeyboardInterrupt:
        print("\nAborted; nothing was written.", file=sys.stderr)
        return 130
    _report(result)
    return 0


def _report(result: Registration) -> None:
    """Tell the operator what happened and what to do next, without secrets."""
    print(f"Registered {result.app.html_url} (app id {result.app.id}).")
    print(f"Private key written to {result.pem_path} (mode 0600).")
    print(f"Settings written to {result.env_path}.")
    if not result.app.webhook_secret:
        print(
            "warning: GitHub returned no webhook secret; set one in the app settings "
            "and put it in GITHUB_WEBHOOK_SECRET.",
            file=sys.stderr,
        )
    conflicts = env_conflicts(result.env_path.read_text(encoding="utf-8"))
    if conflicts:
        print(
            f"warning: remove {', '.join(conflicts)} from {result.env_path}: "
            "it would clash with GITHUB_PRIVATE_KEY_PATH.",
            file=sys.stderr,
        )
    print(f"Install it on your repositories: {result.install_url}")


if __name__ == "__main__":
    sys.exit(main())
