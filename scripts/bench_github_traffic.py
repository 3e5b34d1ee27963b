"""GitHub traffic (issue 13, item 2): calls and writes per run of the default workflow on the sample
repository, and the bot's own wall time per run with 1 s write pacing (GITHUB_WRITE_INTERVAL=1.0, as
`.env.example` recommends) against none. Scripted models, the fake GitHub, a private Redis, real RQ jobs
run in-process (`SimpleWorker`, burst), as `tests/test_triage.py` does. The sides interleave run by run and
figures are medians, since other work loads the same CPUs.

    .venv/bin/python scripts/bench_github_traffic.py [--quick]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchkit import Figure, median

NAME = "github"
MAX_CALLS, MAX_WRITES, MAX_PACED_S = 20, 12, 15.0


def _environment(github, redis_url: str, base: Path, remotes: Path) -> dict[str, str]:
    from bot.sample_repo import write_models_file
    from tests.support import APP_ID, SECRET, app_key

    return {
        "GITHUB_APP_ID": str(APP_ID),
        "GITHUB_PRIVATE_KEY": app_key()[0],
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "GITHUB_API_URL": github.api_url,
        "GITHUB_GIT_URL": f"file://{remotes}",
        "REDIS_URL": redis_url,
        "ARCHON_DATA_DIR": str(base / "data"),
        "ARCHON_ENV_FILE": "",
        "ARCHON_MODELS_FILE": str(write_models_file(base / "models.yml")),
    }


def _one_run(github, redis_conn, redis_url: str, base: Path, write_interval: float) -> tuple[int, int, float]:
    """A fresh repository and issue, a labelled delivery, triage and the run worked through: (calls,
    writes, seconds from the delivery to the run's end)."""
    from bot.sample_repo import FILES, ISSUE_BODY, ISSUE_TITLE, create_bare_remote
    from tests.support import INSTALLATION_ID, REPO
    from tests.test_triage import run_labelled_issue

    github.reset()
    redis_conn.flushdb()
    remotes = base / uuid.uuid4().hex[:8]
    bare = create_bare_remote(remotes, REPO)
    github.add_repo(
        REPO, installation=INSTALLATION_ID, collaborators={"maintainer": "maintain"},
        files={".github/archon.yml": FILES[".github/archon.yml"]}, git_dir=bare,
    )  # fmt: skip
    github.add_issue(REPO, 1, title=ISSUE_TITLE, body=ISSUE_BODY, author="Codertocat")
    os.environ.update(_environment(github, redis_url, base, remotes))
    os.environ["ARCHON_DATA_DIR"] = str(remotes / "data")  # a first run: the mirror is cloned, as in tests
    os.environ["GITHUB_WRITE_INTERVAL"] = str(write_interval)
    os.environ["GITHUB_REQUEST_INTERVAL"] = "0"
    started = time.perf_counter()
    record = run_labelled_issue(redis_conn)
    elapsed = time.perf_counter() - started
    if record.state.value != "done":
        raise RuntimeError(f"the benchmark run ended {record.state}: {record.error}")
    calls = len(github.calls)
    return calls, sum(1 for c in github.calls if c.method != "GET"), elapsed


def figures(quick: bool = False) -> list[Figure]:
    import redis

    from bot.fakes.github import FakeGitHub
    from bot.redis_server import RedisServer
    from tests.support import APP_ID, OPENAPI, app_key

    rounds = 2 if quick else 5
    saved = dict(os.environ)
    samples: dict[float, list[tuple[int, int, float]]] = {0.0: [], 1.0: []}
    try:
        with (
            tempfile.TemporaryDirectory() as folder,
            RedisServer() as server,
            FakeGitHub(APP_ID, app_key()[1], openapi=OPENAPI) as github,
        ):
            connection = redis.Redis.from_url(server.url)
            for _ in range(rounds):  # interleaved: paced, unpaced, paced, …
                for interval in (1.0, 0.0):
                    samples[interval].append(_one_run(github, connection, server.url, Path(folder), interval))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    calls = max(s[0] for side in samples.values() for s in side)
    writes = max(s[1] for side in samples.values() for s in side)
    paced, bare = median([s[2] for s in samples[1.0]]), median([s[2] for s in samples[0.0]])
    detail = f"{rounds} interleaved runs per side, medians; ARCHON_STATUS_INTERVAL default"
    return [
        Figure(NAME, "calls per default run (max)", calls, "", MAX_CALLS, detail="triage+run, tokens in"),
        Figure(NAME, "writes per default run (max)", writes, "", MAX_WRITES, detail="2 installation tokens"),
        Figure(NAME, "wall time per run, 1 s pacing", paced, " s", MAX_PACED_S, detail=detail),
        Figure(
            NAME, "paced ÷ unpaced wall time", paced / bare, "×",
            detail=f"{paced:.1f} s vs {bare:.1f} s (GITHUB_WRITE_INTERVAL=1.0 vs 0)",
        ),
    ]  # fmt: skip


if __name__ == "__main__":
    for figure in figures(quick="--quick" in sys.argv):
        print(f"{figure.measure}: {figure.value:.3g}{figure.unit} (target {figure.target}) {figure.detail}")
