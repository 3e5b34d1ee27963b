"""The one command runner under real bubblewrap: what a command can see, reach, leave behind and print.

Every test here runs real `bwrap` (the suite requires it: `.ci/run` installs it) against real files,
processes and sockets on this machine, and each one fails when the defence it names is taken away.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot import sandbox as sandbox_module
from bot.sandbox import Sandbox, SandboxPolicy, _Buffer, bwrap_problem
from bot.sandbox_proxy import ProxyRefusal, allowed_target

pytestmark = pytest.mark.skipif(bwrap_problem() is not None, reason=f"bwrap unusable: {bwrap_problem()}")


@pytest.fixture
def worktree(tmp_path: Path) -> Path:
    root = tmp_path / "wt"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def run(box: Sandbox, command: str, root: Path, **kwargs) -> tuple[str, int]:
    done = box.run(command, root=root, timeout_s=kwargs.pop("timeout_s", 60), **kwargs)
    return done.output.decode(errors="replace"), done.exit_code


def token() -> str:
    """A `sleep` argument no other process has: found in the host's /proc by `running`."""
    return f"{400 + os.getpid() % 100}.{time.time_ns() % 10**9:09d}"


def running(mark: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if mark in cmdline and state != "Z":
            found.append(int(proc.name))
    return found


# --- the filesystem


def test_the_worktree_is_writable_and_the_rest_read_only(worktree: Path) -> None:
    out, _code = run(Sandbox(), "echo changed > file.txt && touch /usr/archon-probe; echo $?", worktree)
    assert (worktree / "file.txt").read_text() == "changed\n"
    assert "Read-only file system" in out and not Path("/usr/archon-probe").exists()


def test_hidden_paths_are_not_visible(worktree: Path, outside_tmp: Path) -> None:
    key = outside_tmp / "app.pem"
    key.write_text("-----BEGIN RSA PRIVATE KEY-----\nsecret-key-material\n")
    data = outside_tmp / "data"
    (data / "runs" / "other-run").mkdir(parents=True)
    (data / "runs" / "other-run" / "transcript.jsonl").write_text("other run's secrets\n")
    policy = SandboxPolicy(hidden=(key, data))
    out, _ = run(Sandbox(policy), f"cat {key}; ls -A {data}; cat {data}/runs/other-run/*", worktree)
    assert "secret-key-material" not in out and "other run" not in out
    # without the policy, the same command reads both: the hidden list is what protects them
    out, _ = run(Sandbox(), f"cat {key}; cat {data}/runs/other-run/*", worktree)
    assert "secret-key-material" in out and "other run" in out


def test_a_worktree_inside_the_hidden_data_dir_is_mounted_back(outside_tmp: Path) -> None:
    data = outside_tmp / "data"
    root = data / "git" / "worktrees" / "run-1"
    root.mkdir(parents=True)
    (data / "git" / "worktrees" / "run-2").mkdir()
    (data / "git" / "worktrees" / "run-2" / "theirs.txt").write_text("another run\n")
    (root / "mine.txt").write_text("this run\n")
    out, _ = run(Sandbox(SandboxPolicy(hidden=(data,))), f"cat mine.txt; ls {data}/git/worktrees", root)
    assert "this run" in out and "run-2" not in out


def test_home_cwd_tmp_and_run_are_private(worktree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = Path.home()
    marker = Path("/tmp") / f"archon-host-tmp-{uuid.uuid4().hex[:6]}"
    marker.write_text("host tmp\n")
    try:
        out, _ = run(Sandbox(), f"echo $HOME; ls -A {home} /run; cat {marker}; ls -A {Path.cwd()}", worktree)
    finally:
        marker.unlink()
    assert out.splitlines()[0] == "/tmp/home"
    assert "host tmp" not in out and ".env" not in out and "pyproject.toml" not in out


def test_the_git_admin_dir_and_mirror_config_are_read_only(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror.git"
    subprocess.run(["git", "init", "-q", "--bare", str(mirror)], check=True)
    seed = tmp_path / "seed"
    subprocess.run(["git", "init", "-q", "-b", "main", str(seed)], check=True)
    (seed / "a.txt").write_text("a\n")
    git = ["git", "-C", str(seed), "-c", "user.name=t", "-c", "user.email=t@e"]
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "a"], check=True)
    subprocess.run([*git, "push", "-q", str(mirror), "main"], check=True)
    root = tmp_path / "wt"
    subprocess.run(["git", "-C", str(mirror), "worktree", "add", "-q", str(root), "main"], check=True)
    attacks = (
        "git config filter.evil.clean 'touch /tmp/x'; echo config=$?;"
        "git config --worktree core.hooksPath /tmp 2>&1; echo wtconfig=$?;"
        "rm -f .git; echo rm=$?; echo 'gitdir: /elsewhere' > .git; echo replace=$?;"
        "git log --oneline | head -1"
    )
    out, _ = run(Sandbox(), attacks, root)
    assert "filter.evil" not in (mirror / "config").read_text()
    assert (root / ".git").read_text().startswith("gitdir:") and "/elsewhere" not in (
        root / ".git"
    ).read_text()
    assert "config=0" not in out and "rm=0" not in out and "replace=0" not in out
    assert " a" in out  # reading history still works


# --- processes


def test_no_other_process_is_visible(worktree: Path) -> None:
    mark = token()
    outside = subprocess.Popen(
        ["sleep", mark], env={"ARCHON_PROBE": "outside-secret", "PATH": "/usr/bin:/bin"}
    )
    try:
        out, _ = run(
            Sandbox(), "cat /proc/*/cmdline | tr '\\0' ' '; cat /proc/*/environ | tr '\\0' ' '", worktree
        )
    finally:
        outside.kill()
        outside.wait()
    assert mark not in out and "outside-secret" not in out


def test_nothing_survives_the_command(worktree: Path) -> None:
    mark = token()
    out, code = run(
        Sandbox(),
        f"setsid sleep {mark} & nohup sleep {mark} >/dev/null 2>&1 & (sleep {mark} &) ; echo ok",
        worktree,
    )
    assert code == 0 and out == "ok\n"
    assert running(mark) == []


def test_the_timeout_kills_the_namespace(worktree: Path) -> None:
    mark = token()
    done = Sandbox().run(f"setsid sleep {mark} & sleep {mark}", root=worktree, timeout_s=1)
    assert done.timed_out and done.exit_code != 0
    assert running(mark) == []


def test_the_command_dies_with_the_thread_that_started_it(worktree: Path) -> None:
    """PR_SET_PDEATHSIG: a job thread (or work horse) that dies takes its command with it."""
    mark = token()
    code = (
        "from pathlib import Path; from bot.sandbox import Sandbox\n"
        f"Sandbox().run('setsid sleep {mark} & sleep {mark}', root=Path({str(worktree)!r}), timeout_s=600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code])
    _wait_for(lambda: len(running(mark)) >= 4)  # the starter, bwrap, its PID 1, the shell
    parent.kill()
    parent.wait()
    _wait_for(lambda: running(mark) == [])


def test_a_fork_bomb_is_contained(worktree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mark = token()
    # The command's own pids cgroup, as the sandbox made it (other sandboxes on this machine — another
    # worker, another test run — may create and remove theirs meanwhile in the same parent).
    made: list[sandbox_module._PidsCgroup | None] = []
    create = sandbox_module._PidsCgroup.create
    monkeypatch.setattr(
        sandbox_module._PidsCgroup, "create", lambda limit: made.append(create(limit)) or made[-1]
    )
    policy = SandboxPolicy(max_processes=32)
    command = f"for i in {{1..100}}; do sleep {mark} & done; echo end"
    done = Sandbox(policy).run(command, root=worktree, timeout_s=120)
    text = done.output.decode(errors="replace")
    assert "Resource temporarily unavailable" in text  # fork failed: at most 32 processes at once
    assert running(mark) == []  # and the tree is gone after
    assert len(made) == 1
    if made[0] is not None:  # the machine delegates pids cgroups: the command's is removed with it
        assert not made[0].path.exists()


def test_memory_and_cpu_limits(worktree: Path) -> None:
    policy = SandboxPolicy(memory_mb=128, cpu_seconds=1)
    out, code = run(Sandbox(policy), "python3 -c 'x = bytearray(512 * 1024 * 1024)'", worktree)
    assert code != 0 and "MemoryError" in out
    done = Sandbox(policy).run("while :; do :; done", root=worktree, timeout_s=120)
    assert not done.timed_out and done.exit_code != 0  # SIGXCPU after one CPU second


def test_output_is_kept_as_head_and_tail_while_streaming(worktree: Path) -> None:
    done = Sandbox().run(
        "echo FIRST; head -c 50000000 /dev/zero | tr '\\0' x; echo; echo LAST",
        root=worktree,
        timeout_s=120,
        max_output_bytes=4000,
    )
    assert len(done.output) < 4200 and done.omitted_bytes > 49_000_000
    assert done.output.startswith(b"FIRST\n") and done.output.endswith(b"LAST\n")


def test_buffer_keeps_head_and_tail() -> None:
    buffer = _Buffer(10)
    for piece in (b"abc", b"defgh", b"ijklmnop", b"qrs"):
        buffer.add(piece)
    assert buffer.head == bytearray(b"abcde") and buffer.tail == bytearray(b"opqrs")
    assert buffer.omitted == 9 and b"9 bytes omitted" in buffer.value()


# --- the network


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP service on the host's loopback (what Redis or the fake GitHub look like)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    hits: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            with client:
                client.sendall(b"hello-from-host\n")
                hits.append(client.recv(100))

    threading.Thread(target=serve, daemon=True).start()
    yield port
    server.close()


PROBE = (
    "python3 - <<'EOF'\n"
    "import socket\n"
    "try:\n"
    "    s = socket.create_connection(('127.0.0.1', {port}), timeout=5)\n"
    "    print('REACHED', s.recv(100))\n"
    "except OSError as e:\n"
    "    print('BLOCKED', e)\n"
    "EOF"
)


def test_no_network_by_default(worktree: Path, listener: int) -> None:
    out, _ = run(Sandbox(), PROBE.format(port=listener), worktree)
    assert out.startswith("BLOCKED")
    out, _ = run(Sandbox(SandboxPolicy(network="open")), PROBE.format(port=listener), worktree)
    assert out.startswith("REACHED")  # `open` is the host's network: the default is what blocks it


def test_packages_mode_reaches_only_allowed_hosts(worktree: Path, listener: int) -> None:
    policy = SandboxPolicy(network="packages", package_hosts=(f"127.0.0.1:{listener}",))
    connect = (
        "python3 - <<'EOF'\n"
        "import os, socket\n"
        "proxy = os.environ['HTTPS_PROXY'].rsplit(':', 1)\n"
        f"for target in ('127.0.0.1:{listener}', '127.0.0.1:6379', 'example.org:443'):\n"
        "    s = socket.create_connection((proxy[0][7:], int(proxy[1])), timeout=60)\n"
        "    s.sendall(f'CONNECT {target} HTTP/1.1\\r\\nHost: {target}\\r\\n\\r\\n'.encode())\n"
        # the reply and the tunnelled greeting may arrive in one segment or several: read until both are in
        "    data = b''\n"
        "    while b'\\r\\n\\r\\n' not in data or (data[9:12] == b'200' and b'hello' not in data):\n"
        "        chunk = s.recv(200)\n"
        "        if not chunk:\n"
        "            break\n"
        "        data += chunk\n"
        "    head, _, rest = data.partition(b'\\r\\n\\r\\n')\n"
        "    print(target, head.split(b'\\r\\n')[0].decode(), rest)\n"
        "EOF\n"
    )
    out, _code = run(Sandbox(policy), connect + PROBE.format(port=listener), worktree)
    lines = out.splitlines()
    assert lines[0].startswith(f"127.0.0.1:{listener} HTTP/1.1 200") and "hello-from-host" in lines[0], out
    assert lines[1].startswith("127.0.0.1:6379 HTTP/1.1 403")
    assert lines[2].startswith("example.org:443 HTTP/1.1 403")
    assert lines[3].startswith("BLOCKED")  # only through the proxy, never directly


def test_unix_sockets_of_the_host_are_out_of_reach(worktree: Path, tmp_path: Path) -> None:
    """A network namespace does not cover unix sockets: Redis's socket under /run or /tmp must be hidden."""
    path = Path("/run") / f"archon-test-{uuid.uuid4().hex[:6]}.sock"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
    except OSError:
        pytest.skip("cannot create a socket under /run")
    server.listen()
    try:
        out, _ = run(
            Sandbox(SandboxPolicy(network="open")), f"ls -A /run; test -S {path} && echo VISIBLE", worktree
        )
    finally:
        server.close()
        path.unlink()
    assert "VISIBLE" not in out and path.name not in out


def test_allow_list_matching() -> None:
    hosts = ("pypi.org", "*.pythonhosted.org", "127.0.0.1:8080")
    assert allowed_target("pypi.org:443", hosts) == ("pypi.org", 443)
    assert allowed_target("files.pythonhosted.org:443", hosts) == ("files.pythonhosted.org", 443)
    assert allowed_target("127.0.0.1:8080", hosts) == ("127.0.0.1", 8080)
    for refused in ("pypi.org:80", "evilpypi.org:443", "pypi.org.evil.com:443", "127.0.0.1:6379", "x"):
        with pytest.raises(ProxyRefusal):
            allowed_target(refused, hosts)


# --- environment, modes


def test_the_environment_is_scrubbed_and_bwrap_starts_from_it(
    worktree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env-secret")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    out, _ = run(Sandbox(), "env; cat /proc/1/environ | tr '\\0' '\\n'; cat /proc/1/cmdline", worktree)
    assert "sk-ant-env-secret" not in out and "REDIS_URL" not in out
    assert "--ro-bind" not in out  # the mount table travels in a file, not on PID 1's command line


def _wait_for(condition, limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.05)


def test_an_allowed_name_never_leads_to_an_internal_address() -> None:
    from bot.sandbox_proxy import is_internal, resolve_public

    for address in (
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.5",
        "172.20.0.1",
        "169.254.169.254",
        "::1",
        "fd00::1",
    ):
        assert is_internal(address), address
    assert is_internal("::ffff:127.0.0.1")
    assert not is_internal("151.101.0.223") and not is_internal("2a04:4e42::223")
    with pytest.raises(ProxyRefusal, match="internal address"):
        resolve_public("localhost", 443)


def test_named_extra_paths_are_mounted_as_asked(worktree: Path, outside_tmp: Path) -> None:
    cache, tools = outside_tmp / "data" / "venvs" / "abc", outside_tmp / "data" / "tools"
    cache.mkdir(parents=True)
    tools.mkdir(parents=True)
    (tools / "tool.txt").write_text("a tool\n")
    policy = SandboxPolicy(hidden=(outside_tmp / "data",))
    command = f"echo built > {cache}/marker; cat {tools}/tool.txt; echo no > {tools}/tool.txt"
    out, _ = run(Sandbox(policy), command, worktree, writable=[cache], readable=[tools])
    assert (cache / "marker").read_text() == "built\n" and "a tool" in out
    assert (tools / "tool.txt").read_text() == "a tool\n" and "Read-only file system" in out
