"""Secrets never reach logs, transcripts, run records or GitHub, and a change adding one is found.

Credential-shaped test values are assembled at run time, so this file itself holds no literal token for
a secret scanner (GitHub's push protection included) to trip on.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from pydantic import SecretStr

from bot import secrets
from bot.agent.transcript import Transcript, read_transcript
from bot.fakes.github import FakeGitHub
from bot.github.forge import RepoForge
from bot.runconfig import RunConfig
from bot.runs import RunRecord, RunStore
from bot.secrets import (
    REDACTED,
    Redactor,
    SecretInDiffError,
    default_redactor,
    describe_error,
    ensure_no_secrets,
    install,
    install_log_redaction,
    register_secret,
    remove_log_redaction,
    scan_diff,
)
from bot.settings import Settings, load_settings
from tests.support import INSTALLATION_ID, REPO, app_key
from tests.test_fake_github import bare_repo_with_branch, client

TOKEN = "ghs_" + "Zq7Rk2Lm9Xw4" * 3  # the shape of an installation token (36 characters after ghs_)
DOTENV_KEY = "sk-ant-api03-" + "dotenvOnly9_" * 8
ODD = "p@ss/w+rd=&?" + "é" * 4 + " 42"  # characters every encoding treats differently


@pytest.fixture
def redactor() -> Iterator[Redactor]:
    """A process default knowing TOKEN, restored afterwards so other tests see the process as it was."""
    previous = secrets._default
    installed = Redactor([TOKEN, ODD], use_registry=False)
    install(installed)
    yield installed
    install(previous)


@pytest.fixture
def log_redaction(redactor: Redactor) -> Iterator[None]:
    install_log_redaction()
    yield
    remove_log_redaction()


def clean_env(monkeypatch: pytest.MonkeyPatch, env_file: Path) -> None:
    """Only the `.env` file configures: variables of the test process must not be what is redacted."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("ARCHON_ENV_FILE", str(env_file))


def secret_fields() -> list[str]:
    return [name for name, field in Settings.model_fields.items() if SecretStr in _types(field.annotation)]


def _types(annotation: object) -> tuple[object, ...]:
    return (annotation, *getattr(annotation, "__args__", ()))


# --- Where secrets come from. ---------------------------------------------------------------------


def test_every_secret_field_set_only_in_dotenv_is_redacted(tmp_path, monkeypatch) -> None:
    fields = secret_fields()
    assert {"anthropic_api_key", "github_webhook_secret", "openrouter_api_key"} <= set(fields)
    values = {name: f"{name}-{DOTENV_KEY}" for name in fields}
    env_file = tmp_path / "deploy.env"
    env_file.write_text("".join(f"{name.upper()}={value}\n" for name, value in values.items()))
    clean_env(monkeypatch, env_file)
    settings = load_settings()
    assert not any(value in os.environ.values() for value in values.values())  # only the file has them
    redactor = Redactor.from_settings(settings, environ={})
    text = redactor.redact(" | ".join(values.values()))
    assert text == " | ".join([REDACTED] * len(values))


def test_the_private_key_files_lines_are_redacted(tmp_path, monkeypatch) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text(app_key()[0])
    env_file = tmp_path / ".env"
    env_file.write_text(f"GITHUB_PRIVATE_KEY_PATH={key_file}\n")
    clean_env(monkeypatch, env_file)
    redactor = Redactor.from_settings(load_settings(), environ={})
    lines = [line for line in key_file.read_text().splitlines() if not line.startswith("-----")]
    assert len(lines) > 5
    for line in lines:
        assert line not in redactor.redact(f"stderr: {line} at offset 3")
    assert redactor.redact("".join(lines)) == REDACTED  # the body unwrapped, as in a one-line variable
    assert "-----BEGIN PRIVATE KEY-----" in redactor.redact("-----BEGIN PRIVATE KEY-----")  # public armour


def test_an_inline_key_with_escaped_newlines_is_redacted_line_by_line() -> None:
    pem = app_key()[0]
    settings = Settings(_env_file=None, github_private_key=pem.replace("\n", "\\n"))
    redactor = Redactor.from_settings(settings, environ={})
    middle = pem.splitlines()[3]
    assert redactor.redact(middle) == REDACTED


def test_url_passwords_and_secret_looking_environment_variables_are_redacted() -> None:
    settings = Settings(_env_file=None, redis_url="redis://:hunter2hunter2@cache:6379/0")
    redactor = Redactor.from_settings(
        settings, environ={"DEPLOY_TOKEN": "deploy-token-value", "HOME": "/home/u"}
    )
    assert redactor.redact("redis password hunter2hunter2, deploy-token-value") == (
        f"redis password {REDACTED}, {REDACTED}"
    )
    assert redactor.redact("/home/user") == "/home/user"


def test_tokens_registered_after_a_redactor_was_built_are_redacted_by_it() -> None:
    redactor = Redactor()
    minted = "ghs_" + "Mint3dLater0" * 3
    assert redactor.redact(minted) == minted
    assert register_secret(minted) == minted
    assert redactor.redact(f"push with {minted}") == f"push with {REDACTED}"
    assert Redactor(use_registry=False).redact(minted) == minted


# --- Encodings. -----------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", range(6))
@pytest.mark.parametrize("suffix", range(4))
@pytest.mark.parametrize("secret", [TOKEN, "s3cr3t>>>???~~~>>>???"])  # the second encodes to + and /
def test_base64_inside_a_longer_blob_is_redacted_at_every_alignment(
    prefix: int, suffix: int, secret: str
) -> None:
    redactor = Redactor([secret], use_registry=False)
    raw = os.urandom(prefix) + secret.encode() + os.urandom(suffix)
    for blob in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
        redacted = redactor.redact(f"data: {blob}")
        assert REDACTED in redacted
        assert secret not in blob  # what is found is the encoding, not the value


def test_reversed_hex_url_encoded_json_and_git_header_forms_are_redacted() -> None:
    redactor = Redactor([TOKEN, ODD], use_registry=False)
    header = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    forms = [
        TOKEN[::-1],
        TOKEN.encode().hex(),
        TOKEN.encode().hex().upper(),
        ODD.encode().hex(),
        quote(ODD, safe=""),
        quote(ODD),
        json.dumps(ODD)[1:-1],
        f"AUTHORIZATION: basic {header}",
        base64.b64encode(ODD.encode()).decode(),
    ]
    for form in forms:
        assert redactor.redact(f"<{form}>") in (f"<{REDACTED}>", f"<AUTHORIZATION: basic {REDACTED}>")


def test_each_line_of_a_value_with_escaped_newlines_is_a_secret() -> None:
    redactor = Redactor(["first-line-secret\\nsecond-line-secret"], use_registry=False)
    assert redactor.redact("got second-line-secret") == f"got {REDACTED}"


def test_longest_first_and_trivia_left_alone() -> None:
    inner = "abcdefgh-inner"
    redactor = Redactor([inner, f"outer-{inner}-outer", "short"], use_registry=False)
    assert redactor.redact(f"x outer-{inner}-outer y {inner}") == f"x {REDACTED} y {REDACTED}"
    assert redactor.redact("a short note") == "a short note"


def test_redact_obj_walks_keys_values_and_lists_without_touching_the_original() -> None:
    redactor = Redactor([TOKEN], use_registry=False)
    record = {"outputs": [{"text": f"token {TOKEN}"}, 3, None], TOKEN: True}
    assert redactor.redact_obj(record) == {
        "outputs": [{"text": f"token {REDACTED}"}, 3, None],
        REDACTED: True,
    }
    assert record["outputs"][0]["text"] == f"token {TOKEN}"


def test_error_text_is_redacted_before_it_is_cut(redactor: Redactor) -> None:
    error = RuntimeError("x" * 270 + f" {TOKEN} failed")  # the token straddles the 300-character cut
    text = describe_error(error)
    assert len(text) <= 300 and TOKEN[:8] not in text
    assert describe_error(None) == "unknown error"


# --- Where secrets would go. ----------------------------------------------------------------------


def test_the_transcript_file_never_holds_a_secret(redactor: Redactor, tmp_path) -> None:
    path = tmp_path / "t" / "plan.jsonl"
    transcript = Transcript(path)
    header = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    transcript.write("assistant", message={"content": [f"I will push with {TOKEN}", header]})
    transcript.write("tool", config=RunConfig(repo=TOKEN, issue=1, workflow="w", models={}))
    transcript.close()
    text = path.read_text()
    assert TOKEN not in text and header not in text and TOKEN[::-1] not in text
    assert read_transcript(path)[0]["message"]["content"] == [f"I will push with {REDACTED}", REDACTED]


def test_the_saved_run_record_never_holds_a_secret(redactor: Redactor, redis_conn: redis.Redis) -> None:
    config = RunConfig(repo=REPO, issue=1, workflow="fix-issue", models={})
    record = RunRecord(
        run_id="rsecret",
        job_id="j",
        installation_id=1,
        config=config,
        requested_by="a",
        trigger="label",
        error=f"git push failed: https://x-access-token:{TOKEN}@github.com",
    )
    record.feedback = quote(ODD)
    RunStore(redis_conn).save(record)
    raw = redis_conn.get("archon:run:rsecret").decode()
    assert TOKEN not in raw and quote(ODD) not in raw
    loaded = RunStore(redis_conn).load("rsecret")
    assert (
        loaded is not None
        and loaded.error == f"git push failed: https://x-access-token:{REDACTED}@github.com"
    )
    assert record.error and TOKEN in record.error  # the caller's record is not rewritten


def test_everything_written_to_github_is_redacted_first(
    redactor: Redactor, github: FakeGitHub, tmp_path
) -> None:
    github.add_repo(REPO, installation=INSTALLATION_ID, git_dir=bare_repo_with_branch(tmp_path))
    github.add_issue(REPO, 1)
    forge = RepoForge(client(github), REPO)
    posted = forge.upsert_comment(1, "status", "r1", f"failed: {TOKEN}")
    forge.edit_comment(1, posted.id, "status", "r1", f"still failed: {TOKEN[::-1]}")
    forge.upsert_comment(1, "reply", "r2", f"see {quote(ODD, safe='')}")
    forge.open_draft_pull("fix", "main", f"Fix {TOKEN}", f"body {TOKEN}", key="r1")
    inline = {"path": "app.py", "line": 2, "side": "RIGHT", "body": f"leaks {TOKEN}"}
    forge.post_review(2, f"review {TOKEN}", key="r1", comments=[inline])
    sent = json.dumps([github.comments(REPO, 1), github.pulls(REPO), github.reviews(REPO, 2)])
    assert TOKEN not in sent and TOKEN[::-1] not in sent and quote(ODD, safe="") not in sent
    assert sent.count(REDACTED) == 6
    assert "archon-bot:reply:r2" in sent  # markers survive, so upserts still find their comments


def test_the_web_factory_installs_the_deployments_redactor(settings: Settings, redis_conn) -> None:
    from bot.web import create_app

    previous = secrets._default
    try:
        create_app(settings, connection=redis_conn)
        assert default_redactor().redact(settings.require_webhook_secret().decode()) == REDACTED
    finally:
        install(previous)
        remove_log_redaction()


def test_the_cli_installs_a_redactor_from_dotenv_before_any_command(tmp_path, monkeypatch) -> None:
    from bot import cli

    env_file = tmp_path / ".env"
    env_file.write_text(f"MOONSHOT_API_KEY={DOTENV_KEY}\n")
    clean_env(monkeypatch, env_file)
    previous = secrets._default
    try:
        cli._redact_secrets()
        assert default_redactor().redact(DOTENV_KEY) == REDACTED
    finally:
        install(previous)
        remove_log_redaction()


# --- Logs. ----------------------------------------------------------------------------------------


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_log_records_are_redacted_whatever_handler_sees_them(log_redaction, caplog) -> None:
    logger = logging.getLogger("archon.test.secrets")
    handler = Lines()  # added after the installation, as RQ adds its handler when a worker starts
    logger.addHandler(handler)
    try:
        logger.warning("pushing with %s", TOKEN)
        try:
            raise RuntimeError(f"boom {TOKEN[::-1]}")
        except RuntimeError:
            logger.exception("failed for %(who)s", {"who": quote(ODD)})
    finally:
        logger.removeHandler(handler)
    text = "\n".join(handler.lines) + caplog.text
    assert TOKEN not in text and TOKEN[::-1] not in text and quote(ODD) not in text
    assert "pushing with [REDACTED]" in text and "RuntimeError: boom [REDACTED]" in text


@pytest.mark.parametrize("name", ["", "gunicorn.error", "gunicorn.access"])
def test_existing_handlers_redact_records_made_without_the_factory(redactor: Redactor, name: str) -> None:
    logger = logging.getLogger(name)
    handler = Lines()
    logger.addHandler(handler)
    install_log_redaction()
    try:
        handler.handle(logging.makeLogRecord({"msg": "token %s", "args": (TOKEN,)}))
    finally:
        remove_log_redaction()
        logger.removeHandler(handler)
    assert handler.lines == [f"token {REDACTED}"]


# --- Diffs. ---------------------------------------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def diff_of(tmp_path: Path, before: dict[str, str], after: dict[str, str]) -> str:
    """A real `git diff` between two versions of some files."""
    repo = tmp_path / "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "-q")
    for name, text in before.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")
    for name, text in after.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    return git(repo, "diff", "--cached", "--no-color")


SHAPES = {
    "private key": "-----BEGIN RSA " + "PRIVATE KEY-----",
    "GitHub token": "ghp_" + "a1B2c3D4e5F6" * 3,
    "GitHub fine-grained token": "github_pat_" + "11ABCDEFG" + "0" * 13 + "_" + "aB3" * 19 + "xy",
    "Anthropic API key": "sk-ant-api03-" + "Ab3_-" * 18 + "AA",
    "API key (sk-)": "sk-proj-" + "T3BlbkFJ" * 6,
    "AWS access key id": "AKIA" + "Z7Q4" * 4,
    "Slack token": "xoxb-" + "123456789012-1234567890123-" + "AbCdEfGh" * 3,
}


def test_scan_diff_finds_each_shape_and_known_secret_in_added_lines_only(tmp_path) -> None:
    known = "internal-deploy-passphrase"
    before = {"config.py": f"OLD = '{SHAPES['GitHub token']}'\nKEEP = '{SHAPES['AWS access key id']}'\n"}
    added = [f"{kind.split()[0].upper()} = '{value}'" for kind, value in SHAPES.items()]
    added.append(f"B64 = '{base64.b64encode(b'xy' + known.encode()).decode()}'")
    after = {
        "config.py": "KEEP = '" + SHAPES["AWS access key id"] + "'\n" + "\n".join(added) + "\n",
        "notes.md": f"reversed: {known[::-1]}\n",
    }
    findings = scan_diff(diff_of(tmp_path, before, after), Redactor([known], use_registry=False))
    got = {(f.path, f.line, f.kind) for f in findings}
    expected = {("config.py", n, kind) for n, kind in enumerate(SHAPES, start=2)}
    expected |= {("config.py", len(SHAPES) + 2, "known secret"), ("notes.md", 1, "known secret")}
    assert got == expected  # the removed token and the unchanged context line are not reported
    shown = " ".join(str(f) for f in findings)
    assert "config.py:2 (private key)" in shown
    assert not any(value in shown for value in SHAPES.values()) and known not in shown


def test_ordinary_code_and_hashes_are_not_flagged(tmp_path) -> None:
    code = "\n".join(
        [
            "import hashlib, uuid",
            "DIGEST = '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'",
            "COMMIT = 'a4fb2e2c1d7e9b3a5f60718293a4b5c6d7e8f901'",
            f"ID = '{uuid.UUID(int=0x1234)}'",
            f"BLOB = '{base64.b64encode(bytes(range(48))).decode()}'",
            "from sklearn import tree  # sk-learn, task-runner-abcdefghijklmnopqrstuvwxyz0123456789",
            "PREFIX = 'ghp_'  # GitHub tokens start with ghp_ and sk- prefixes are checked",
            "KEY_NAME = 'ANTHROPIC_API_KEY'  # the variable's name, not its value",
            "akia = 'AKIAshort'",
            "CSS = 'sk-header-navigation-dropdown-menu-item-active'",
            "-----BEGIN PUBLIC KEY-----",
        ]
    )
    assert scan_diff(diff_of(tmp_path, {"a.py": "x = 1\n"}, {"a.py": code + "\n"}), Redactor()) == []


def test_ensure_no_secrets_refuses_with_where_not_what(tmp_path) -> None:
    diff = diff_of(tmp_path, {"a.py": "x = 1\n"}, {"a.py": f"x = 1\nTOKEN = '{TOKEN}'\n"})
    with pytest.raises(SecretInDiffError) as raised:
        ensure_no_secrets(diff, Redactor([TOKEN], use_registry=False))
    assert "a.py:2 (known secret)" in str(raised.value) and TOKEN not in str(raised.value)
    assert ensure_no_secrets(diff_of(tmp_path / "b", {"a.py": "x\n"}, {"a.py": "y\n"}), Redactor()) is None


def test_a_diff_unidiff_cannot_parse_is_still_scanned() -> None:
    broken = f"--- a/x\n+++ b/x\n@@ -1,2 +1,9 @@\n a\n+{SHAPES['GitHub token']}\n"
    assert [(f.path, f.kind) for f in scan_diff(broken, Redactor())] == [("(unparsed diff)", "GitHub token")]
    headerless = f"+{SHAPES['Slack token']}\n"
    assert [f.kind for f in scan_diff(headerless, Redactor())] == ["Slack token"]


def leaky_job(token: str) -> None:
    """An RQ job whose exception text carries a secret (as a careless library's might)."""
    raise RuntimeError(f"request failed with Authorization: token {token}")


def test_a_failed_jobs_traceback_is_stored_redacted(redis_conn) -> None:
    from rq import Queue

    from bot.secrets import register_secret
    from bot.worker import RedactingWorker

    token = register_secret("ghs_" + "R" * 36)
    queue = Queue("archon-test-failures", connection=redis_conn)
    job = queue.enqueue(leaky_job, token)
    RedactingWorker([queue], connection=redis_conn).work(burst=True)
    job.refresh()
    assert job.is_failed
    stored = job.latest_result().exc_string
    assert "request failed" in stored and token not in stored
