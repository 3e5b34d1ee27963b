"""A checkout's test environment, built the way its CI would build it, and cached between runs.

For a Python plan there are two layers, so that many checkouts of one repository (a bench's matrix, the
change and its merge base) can share the slow part and still each test their own code:

- a **dependency venv** per install spec: `python -m venv` with the bot's interpreter, then the plan's
  `setup` steps (build backend, test dependencies) with pip — or uv when it is on PATH — inside the
  sandbox with package-index access only. It is cached under `<data_dir>/venvs/<key>`, keyed by the Python
  version, the install steps and the content of the packaging files (pyproject.toml, setup.cfg, setup.py,
  requirements*, tox.ini, noxfile.py, lock files), with pip's downloads under `<data_dir>/pip-cache`. It
  is built under a file lock into a directory of its own and published by atomically replacing the
  `<key>` symlink, so a half-built venv is never reused; a failed build leaves a `<key>.failed` marker and
  is rebuilt on the next run. Once published it is never written again: commands only read it.
- a **checkout layer** per run, in the run's scratch directory: a pip-less venv whose site-packages adds
  the dependency venv's (a `.pth` file that sorts after editable installs, so the checkout wins), and the
  checkout installed into it with `pip install --no-deps --no-build-isolation -e` — offline and fast.
  Installing the checkout into the shared venv instead would let two concurrent runs repoint each other's
  editable install. Without packaging metadata, `PYTHONPATH` points at the checkout's `src/` or root.

Then an import check proves the tests will exercise the checkout: the plan's top-level package must import
from inside it, not from a copy installed elsewhere. Every step is a `CheckRun` with its duration (cold and
cached environments are visible as such); a failed step makes the run `could_not_run`, never `failed`.
Non-Python plans get no environment: their commands run with the machine's toolchain, as they are.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bot.sandbox import Completed, Network, Sandbox
from bot.validation.detect import CONFIG_SOURCE, backend_step, has_packaging
from bot.validation.schema import CheckRun, CheckStatus, ValidationPlan
from bot.workspace import _locked

Progress = Callable[[str], None] | None
LAYOUT_VERSION = "1"
"""Bumped when the way venvs are built changes, so old caches are not reused."""
READY = ".archon-ready"
KEY_FILES = ("pyproject.toml", "setup.cfg", "setup.py", "tox.ini", "noxfile.py", "Pipfile")
KEY_GLOBS = ("requirements*.txt", "requirements/*.txt", "*.lock", "Pipfile.lock")
DEPS_PTH = "~archon-dependencies.pth"
PIP_ENV = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1", "PIP_PROGRESS_BAR": "off"}


@dataclass
class Environment:
    """Where the test commands run: the environment variables and mounts they need, and what it took."""

    description: str
    setup: list[CheckRun] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    readable: list[Path] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return all(step.status is CheckStatus.PASSED for step in self.setup)


@dataclass
class _Context:
    """One preparation's fixed inputs, so each step's function takes only what varies."""

    plan: ValidationPlan
    checkout: Path
    sandbox: Sandbox
    data_dir: Path
    scratch: Path
    timeout_s: float
    progress: Progress

    def say(self, line: str) -> None:
        if self.progress is not None:
            self.progress(line)


def prepare(
    plan: ValidationPlan,
    checkout: Path,
    *,
    sandbox: Sandbox,
    data_dir: Path,
    scratch: Path,
    timeout_s: float = 900,
    progress: Progress = None,
) -> Environment:
    """The environment `plan`'s commands need on `checkout`; `scratch` is this run's private directory
    (outside the checkout and the data dir), where the checkout layer lives."""
    ctx = _Context(
        plan, Path(checkout).resolve(), sandbox, Path(data_dir), Path(scratch), timeout_s, progress
    )
    if not plan.python_env:
        return _plain(ctx)
    started = time.monotonic()
    venv, built, steps = _dependency_venv(ctx)
    if venv is None:
        return Environment(f"venv {_python_version()} (build failed)", steps)
    layer = _checkout_layer(ctx, venv)
    steps += layer.setup
    state = f"built in {built:.1f}s" if built is not None else "cached"
    description = f"venv {_python_version()} ({state} {venv.name.split('-')[0][:12]}){layer.description}"
    env = Environment(description, steps, layer.env, [venv, *layer.readable])
    if env.ready:
        ctx.say(f"environment ready in {time.monotonic() - started:.1f}s ({state.split()[0]})")
    return env


# --- no environment: the machine's own toolchain --------------------------------------------------------


def _plain(ctx: _Context) -> Environment:
    """Non-Python plans: a configured `setup:` runs in the checkout, with package-index access."""
    kind = ctx.plan.ecosystem or "unknown ecosystem"
    steps = []
    for command in ctx.plan.setup:
        ctx.say(f"running setup: {command}…")
        steps.append(_step(command, _sandboxed(ctx, command, {}, "packages", [ctx.checkout], [])))
        if steps[-1].status is not CheckStatus.PASSED:
            break
    return Environment(f"none ({kind}: commands run as they are, with the machine's toolchain)", steps)


# --- the dependency venv, cached --------------------------------------------------------------------------


def cache_key(plan: ValidationPlan, checkout: Path) -> str:
    """What decides a dependency venv: the interpreter, the install steps and the packaging files."""
    digest = hashlib.sha256(f"{LAYOUT_VERSION}\n{sys.version}\n{sys.platform}\n".encode())
    digest.update(_installer().encode() + b"\n")
    digest.update("\n".join(plan.setup).encode() + b"\n")
    for name in _key_files(checkout):
        digest.update(f"{name}\n".encode() + (checkout / name).read_bytes() + b"\n")
    return digest.hexdigest()[:16]


def _key_files(checkout: Path) -> list[str]:
    found = {n for n in KEY_FILES if (checkout / n).is_file()}
    found |= {str(p.relative_to(checkout)) for g in KEY_GLOBS for p in checkout.glob(g) if p.is_file()}
    return sorted(found)


def _dependency_venv(ctx: _Context) -> tuple[Path | None, float | None, list[CheckRun]]:
    """(the venv's real directory or None, build seconds or None when cached, the build's steps)."""
    venvs = ctx.data_dir / "venvs"
    key = cache_key(ctx.plan, ctx.checkout)
    link = venvs / key
    with _locked(venvs / f"{key}.lock"):
        if (link / READY).is_file():
            ctx.say(f"reusing the cached environment {key} (cached, no install)")
            return link.resolve(), None, []
        _remove_leftovers(venvs, key)
        started = time.monotonic()
        target = venvs / f"{key}-{uuid.uuid4().hex[:8]}"
        steps = _build(ctx, target)
        if any(s.status is not CheckStatus.PASSED for s in steps):
            (venvs / f"{key}.failed").write_text(steps[-1].reason + "\n")
            shutil.rmtree(target, ignore_errors=True)
            return None, None, steps
        (target / READY).write_text(f"{_python_version()}\n" + "\n".join(ctx.plan.setup) + "\n")
        _publish(link, target)
        (venvs / f"{key}.failed").unlink(missing_ok=True)
        return target.resolve(), time.monotonic() - started, steps


def _remove_leftovers(venvs: Path, key: str) -> None:
    """Directories of builds that failed or were interrupted (the lock is held: none is in progress)."""
    current = os.path.realpath(venvs / key) if (venvs / key).is_symlink() else None
    for path in venvs.glob(f"{key}-*"):
        if str(path.resolve()) != current:
            shutil.rmtree(path, ignore_errors=True)


def _publish(link: Path, target: Path) -> None:
    """Point `link` at `target` in one rename: readers see the old venv or the new one, never half of it."""
    temporary = link.with_name(f"{link.name}.link-{uuid.uuid4().hex[:8]}")
    temporary.symlink_to(target.name)
    os.replace(temporary, link)


def _build(ctx: _Context, target: Path) -> list[CheckRun]:
    """`python -m venv`, then each install step; stops at the first that fails."""
    target.mkdir(parents=True)
    pip_cache = ctx.data_dir / "pip-cache"
    pip_cache.mkdir(parents=True, exist_ok=True)
    command = f"{shlex.quote(sys.executable)} -m venv {shlex.quote(str(target.resolve()))}"
    ctx.say(f"creating a virtualenv with Python {_python_version()} (cold)…")
    steps = [_step(command, _sandboxed(ctx, command, {}, "none", [target], []), label="python -m venv")]
    env = {**_venv_env(target.resolve()), **_installer_env(ctx), "PIP_CACHE_DIR": str(pip_cache.resolve())}
    for step in ctx.plan.setup:
        if steps[-1].status is not CheckStatus.PASSED:
            break
        command = _with_installer(step)
        ctx.say(f"installing {_what(ctx, step)} (cold, {_count(ctx.checkout, step)})…")
        done = _sandboxed(ctx, command, env, "packages", [target, pip_cache, *_uv_cache(ctx)], [])
        steps.append(_step(command, done))
    return steps


def _what(ctx: _Context, step: str) -> str:
    """For progress lines: the build backend, the repository's own setup, or the test dependencies."""
    if step == backend_step(ctx.checkout):
        return "the build backend"
    return "the repository's setup" if ctx.plan.source == CONFIG_SOURCE else "test dependencies"


def _count(checkout: Path, step: str) -> str:
    """How many requirements a pip step names, counting the lines of its `-r` files."""
    try:
        words = shlex.split(step)
    except ValueError:
        return "packages"
    words = words[words.index("install") + 1 :] if "install" in words else []
    count, skip = 0, False
    for i, word in enumerate(words):
        if skip:
            skip = False
        elif word in ("-r", "-c", "--requirement", "--constraint") and i + 1 < len(words):
            skip = True
            count += _requirement_count(checkout / words[i + 1]) if word in ("-r", "--requirement") else 0
        elif not word.startswith("-"):
            count += 1
    return f"{count} package{'s' * (count != 1)}"


def _requirement_count(path: Path) -> int:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return 0
    return sum(1 for line in lines if line.strip() and not line.lstrip().startswith(("#", "-")))


# --- installers: pip, or uv when it is on PATH ----------------------------------------------------------


def _installer() -> str:
    return "uv" if shutil.which("uv") else "pip"


def _with_installer(step: str) -> str:
    """`python -m pip install …` as `uv pip install …` when uv is available (uv finds the venv through
    `VIRTUAL_ENV`); any other step as written."""
    if _installer() == "uv" and step.startswith("python -m pip install "):
        return "uv pip install " + step.removeprefix("python -m pip install ")
    return step


def _installer_env(ctx: _Context) -> dict[str, str]:
    """Quiet, non-interactive installers; uv's cache beside pip's in the data dir."""
    caches = _uv_cache(ctx)
    return {**PIP_ENV, **({"UV_CACHE_DIR": str(caches[0].resolve())} if caches else {})}


def _uv_cache(ctx: _Context) -> list[Path]:
    if _installer() != "uv":
        return []
    cache = ctx.data_dir / "uv-cache"
    cache.mkdir(parents=True, exist_ok=True)
    return [cache]


# --- the checkout layer, per run ------------------------------------------------------------------------


def _checkout_layer(ctx: _Context, venv: Path) -> Environment:
    """A venv of this run's own over the shared one, with the checkout installed (or on PYTHONPATH), and
    the import check."""
    layer = (ctx.scratch / "venv").resolve()
    ctx.scratch.mkdir(parents=True, exist_ok=True)
    command = f"{shlex.quote(str(venv / 'bin' / 'python'))} -m venv --without-pip {shlex.quote(str(layer))}"
    steps = [_step(command, _sandboxed(ctx, command, {}, "none", [ctx.scratch], [venv]))]
    if steps[-1].status is not CheckStatus.PASSED:
        return Environment("", steps)
    _link_dependencies(layer, venv)
    env, note = _venv_env(layer, venv), " + the checkout installed editable"
    if has_packaging(ctx.checkout):
        steps.append(_install_checkout(ctx, layer, venv, env))
    else:
        env["PYTHONPATH"] = str(ctx.checkout / "src" if (ctx.checkout / "src").is_dir() else ctx.checkout)
        note = f" + PYTHONPATH={env['PYTHONPATH']} (no packaging metadata)"
    if steps[-1].status is CheckStatus.PASSED and ctx.plan.import_check:
        steps.append(_import_check(ctx, env, [venv, layer], ctx.plan.import_check))
    return Environment(note, steps, env, [layer])


def _link_dependencies(layer: Path, venv: Path) -> None:
    """The layer sees the dependency venv's packages (its `.pth` files processed too); the file's name
    sorts after editable installs' `.pth` files, so the checkout comes first on `sys.path`."""
    site = _site_packages(venv)
    line = f"import site; site.addsitedir({str(site)!r})\n"
    (_site_packages(layer) / DEPS_PTH).write_text(line)


def _site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python*/site-packages"))
    if not found:
        raise FileNotFoundError(f"no site-packages under {venv}")
    return found[0]


def _install_checkout(ctx: _Context, layer: Path, venv: Path, env: dict[str, str]) -> CheckRun:
    """The checkout, editable, into the layer: no dependencies, no index, the venv's build backend."""
    checkout = shlex.quote(str(ctx.checkout))
    if _installer() == "uv":
        command = f"uv pip install --offline --no-deps --no-build-isolation -e {checkout}"
    else:
        command = f"python -m pip install --no-index --no-deps --no-build-isolation -e {checkout}"
    ctx.say("installing the checkout (editable, no network)…")
    # Recent setuptools runs `setup.py develop` by calling pip again; these reach that inner pip too (pip's
    # environment booleans are inverted for `no-` options: 0 turns build isolation off).
    offline = {"PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0"}
    step_env = {**env, **_installer_env(ctx), **offline, "PIP_NO_CACHE_DIR": "1"}
    return _step(command, _sandboxed(ctx, command, step_env, "none", [layer, *_uv_cache(ctx)], [venv]))


def _import_check(ctx: _Context, env: dict[str, str], readable: list[Path], package: str) -> CheckRun:
    """`package` must come from the checkout: a copy installed elsewhere and found first would make the
    tests pass or fail on code the change never touched."""
    command = f"python -c {shlex.quote(f'import {package}, os; print(os.path.realpath({package}.__file__))')}"
    done = _sandboxed(ctx, command, env, "none", [], readable)
    run = _step(command, done)
    if run.status is not CheckStatus.PASSED:
        return _import_failed(run, package, done.output.decode(errors="replace"))
    lines = done.output.decode(errors="replace").strip().splitlines()
    where = lines[-1].strip() if lines else ""
    if not Path(where).is_relative_to(ctx.checkout):
        reason = f"imports {package} from {where}, not from the checkout"
        return run.model_copy(
            update={"status": CheckStatus.COULD_NOT_RUN, "reason": reason, "summary": reason}
        )
    return run.model_copy(update={"summary": f"{package} imports from the checkout"})


def _import_failed(run: CheckRun, package: str, output: str) -> CheckRun:
    """A package that is not there at all is a set-up problem; one that raises while importing is the
    code's own problem (perhaps the change's), left for the tests to report as failures."""
    if re.search(rf"ModuleNotFoundError: No module named '{re.escape(package)}'", output):
        reason = f"{package} is not importable in the test environment"
        return run.model_copy(update={"reason": reason, "summary": reason})
    note = f"importing {package} raised ({_error_line(output)}); left to the tests"
    return run.model_copy(update={"status": CheckStatus.PASSED, "reason": "", "summary": note})


def _venv_env(venv: Path, *more: Path) -> dict[str, str]:
    """PATH with the venv's bin first (so `python` is the venv's), and `VIRTUAL_ENV` as activation sets."""
    bins = [str(v / "bin") for v in (venv, *more)]
    return {
        "PATH": os.pathsep.join([*bins, os.environ.get("PATH", "/usr/bin:/bin")]),
        "VIRTUAL_ENV": str(venv),
    }


# --- one sandboxed step ---------------------------------------------------------------------------------


def _sandboxed(
    ctx: _Context,
    command: str,
    env: dict[str, str],
    network: Network,
    writable: Sequence[Path],
    readable: Sequence[Path],
) -> Completed:
    return ctx.sandbox.run(
        command,
        root=ctx.checkout,
        timeout_s=ctx.timeout_s,
        env=env,
        network=network,
        writable=writable,
        readable=readable,
    )


def _step(command: str, done: Completed, label: str | None = None) -> CheckRun:
    """A set-up step's `CheckRun`: passed on exit 0, else `could_not_run` with the installer's own error
    line as the reason — a broken environment says nothing about the change."""
    from bot.validation.results import check_run

    output = done.output.decode(errors="replace")
    run = check_run(label or command, done.exit_code, done.duration_s, output, done.timed_out)
    if done.exit_code == 0 and not done.timed_out:
        return run.model_copy(update={"status": CheckStatus.PASSED, "reason": ""})
    reason = run.reason if done.timed_out else _error_line(output) or f"exit code {done.exit_code}"
    return run.model_copy(update={"status": CheckStatus.COULD_NOT_RUN, "reason": f"set-up failed: {reason}"})


def _error_line(output: str) -> str:
    """The line that says what went wrong: pip's `ERROR:`, an exception, else the last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for pattern in (r"^ERROR: (?!Ignored)", r"^\w+(?:Error|Exception)\b", r"^error: "):
        found = [line for line in lines if re.match(pattern, line)]
        if found:
            return found[0][:200]
    return lines[-1][:200] if lines else ""


def _python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"
