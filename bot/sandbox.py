"""The one door for commands the bot runs on behalf of a model or a repository.

Every such command — the agent's `run` tool, validation, workflow shell nodes, the evaluation's before/after
validation — goes through `Sandbox.run`. Under bubblewrap (`bwrap`) a command sees:

- the worktree read-write and its git admin directory, the mirror's objects, refs and config read-only
  (so it can use `git diff`, but cannot plant configuration the bot's own git would obey);
- the rest of the filesystem read-only, except what is not visible at all: the bot's data directory (other
  mirrors, other runs' worktrees and transcripts), the App's key file, `.env`, the worker's HOME and working
  directory, system secrets (`/etc/shadow`, SSH host keys, `/var/lib` with databases' files), and every
  unix socket under `/run` and `/tmp` (a unix socket reaches Redis whatever the network namespace says);
- a private `/tmp` and HOME, a new `/proc` in its own PID namespace (no other process's environment), no
  capabilities, no further user namespaces;
- no network at all by default. `packages` gives it one door out: an HTTP proxy on its own loopback that
  forwards, over a unix socket, to `AllowlistProxy` outside, which CONNECTs only to the package indexes
  named in the policy. `open` shares the host's network (for test suites that need it).

The whole process tree dies with the command: bwrap's PID 1 is killed at the timeout (and when the job
dies: `PR_SET_PDEATHSIG`), and with it everything in the namespace, `setsid` or not. Limits: CPU seconds,
data-segment size and file size per process (rlimits), the number of processes (a pids cgroup where the
machine offers one, else `RLIMIT_NPROC`), and the output kept (read as it comes into a bounded head + tail
buffer, never the whole stream in memory).

`ARCHON_SANDBOX=off`, or `auto` on a machine without a working bwrap, runs commands without the mount and
network isolation (still with the scrubbed environment and limits; `sandbox_reaper.py` stands in for the
namespace's PID 1, so what a command leaves behind, `setsid` or not, still dies with it); the worker says so
once in its log and `/healthz` says so too. `required` refuses to start without bwrap.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from pydantic import BaseModel, ConfigDict, Field

from bot import sandbox_reaper

log = logging.getLogger(__name__)

Mode = Literal["auto", "required", "off"]
Network = Literal["none", "packages", "open"]

#: Package indexes `packages` lets a command reach (PyPI, npm, crates.io, Go's proxy).
DEFAULT_PACKAGE_HOSTS = (
    "pypi.org",
    "files.pythonhosted.org",
    "registry.npmjs.org",
    "registry.yarnpkg.com",
    "crates.io",
    "static.crates.io",
    "index.crates.io",
    "proxy.golang.org",
    "sum.golang.org",
)
#: Never visible inside, whatever the deployment: secrets of the machine itself.
SYSTEM_HIDDEN = (
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/shadow-",
    "/etc/gshadow-",
    "/etc/ssh",
    "/etc/ssl/private",
    "/var/lib",
    "/var/log",
    "/var/spool",
    "/var/mail",
    "/var/backups",
    "/var/run",
    "/run",
    "/home",
    "/root",
    "/srv",
    "/mnt",
    "/media",
)
ENV_ALLOWLIST = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TZ")
SANDBOX_HOME = "/tmp/home"
PROXY_PORT = 3128
PROXY_SOCKET = "/run/archon/proxy.sock"
BRIDGE_SCRIPT = "/run/archon/bridge.py"
REAPER_SCRIPT = Path(sandbox_reaper.__file__)  # run by path with `-I -S`: stdlib only, no bot code
_REAPER_GRACE_S = 10.0
_DRAIN_TIMEOUT_S = 5.0
_READ_CHUNK = 65536
STALE_CGROUP_S = 60


class SandboxUnavailableError(RuntimeError):
    """`ARCHON_SANDBOX=required` and this machine cannot run bubblewrap; the message says why."""


class SandboxPolicy(BaseModel):
    """What a sandboxed command may see and use; built once from `Settings` (`from_settings`)."""

    model_config = ConfigDict(frozen=True)

    mode: Mode = Field("auto", description="auto: bwrap when it works; required: refuse without; off.")
    network: Network = Field("none", description="none, packages (allow-listed indexes only) or open.")
    package_hosts: tuple[str, ...] = Field(DEFAULT_PACKAGE_HOSTS, description="Hosts `packages` reaches.")
    hidden: tuple[Path, ...] = Field((), description="Paths (data dir, key file, .env) never visible.")
    cpu_seconds: int = Field(900, ge=1, description="CPU seconds per process (RLIMIT_CPU).")
    memory_mb: int = Field(4096, ge=64, description="Data segment per process, MiB (RLIMIT_DATA).")
    max_processes: int = Field(512, ge=8, description="Processes at once (pids cgroup or RLIMIT_NPROC).")
    file_size_mb: int = Field(1024, ge=1, description="Largest file a command may write, MiB (RLIMIT_FSIZE).")
    tmp_size_mb: int = Field(1024, ge=16, description="Size of the private /tmp (a tmpfs, so memory).")

    @classmethod
    def from_settings(cls, settings: object) -> SandboxPolicy:
        """The deployment's policy: the data dir, key file and settings file are hidden."""
        hidden = [Path(settings.archon_data_dir)]  # type: ignore[attr-defined]
        key_path = settings.github_private_key_path  # type: ignore[attr-defined]
        if key_path:
            hidden.append(Path(key_path))
        env_file = os.environ.get("ARCHON_ENV_FILE", ".env")
        if env_file:
            hidden.append(Path(env_file))
        if settings.archon_models_file:  # type: ignore[attr-defined]
            hidden.append(Path(settings.archon_models_file))  # type: ignore[attr-defined]
        return cls(
            mode=settings.archon_sandbox,  # type: ignore[attr-defined]
            network=settings.archon_sandbox_network,  # type: ignore[attr-defined]
            package_hosts=settings.archon_sandbox_package_hosts,  # type: ignore[attr-defined]
            hidden=tuple(hidden),
            cpu_seconds=settings.archon_sandbox_cpu_seconds,  # type: ignore[attr-defined]
            memory_mb=settings.archon_sandbox_memory_mb,  # type: ignore[attr-defined]
            max_processes=settings.archon_sandbox_max_processes,  # type: ignore[attr-defined]
        )


@dataclass(frozen=True)
class Completed:
    """What a command did. `output` is stdout and stderr as they interleaved, head and tail kept."""

    argv: tuple[str, ...]
    output: bytes
    exit_code: int
    timed_out: bool
    duration_s: float
    omitted_bytes: int = 0
    sandboxed: bool = True


@dataclass
class _Buffer:
    """Keeps the first and last `limit // 2` bytes of a stream, counting what falls between."""

    limit: int
    head: bytearray = field(default_factory=bytearray)
    tail: bytearray = field(default_factory=bytearray)
    omitted: int = 0

    def add(self, data: bytes) -> None:
        half = self.limit // 2
        room = half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if not data:
            return
        self.tail += data
        if len(self.tail) > half:
            cut = len(self.tail) - half
            self.omitted += cut
            del self.tail[:cut]

    def value(self) -> bytes:
        if not self.omitted:
            return bytes(self.head + self.tail)
        return bytes(self.head) + f"\n[... {self.omitted} bytes omitted ...]\n".encode() + bytes(self.tail)


class Sandbox:
    """Runs commands under one `SandboxPolicy`. Cheap to build; the bwrap probe runs once per process."""

    def __init__(self, policy: SandboxPolicy | None = None) -> None:
        self.policy = policy or SandboxPolicy()

    @property
    def enabled(self) -> bool:
        """Whether commands run under bwrap; `required` without it raises."""
        if self.policy.mode == "off":
            return False
        problem = bwrap_problem()
        if problem and self.policy.mode == "required":
            raise SandboxUnavailableError(f"ARCHON_SANDBOX=required but {problem}")
        return problem is None

    def describe(self) -> str:
        """One line for logs and `/healthz`."""
        if self.policy.mode == "off":
            return "off (ARCHON_SANDBOX=off): commands run unsandboxed"
        problem = bwrap_problem()
        if problem:
            return f"unavailable ({problem}): commands run unsandboxed"
        return f"bubblewrap, network {self.policy.network}, processes capped by {_pids_mechanism()}"

    def run(
        self,
        command: str | Sequence[str],
        *,
        root: Path,
        timeout_s: float,
        max_output_bytes: int = 1_000_000,
        env: Mapping[str, str] | None = None,
        network: Network | None = None,
        writable: Sequence[Path] = (),
        readable: Sequence[Path] = (),
    ) -> Completed:
        """Run `command` (a shell line for `bash -c`, or an argv) with `root` as its writable working dir.

        `writable` / `readable`: more paths mounted read-write / read-only on top of everything else (a
        checkout's cached virtualenv, a pip cache) — each one named by the caller, never found by guessing.
        """
        argv = _argv(command)
        root = Path(root).resolve(strict=True)
        inner_env = _inner_env(env)
        sandboxed = self.enabled
        mounts = tuple((Path(p).resolve(), True) for p in writable) + tuple(
            (Path(p).resolve(), False) for p in readable
        )
        with _Session(self, root, network or self.policy.network, sandboxed, mounts) as session:
            if sandboxed:
                full = session.bwrap_command(argv, inner_env)
                outer_env = _outer_env()
            else:
                full, outer_env = _reaped(argv), {**inner_env, "HOME": session.home, "TMPDIR": session.home}
            return _supervise(
                full, outer_env, root, timeout_s, max_output_bytes, self.policy, argv, session, sandboxed
            )


# --- bubblewrap availability ------------------------------------------------------------------


@functools.cache
def bwrap_problem() -> str | None:
    """Why bwrap cannot be used here, or None when a trial sandbox ran. Probed once per process."""
    path = shutil.which("bwrap")
    if path is None:
        return "bwrap is not installed (Debian package `bubblewrap`)"
    probe = [path, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc", "true"]
    try:
        done = subprocess.run(probe, capture_output=True, timeout=60, env=_outer_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap could not start ({exc})"
    if done.returncode:
        reason = done.stderr.decode(errors="replace").strip()
        return f"bwrap cannot create namespaces here ({reason}){_container_hint()}"
    return None


#: What a container runtime must allow for bwrap (docs/operations.md); said where the probe fails.
CONTAINER_HINT = (
    " — in Docker give the worker `security_opt: [seccomp=unconfined, apparmor=unconfined, "
    "systempaths=unconfined]` (docs/operations.md)"
)


def _container_hint() -> str:
    in_container = Path("/.dockerenv").exists() or bool(os.environ.get("container"))  # noqa: SIM112 (systemd/podman set it lower-case)
    return CONTAINER_HINT if in_container else ""


def _outer_env() -> dict[str, str]:
    """bwrap itself starts from a scrubbed environment: nothing secret is even in its process."""
    return {name: os.environ[name] for name in ("PATH", "LANG") if name in os.environ}


def _inner_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {name: os.environ[name] for name in ENV_ALLOWLIST if name in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(
        HOME=SANDBOX_HOME,
        TMPDIR="/tmp",
        GIT_TERMINAL_PROMPT="0",
        # No bytecode caches: they would show up in the diff as stray files the change never meant.
        PYTHONDONTWRITEBYTECODE="1",
    )
    if root := _pyenv_root():
        env["PYENV_ROOT"] = str(root)
    env.update(extra or {})
    return env


def _reaped(argv: Sequence[str]) -> list[str]:
    """An unsandboxed command runs under `sandbox_reaper.py`, which stands in for the namespace's PID 1:
    what the command leaves behind, `setsid` or not, dies when it ends, at the deadline, or with the job."""
    return [sys.executable, "-I", "-S", str(REAPER_SCRIPT), str(os.getpid()), *argv]


def _argv(command: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(command, str):
        return (shutil.which("bash") or "/bin/sh", "-c", command)
    return tuple(command)


# --- one command's set-up ---------------------------------------------------------------------


class _Session:
    """Per-command resources: a scratch dir (HOME when unsandboxed, the proxy's socket), the proxy,
    the pids cgroup. All released on exit."""

    def __init__(
        self,
        sandbox: Sandbox,
        root: Path,
        network: Network,
        sandboxed: bool,
        mounts: Sequence[tuple[Path, bool]] = (),
    ) -> None:
        self.policy, self.root, self.network, self.sandboxed = sandbox.policy, root, network, sandboxed
        self.mounts = mounts
        self.scratch = Path(tempfile.mkdtemp(prefix="archon-sandbox-"))
        self.home = str(self.scratch / "home")
        os.mkdir(self.home, 0o700)
        self.proxy = None
        self.args_file: IO[bytes] | None = None
        self.cgroup = _PidsCgroup.create(self.policy.max_processes)

    def __enter__(self) -> _Session:
        if self.network == "packages" and self.sandboxed:
            from bot.sandbox_proxy import AllowlistProxy

            self.proxy = AllowlistProxy(self.scratch / "proxy.sock", self.policy.package_hosts)
            self.proxy.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.args_file is not None:
            self.args_file.close()
        if self.proxy is not None:
            self.proxy.stop()
        if self.cgroup is not None:
            self.cgroup.destroy()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def bwrap_command(self, argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
        """`bwrap --args FD`: the options travel in a file, so the sandbox's PID 1 shows no mount table
        or environment in its `/proc/1/cmdline`."""
        options = self._bwrap_options(argv, env)
        self.args_file = open(self.scratch / "bwrap.args", "w+b")  # noqa: SIM115 - closed in __exit__
        self.args_file.write(b"\0".join(o.encode() for o in options) + b"\0")
        self.args_file.flush()
        self.args_file.seek(0)
        os.set_inheritable(self.args_file.fileno(), True)
        return [shutil.which("bwrap") or "bwrap", "--args", str(self.args_file.fileno()), "--", *self.argv]

    def _bwrap_options(self, argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
        args = ["--unshare-all", "--unshare-user", "--disable-userns"]
        if self.network == "open":
            args.append("--share-net")
        args += ["--die-with-parent", "--new-session", "--cap-drop", "ALL", "--clearenv"]
        for name, value in env.items():
            args += ["--setenv", name, value]
        args += _filesystem(self.policy, self.root)
        for path, rw in self.mounts:
            args += ["--bind" if rw else "--ro-bind", str(path), str(path)]
        if self.proxy is not None:
            args += ["--ro-bind", str(self.proxy.socket_path), PROXY_SOCKET]
            args += ["--ro-bind", str(Path(__file__).with_name("sandbox_bridge.py")), BRIDGE_SCRIPT]
            argv = [_python_inside(), BRIDGE_SCRIPT, PROXY_SOCKET, str(PROXY_PORT), *argv]
            proxy = f"http://127.0.0.1:{PROXY_PORT}"
            for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
                args += ["--setenv", name, proxy]
        args += ["--chdir", str(self.root)]
        self.argv = list(argv)
        return args


def _python_inside() -> str:
    """The bridge is stdlib-only; the bot's own interpreter is made visible for it."""
    return os.path.realpath(sys.executable)


def _filesystem(policy: SandboxPolicy, root: Path) -> list[str]:
    """The mount table, in order: later mounts sit on top of earlier ones."""
    args = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    hidden = _hidden_paths(policy, root)
    args += _masks(hidden)
    size = str(policy.tmp_size_mb * 1024 * 1024)
    args += ["--size", size, "--tmpfs", "/tmp", "--size", size, "--tmpfs", "/var/tmp"]
    args += ["--tmpfs", "/dev/shm", "--dir", SANDBOX_HOME]
    revealed = _revealed_paths(hidden)
    for path in revealed:
        args += ["--ro-bind", str(path), str(path)]
    args += ["--bind", str(root), str(root)]
    args += _git_binds(root)
    # A secret inside something mounted back (a key file in the worktree) is hidden again on top.
    again = [h for h in hidden if any(h != p and h.is_relative_to(p) for p in [root, *revealed])]
    return args + _masks(again)


def _masks(paths: Sequence[Path]) -> list[str]:
    args: list[str] = []
    for path in paths:
        if path.is_dir():
            args += ["--tmpfs", str(path)]
        elif path.exists():
            args += ["--ro-bind", "/dev/null", str(path)]
    return args


def _hidden_paths(policy: SandboxPolicy, root: Path) -> list[Path]:
    """Deployment secrets, the worker's HOME and working directory, and the machine's own secrets.
    Paths that contain the worktree are hidden too: the worktree is mounted back on top."""
    wanted = [*policy.hidden, Path.home(), Path.cwd(), *map(Path, SYSTEM_HIDDEN)]
    seen: dict[str, Path] = {}
    for path in wanted:
        with contextlib.suppress(OSError):
            real = Path(os.path.realpath(path))
            if real != Path("/") and real.exists():
                seen.setdefault(str(real), real)
    # Parents before children, so a child's mask is not hidden under its parent's tmpfs.
    return sorted(seen.values(), key=lambda p: len(p.parts))


def _revealed_paths(hidden: Sequence[Path]) -> list[Path]:
    """What commands need from inside hidden places, read-only: the bot's Python (for the proxy bridge
    and for tools installed with it), PATH's directories, and pyenv's root when its shims are on PATH."""
    candidates = {Path(sys.base_prefix), Path(sys.prefix), Path(sys.exec_prefix)}
    candidates |= {Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p}
    if root := _pyenv_root():
        candidates.add(root)
    candidates.add(Path("/etc/resolv.conf"))  # often a link into /run, which is hidden
    revealed = []
    for path in sorted(candidates, key=lambda p: len(p.parts)):
        real = Path(os.path.realpath(path))
        if real.exists() and _reveal_is_safe(real, hidden):
            revealed.append(real)
    return revealed


def _reveal_is_safe(path: Path, hidden: Sequence[Path]) -> bool:
    """Only a path strictly inside a hidden one, which does not itself contain a hidden one."""
    inside = any(path != h and path.is_relative_to(h) for h in hidden)
    contains = any(h.is_relative_to(path) for h in hidden)
    return inside and not contains


def _pyenv_root() -> Path | None:
    """pyenv's shims (a common way Python is on PATH) need pyenv's whole root and `PYENV_ROOT`."""
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        parent = Path(entry).parent
        if entry.endswith("/shims") and (parent / "libexec" / "pyenv").is_file():
            return Path(os.path.realpath(parent))
    return None


def _git_binds(root: Path) -> list[str]:
    """The repository's git data, read-only: a worktree's `.git` file and admin dir, the mirror's objects,
    refs and config; or a clone's `.git` directory and the object stores it borrows from."""
    dot_git = root / ".git"
    if dot_git.is_dir():
        binds = [dot_git]
        binds += _alternates(dot_git / "objects")
    elif dot_git.is_file():
        admin = _gitdir(dot_git)
        if admin is None:
            return []
        binds = [dot_git, admin]
        common = _common_dir(admin)
        if common is not None:
            binds += [common / name for name in ("HEAD", "config", "packed-refs", "objects", "refs")]
            binds += _alternates(common / "objects")
    else:
        return []
    args: list[str] = []
    for path in binds:
        if path.exists():
            args += ["--ro-bind", str(path), str(path)]
    return args


def _gitdir(dot_git: Path) -> Path | None:
    text = dot_git.read_text(errors="replace").strip()
    if not text.startswith("gitdir:"):
        return None
    return (dot_git.parent / text.removeprefix("gitdir:").strip()).resolve()


def _common_dir(admin: Path) -> Path | None:
    try:
        return (admin / (admin / "commondir").read_text().strip()).resolve()
    except OSError:
        return None


def _alternates(objects: Path) -> list[Path]:
    try:
        lines = (objects / "info" / "alternates").read_text().splitlines()
    except OSError:
        return []
    return [(objects / line.strip()).resolve() for line in lines if line.strip() and not line.startswith("#")]


# --- running and supervising ------------------------------------------------------------------


def _supervise(
    full: Sequence[str],
    env: Mapping[str, str],
    root: Path,
    timeout_s: float,
    max_output: int,
    policy: SandboxPolicy,
    argv: Sequence[str],
    session: _Session,
    sandboxed: bool,
) -> Completed:
    """Start, read output as it comes, kill the whole tree at the deadline."""
    started = time.monotonic()
    proc = subprocess.Popen(
        list(full),
        cwd=root,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        pass_fds=(session.args_file.fileno(),) if session.args_file else (),
        preexec_fn=functools.partial(_limit_child, policy, session.cgroup, os.getpid()),
    )
    buffer = _Buffer(max(1024, max_output))
    try:
        timed_out = _read_until(proc, buffer, started + timeout_s, reaper=not sandboxed)
    finally:
        _kill_tree(proc, session.cgroup, reaper=not sandboxed)
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    return Completed(
        argv=tuple(argv),
        output=buffer.value(),
        exit_code=proc.returncode,
        timed_out=timed_out,
        duration_s=time.monotonic() - started,
        omitted_bytes=buffer.omitted,
        sandboxed=sandboxed,
    )


def _read_until(proc: subprocess.Popen[bytes], buffer: _Buffer, deadline: float, *, reaper: bool) -> bool:
    """Copy output into `buffer` until the command ends; True when the deadline came first (the tree is
    then killed, and what is still in the pipe drained for a moment)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    if _drain(fd, buffer, deadline):
        with contextlib.suppress(subprocess.TimeoutExpired):
            # Output closed; an unsandboxed command may still run (`exec >/dev/null`) until the deadline.
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            return False
    _kill_tree(proc, None, reaper=reaper)
    _drain(fd, buffer, time.monotonic() + _DRAIN_TIMEOUT_S)
    return True


def _drain(fd: int, buffer: _Buffer, deadline: float) -> bool:
    """Read until end of stream (True) or the deadline (False)."""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if selector.select(timeout=min(left, 1.0)) and not _pump(fd, buffer):
                return True
    return False


def _pump(fd: int, buffer: _Buffer) -> bool:
    """One read; False at end of stream."""
    data = os.read(fd, _READ_CHUNK)
    if not data:
        return False
    buffer.add(data)
    return True


def _kill_tree(proc: subprocess.Popen[bytes], cgroup: _PidsCgroup | None, *, reaper: bool) -> None:
    """SIGKILL the process group. Under bwrap that kills the namespace's PID 1, and the kernel then kills
    every process in the namespace. Unsandboxed, the reaper is asked first to kill every descendant,
    including those that left the group; the group kill is the fallback."""
    if reaper and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(proc.pid, sandbox_reaper.CLEAN_UP)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=_REAPER_GRACE_S)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if cgroup is not None:
        cgroup.kill_all()


def _limit_child(policy: SandboxPolicy, cgroup: _PidsCgroup | None, parent: int) -> None:
    """In the child, before exec: join the pids cgroup, set rlimits, die with the job's thread."""
    if cgroup is not None:
        cgroup.join()
    mib = 1024 * 1024
    limits = [
        (resource.RLIMIT_CPU, policy.cpu_seconds),
        (resource.RLIMIT_DATA, policy.memory_mb * mib),
        (resource.RLIMIT_FSIZE, policy.file_size_mb * mib),
        (resource.RLIMIT_CORE, 0),
    ]
    if cgroup is None:
        limits.append((resource.RLIMIT_NPROC, policy.max_processes))
    for kind, value in limits:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(kind, (value, value))
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(sandbox_reaper.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(137)  # the parent died before the death signal was armed: never start the command


# --- process-count cap ------------------------------------------------------------------------


@dataclass
class _PidsCgroup:
    """A pids cgroup of its own for one command: `RLIMIT_NPROC` does not bind root (the kernel exempts
    it), and workers often run as root in containers. Used where the machine lets us create one."""

    path: Path

    @classmethod
    def create(cls, limit: int) -> _PidsCgroup | None:
        parent = _pids_parent()
        if parent is None:
            return None
        _sweep(parent)
        path = parent / f"archon-{uuid.uuid4().hex[:12]}"
        try:
            path.mkdir()
            (path / "pids.max").write_text(str(limit))
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
            return None
        return cls(path)

    def join(self) -> None:
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def kill_all(self) -> None:
        kill = self.path / "cgroup.kill"
        if kill.exists():
            with contextlib.suppress(OSError):
                kill.write_text("1")
            return
        for pid in self._pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def destroy(self) -> None:
        for _ in range(100):
            self.kill_all()
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.05)  # the kernel is still reaping the killed processes
        log.warning("could not remove pids cgroup %s", self.path)

    def _pids(self) -> Iterator[int]:
        with contextlib.suppress(OSError):
            for line in (self.path / "cgroup.procs").read_text().split():
                yield int(line)


def _sweep(parent: Path) -> None:
    """Remove the empty cgroups of commands whose worker was killed before it could (a cgroup still in
    use cannot be removed; a minute's age keeps one just created by another worker out of reach)."""
    for stale in parent.glob("archon-*"):
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > STALE_CGROUP_S:
                stale.rmdir()


@functools.cache
def _pids_parent() -> Path | None:
    """Where this process may create pids cgroups: cgroup v2 with the pids controller delegated, or
    the v1 pids hierarchy; None when neither is writable."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for base in _cgroup_bases(controllers):
            here = base / path.lstrip("/")
            if _usable_pids_parent(here, v2=controllers == ""):
                return here
    return None


def _cgroup_bases(controllers: str) -> list[Path]:
    if controllers == "":
        return [Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")]
    if "pids" in controllers.split(","):
        return [Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup") / controllers]
    return []


def _usable_pids_parent(path: Path, *, v2: bool) -> bool:
    if not (path / "cgroup.procs").is_file() or not os.access(path, os.W_OK):
        return False
    if v2:
        control = path / "cgroup.subtree_control"
        return control.is_file() and "pids" in control.read_text().split()
    return True


@functools.cache
def _pids_mechanism() -> str:
    return "a pids cgroup" if _pids_parent() is not None else "RLIMIT_NPROC"
