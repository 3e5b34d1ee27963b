"""Which commands check a checkout, and what they need installed: read from the repository's own files.

A repository already says how its tests run — in CI, in tox or nox, in its packaging metadata — so the plan
is read from there, in that order, and `source` names the file used, for people reading a review. Reading
is all this module does: no file of the repository is ever executed (a noxfile is parsed, not imported), so
detection is safe on any checkout. Install steps found in CI are not copied: they mix caching, matrix
variables and publishing; the test dependencies are read from the packaging metadata instead.

Python commands are always written `python -m pytest` / `python -m unittest`, never a bare `pytest`: inside
the checkout's virtualenv `python` is the venv's interpreter, while a `pytest` script could be any on PATH.
"""

from __future__ import annotations

import ast
import configparser
import json
import re
import shlex
import tomllib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from bot.validation.schema import ValidationPlan

CONFIG_SOURCE = ".github/archon.yml"
PYTEST = "python -m pytest -q"
TEST_EXTRAS = ("test", "tests", "testing")
TEST_GROUPS = ("test", "tests")
REQUIREMENT_GLOBS = ("requirements*test*.txt", "test-requirements.txt", "requirements/test*.txt")
NOT_PACKAGES = {"tests", "test", "testing", "docs", "doc", "examples", "example", "scripts", "benchmarks"}
NOT_PACKAGES |= {"build", "dist", "site-packages", "node_modules", "venv", "env"}
NOT_MODULES = {"setup", "conftest", "noxfile", "tasks", "manage", "fabfile"}
_TEST_LINE = re.compile(
    r"(?:^|[\s;&|(])(?P<cmd>(?:python3?(?:\.\d+)?\s+-m\s+)?(?:pytest|py\.test|tox|nox|unittest)\b"
    r"|(?:npm|yarn|pnpm)\s+(?:run\s+)?test\b|go\s+test\b|cargo\s+test\b|make\s+test\b)"
)
_PYTHON_PREFIX = re.compile(r"^(?:python3?(?:\.\d+)?\s+-m\s+)?(?P<tool>pytest|py\.test|unittest)\b")
_GITHUB_EXPR = re.compile(r"\S*\$\{\{.*?\}\}\S*")


def detect(root: Path, validate: Sequence[str] = (), setup: Sequence[str] = ()) -> ValidationPlan:
    """The plan for `root`: `.github/archon.yml`'s `validate:` (with its `setup:`) when given, else the first
    of the repository's own sources that names a test command. Empty when nothing is recognisable."""
    root = Path(root)
    if validate:
        return _configured(root, validate, setup)
    for reader in _READERS:
        if plan := reader(root):
            return plan
    return ValidationPlan()


def _configured(root: Path, validate: Sequence[str], setup: Sequence[str]) -> ValidationPlan:
    """The repository's own commands. A Python project still gets its virtualenv, built by the configured
    `setup:` or, when there is none, by the detected install steps."""
    python = is_python_project(root)
    steps = tuple(setup) if setup else (python_setup(root, validate) if python else ())
    if setup and python and (backend := backend_step(root)):
        # The checkout is installed editable without build isolation: its backend must be in the venv.
        steps = (backend, *steps)
    return ValidationPlan(
        ecosystem="python" if python else "",
        source=CONFIG_SOURCE,
        setup=steps,
        commands=tuple(validate),
        python_env=python,
        import_check=import_name(root) if python else None,
    )


# --- sources, in the order they are tried ------------------------------------------------------


def _workflows(root: Path) -> ValidationPlan | None:
    """Test commands in CI's `run:` steps; tox or nox there hands over to their own config."""
    folder = root / ".github" / "workflows"
    files = sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")]) if folder.is_dir() else []
    for path in files:
        commands = _dedupe(c for run in _run_steps(path) for c in _test_commands(run))
        if not commands:
            continue
        source = f".github/workflows/{path.name}"
        if tools := [t for t in map(_delegated_tool, commands) if t]:
            delegated = _tox(root) if tools[0] == "tox" else _nox(root)
            if delegated:
                return delegated.model_copy(update={"source": f"{source} → {delegated.source}"})
            continue
        return _plan_for(root, commands, source)
    return None


def _tox(root: Path) -> ValidationPlan | None:
    """`[testenv]` of tox.ini, `[tool.tox]` in pyproject.toml or setup.cfg's tox sections."""
    for source, env in _tox_envs(root):
        commands = [_python_command(_tox_substitute(line)) for line in env.get("commands", [])]
        commands = [c for c in commands if c and not _is_install(c)]
        if not commands:
            continue
        deps = [_tox_substitute(d) for d in env.get("deps", [])]
        extras = [e for e in env.get("extras", []) if e]
        return _plan_for(root, commands, source, extra_deps=deps, extras=extras)
    return None


def _nox(root: Path) -> ValidationPlan | None:
    """The `test`/`tests` session of noxfile.py, read with `ast` (never imported)."""
    path = root / "noxfile.py"
    session = _nox_session(path) if path.is_file() else None
    if session is None:
        return None
    commands, deps, extras = _nox_calls(session)
    if not commands:
        return None
    return _plan_for(root, commands, f"noxfile.py session {session.name}", extra_deps=deps, extras=extras)


def _pyproject(root: Path) -> ValidationPlan | None:
    """pytest configured in pyproject.toml, or named by its test dependency group / extra."""
    data = _toml(root / "pyproject.toml")
    if not data:
        return None
    if "pytest" in data.get("tool", {}):
        return _plan_for(root, [PYTEST], "pyproject.toml [tool.pytest]")
    for kind, name, deps in _test_dep_lists(data):
        if any(_requirement_name(d) == "pytest" for d in deps):
            return _plan_for(root, [PYTEST], f"pyproject.toml {kind} {name}")
    return None


def _test_dep_lists(data: dict[str, Any]) -> Iterable[tuple[str, str, list[str]]]:
    """(kind, name, requirements) of pyproject's test dependency groups and extras, test ones first."""
    groups = data.get("dependency-groups", {})
    extras = data.get("project", {}).get("optional-dependencies", {})
    for kind, table, names in (
        ("[dependency-groups]", groups, (*TEST_GROUPS, "dev")),
        ("[project.optional-dependencies]", extras, (*TEST_EXTRAS, "dev")),
    ):
        for name in names:
            if isinstance(table, dict) and isinstance(table.get(name), list):
                yield kind, name, [d for d in table[name] if isinstance(d, str)]


def _setup_files(root: Path) -> ValidationPlan | None:
    """pytest in setup.cfg (`[tool:pytest]` or a test extra) or in setup.py's `extras_require`."""
    cfg = _ini(root / "setup.cfg")
    if cfg is not None and cfg.has_section("tool:pytest"):
        return _plan_for(root, [PYTEST], "setup.cfg [tool:pytest]")
    for source, extras in (("setup.cfg", _cfg_extras(cfg)), ("setup.py", _setup_py(root).get("extras", {}))):
        for name in (*TEST_EXTRAS, "dev"):
            if any(_requirement_name(d) == "pytest" for d in extras.get(name, [])):
                return _plan_for(root, [PYTEST], f"{source} extras_require {name}")
    return None


def _requirements(root: Path) -> ValidationPlan | None:
    for name in requirement_files(root):
        uses_pytest = any(_requirement_name(r) == "pytest" for r in _requirement_lines(root / name))
        command = PYTEST if uses_pytest else _unittest_command(root)
        if command:
            return _plan_for(root, [command], name)
    return None


def requirement_files(root: Path) -> list[str]:
    """Test requirements files, relative to `root`; `requirements-dev.txt` only when there is none."""
    found = _dedupe(str(p.relative_to(root)) for g in REQUIREMENT_GLOBS for p in sorted(root.glob(g)))
    found = [f for f in found if (root / f).is_file()]
    return found or (["requirements-dev.txt"] if (root / "requirements-dev.txt").is_file() else [])


def _pytest_files(root: Path) -> ValidationPlan | None:
    for name in ("pytest.ini", "conftest.py", "tests/conftest.py"):
        if (root / name).is_file():
            return _plan_for(root, [PYTEST], name)
    return None


def _unittest(root: Path) -> ValidationPlan | None:
    command = _unittest_command(root)
    return _plan_for(root, [command], "tests/ (unittest)") if command else None


def _test_modules(root: Path) -> ValidationPlan | None:
    """Test modules anywhere in the project (`pkg/tests/test_x.py`) with no configuration saying how to run
    them: pytest when they are written for it (module-level `def test_…` or `import pytest`), since pytest
    also runs unittest cases; else unittest discovery from the root."""
    modules = [p for p in _find_test_modules(root) if p.is_file()]
    if not modules:
        return None
    source = f"{modules[0].parent.relative_to(root).as_posix()}/ (test modules, no configuration)"
    if any(_pytest_style(p) for p in modules):
        return _plan_for(root, [PYTEST], source)
    return _plan_for(root, ["python -m unittest discover -s . -v"], source)


def _find_test_modules(root: Path, depth: int = 4) -> list[Path]:
    found = []
    for path in sorted(root.rglob("test_*.py")):
        rel = path.relative_to(root).parts
        if len(rel) <= depth and not any(part in NOT_PACKAGES - {"tests", "test", "testing"} for part in rel):
            found.append(path)
    return found[:200]


def _pytest_style(path: Path) -> bool:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return False
    return bool(re.search(r"^def test_|^import pytest|^from pytest", text, re.MULTILINE))


def _makefile(root: Path) -> ValidationPlan | None:
    path = root / "Makefile"
    if path.is_file() and re.search(r"^test\s*:", path.read_text(errors="replace"), re.MULTILINE):
        return _plan_for(root, ["make test"], "Makefile test:")
    return None


def _package_json(root: Path) -> ValidationPlan | None:
    try:
        scripts = json.loads((root / "package.json").read_text()).get("scripts", {})
    except (OSError, ValueError, AttributeError):
        return None
    test = scripts.get("test", "") if isinstance(scripts, dict) else ""
    if not test or "no test specified" in test:
        return None
    return ValidationPlan(
        ecosystem="node", source="package.json scripts.test", commands=("npm test --silent",)
    )


def _go(root: Path) -> ValidationPlan | None:
    if not (root / "go.mod").is_file():
        return None
    return ValidationPlan(ecosystem="go", source="go.mod", commands=("go test ./...",))


def _cargo(root: Path) -> ValidationPlan | None:
    if not (root / "Cargo.toml").is_file():
        return None
    return ValidationPlan(ecosystem="rust", source="Cargo.toml", commands=("cargo test --quiet",))


_READERS: tuple[Callable[[Path], ValidationPlan | None], ...] = (
    _workflows,
    _tox,
    _nox,
    _pyproject,
    _setup_files,
    _requirements,
    _pytest_files,
    _unittest,
    _test_modules,
    _makefile,
    _package_json,
    _go,
    _cargo,
)


# --- building a plan ----------------------------------------------------------------------------


def _plan_for(
    root: Path,
    commands: Sequence[str],
    source: str,
    extra_deps: Sequence[str] = (),
    extras: Sequence[str] = (),
) -> ValidationPlan:
    """A plan for `commands`: a Python one (virtualenv, install steps, import check) when they run Python or
    the repository is a Python project; otherwise the commands alone, for their own toolchain."""
    ecosystem = _ecosystem(commands[0])
    python = ecosystem == "python" or (ecosystem == "make" and is_python_project(root))
    if not python:
        return ValidationPlan(ecosystem=ecosystem, source=source, commands=tuple(commands))
    return ValidationPlan(
        ecosystem="python",
        source=source,
        setup=python_setup(root, commands, extra_deps, extras),
        commands=tuple(commands),
        python_env=True,
        import_check=import_name(root),
    )


def _ecosystem(command: str) -> str:
    word = command.split()[0] if command.split() else ""
    if word.startswith("python") or word in ("pytest", "tox", "nox"):
        return "python"
    return {"npm": "node", "yarn": "node", "pnpm": "node", "go": "go", "cargo": "rust"}.get(word, word)


def python_setup(
    root: Path, commands: Sequence[str] = (), extra_deps: Sequence[str] = (), extras: Sequence[str] = ()
) -> tuple[str, ...]:
    """The install steps CI would run, as pip commands for the venv: the build backend (so the checkout can
    be installed editable without build isolation, offline), then the project's dependencies and test
    dependencies. The checkout itself is installed per checkout, later, by `environment`."""
    steps = [backend] if (backend := backend_step(root)) else []
    deps = _dedupe([*_test_dependencies(root, extras), *_tox_deps(extra_deps, root, extras)])
    if any("pytest" in c for c in commands) and not _names_pytest(root, deps):
        deps.append("pytest")
    if deps:
        steps.append(pip_install(deps))
    return tuple(steps)


def _names_pytest(root: Path, deps: Sequence[str]) -> bool:
    """Whether pytest is among `deps`, the lines of their `-r` files included (when it is not, the plan
    adds it: a `python -m pytest` command is useless without it)."""
    names = [d for d in deps if not d.startswith("-")]
    for dep in deps:
        if dep.startswith("-r "):
            names += _requirement_lines(root / dep.removeprefix("-r ").strip())
    return any(_requirement_name(name) == "pytest" for name in names)


def pip_install(requirements: Sequence[str]) -> str:
    """One pip command for the venv; `-r file` items stay two words."""
    words = []
    for item in requirements:
        words += item.split(None, 1) if item.startswith("-") else [item]
    return "python -m pip install " + " ".join(shlex.quote(w) for w in words)


def backend_step(root: Path) -> str | None:
    """The build backend's install step, as build isolation would do it: the newest versions that satisfy
    `requires` (`--upgrade`: the venv's bundled setuptools may be years old), plus `wheel` for setuptools,
    which needed it to build (editable) wheels before 70.1 and asks for it only through a hook."""
    requires = build_requires(root)
    if not requires:
        return None
    names = {_requirement_name(r) for r in requires}
    if "setuptools" in names and "wheel" not in names:
        requires.append("wheel")
    return pip_install(["--upgrade", *requires])


def build_requires(root: Path) -> list[str]:
    """`[build-system] requires`, or what pip assumes without one (setuptools), for an installable project."""
    data = _toml(root / "pyproject.toml")
    if requires := data.get("build-system", {}).get("requires"):
        return [str(r) for r in requires]
    return ["setuptools>=40.8.0"] if has_packaging(root) else []


def _test_dependencies(root: Path, extras: Sequence[str]) -> list[str]:
    """The project's runtime dependencies plus its test extra, test dependency group and test requirements
    file. Metadata that cannot be read without running code falls back to pip reading it (`-e .[extra]`)."""
    meta = project_metadata(root)
    chosen = list(extras) or _pick(meta["extras"], (*TEST_EXTRAS, "dev"))
    deps = list(meta["dependencies"])
    for extra in chosen:
        deps += _expand_extra(meta, extra, set())
    groups = _dependency_groups(root)
    if picked := _pick(groups, (*TEST_GROUPS, "dev")):
        deps += _expand_group(groups, picked[0], set())
    files = requirement_files(root) + (["requirements.txt"] if (root / "requirements.txt").is_file() else [])
    deps += [f"-r {name}" for name in files]
    if meta["dynamic"]:
        suffix = f"[{','.join(chosen)}]" if chosen else ""
        deps.append(f"-e .{suffix}")
    return deps


def _pick(available: dict[str, Any], names: Sequence[str]) -> list[str]:
    """The first name of `names` present in `available` (a test extra before `dev`)."""
    return next(([n] for n in names if n in available), [])


def _expand_extra(meta: dict[str, Any], extra: str, seen: set[str]) -> list[str]:
    """An extra's requirements, with `project[other]` self-references expanded (so the project itself is
    never installed from the index)."""
    seen.add(extra)
    out = []
    for req in meta["extras"].get(extra, []):
        if meta["name"] and _requirement_name(req) == meta["name"]:
            for other in re.findall(r"[\w.-]+", req.partition("[")[2].partition("]")[0]):
                if other not in seen:
                    out += _expand_extra(meta, other, seen)
        else:
            out.append(req)
    return out


def _dependency_groups(root: Path) -> dict[str, list[Any]]:
    groups = _toml(root / "pyproject.toml").get("dependency-groups", {})
    return groups if isinstance(groups, dict) else {}


def _expand_group(groups: dict[str, list[Any]], name: str, seen: set[str]) -> list[str]:
    """PEP 735: a group's requirements, `{include-group = ...}` resolved (pip before 25.1 has no
    `--group`, so the strings are handed to it directly)."""
    seen.add(name)
    out: list[str] = []
    for item in groups.get(name, []):
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict) and (other := item.get("include-group")) and other not in seen:
            out += _expand_group(groups, str(other), seen)
    return out


def _tox_deps(deps: Sequence[str], root: Path, extras: Sequence[str]) -> list[str]:
    """tox/nox deps as pip arguments; the project itself (`.`, `-e .[test]`) becomes its extras' deps."""
    out = []
    for dep in deps:
        dep = dep.strip()
        target = re.sub(r"^-e\s*", "", dep)
        if target.startswith(".") and not target.startswith("./requirements"):
            names = re.findall(r"[\w.-]+", target.partition("[")[2].partition("]")[0])
            meta = project_metadata(root)
            out += [d for n in names if n not in extras for d in _expand_extra(meta, n, set())]
        elif dep.startswith("-r") or dep.startswith("-c"):
            out.append(f"{dep[:2]} {dep[2:].strip()}")
        elif dep:
            out.append(dep)
    return out


# --- packaging metadata --------------------------------------------------------------------------


def is_python_project(root: Path) -> bool:
    names = ("pyproject.toml", "setup.py", "setup.cfg", "requirements.txt", "tox.ini", "noxfile.py")
    return any((root / n).is_file() for n in names)


def has_packaging(root: Path) -> bool:
    """Whether pip can install the checkout itself (editable): a build system, a `[project]` table or a
    setup.py. (pip refuses a directory with a setup.cfg alone.)"""
    data = _toml(root / "pyproject.toml")
    return bool(data.get("build-system") or data.get("project")) or (root / "setup.py").is_file()


def project_metadata(root: Path) -> dict[str, Any]:
    """name, dependencies, extras, and whether some of that is computed at build time (`dynamic`)."""
    project = _toml(root / "pyproject.toml").get("project")
    if isinstance(project, dict):
        return _pyproject_metadata(root, project)
    cfg = _ini(root / "setup.cfg")
    setup_py = _setup_py(root)
    name = (cfg.get("metadata", "name", fallback="") if cfg else "") or setup_py.get("name", "")
    deps = _cfg_list(cfg.get("options", "install_requires", fallback="")) if cfg else []
    extras = _cfg_extras(cfg) or setup_py.get("extras", {})
    deps = deps or setup_py.get("install_requires", [])
    unknown = not setup_py and not (cfg and cfg.has_section("options"))
    dynamic = (root / "setup.py").is_file() and bool(setup_py.get("dynamic") or unknown)
    return {"name": _normalise(name), "dependencies": deps, "extras": extras, "dynamic": dynamic}


def _pyproject_metadata(root: Path, project: dict[str, Any]) -> dict[str, Any]:
    dynamic = set(project.get("dynamic", []))
    deps = [str(d) for d in project.get("dependencies", [])]
    extras = {k: [str(v) for v in vs] for k, vs in project.get("optional-dependencies", {}).items()}
    files = _toml(root / "pyproject.toml").get("tool", {}).get("setuptools", {}).get("dynamic", {})
    if "dependencies" in dynamic and isinstance(files.get("dependencies"), dict):
        deps += [f"-r {f}" for f in _as_list(files["dependencies"].get("file"))]
        dynamic.discard("dependencies")
    unresolved = dynamic & {"dependencies", "optional-dependencies"}
    return {"name": _normalise(project.get("name", "")), "dependencies": deps, "extras": extras,
            "dynamic": bool(unresolved)}  # fmt: skip


def _cfg_extras(cfg: configparser.ConfigParser | None) -> dict[str, list[str]]:
    if cfg is None or not cfg.has_section("options.extras_require"):
        return {}
    return {k: _cfg_list(v) for k, v in cfg.items("options.extras_require")}


def _setup_py(root: Path) -> dict[str, Any]:
    """Literal `setup(...)` arguments of setup.py, read with `ast`; `dynamic` when they are not literals."""
    try:
        tree = ast.parse((root / "setup.py").read_text())
    except (OSError, SyntaxError, ValueError):
        return {}
    names = _literal_assignments(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node) in ("setup", "setuptools.setup"):
            return _setup_kwargs(node, names)
    return {}


def _setup_kwargs(call: ast.Call, names: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"dynamic": False}
    wanted = {"name": "name", "install_requires": "install_requires", "extras_require": "extras"}
    for keyword in call.keywords:
        if keyword.arg not in wanted:
            continue
        value = _literal(keyword.value, names)
        if value is None:
            out["dynamic"] = keyword.arg != "name"
        else:
            out[wanted[keyword.arg]] = value
    return out


def _literal_assignments(tree: ast.Module) -> dict[str, Any]:
    """Module-level `NAME = <literal>`, so `install_requires=REQUIRES` still reads without running code."""
    names: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = _literal(node.value, names)
            if value is not None:
                names[node.targets[0].id] = value
    return names


def _literal(node: ast.AST, names: dict[str, Any]) -> Any:
    if isinstance(node, ast.Name):
        return names.get(node.id)
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        return None


def _call_name(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return f"{func.value.id}.{func.attr}"
    return func.id if isinstance(func, ast.Name) else ""


def import_name(root: Path) -> str | None:
    """The top-level package the tests should import from the checkout: `src/<pkg>/`, `<pkg>/`, or a
    single `<name>.py` beside the packaging files. The project's own name wins when several qualify."""
    src = root / "src"
    candidates = _packages(src) if src.is_dir() else []
    candidates = candidates or _packages(root)
    if not candidates and ((root / "setup.py").is_file() or (root / "pyproject.toml").is_file()):
        candidates = _modules(root)
    if not candidates:
        return None
    wanted = project_metadata(root)["name"].replace("-", "_")
    return wanted if wanted in candidates else candidates[0]


def _packages(folder: Path) -> list[str]:
    return sorted(
        p.parent.name
        for p in folder.glob("*/__init__.py")
        if p.parent.name.isidentifier() and p.parent.name not in NOT_PACKAGES
    )


def _modules(folder: Path) -> list[str]:
    return sorted(
        p.stem
        for p in folder.glob("*.py")
        if p.stem.isidentifier() and p.stem not in NOT_MODULES and not p.stem.startswith("test")
    )


# --- CI workflows ----------------------------------------------------------------------------------


def _run_steps(path: Path) -> list[str]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return []
    jobs = data.get("jobs", {}) if isinstance(data, dict) else {}
    runs = []
    for job in jobs.values() if isinstance(jobs, dict) else []:
        for step in job.get("steps", []) if isinstance(job, dict) else []:
            if isinstance(step, dict) and isinstance(step.get("run"), str):
                runs.append(step["run"])
    return runs


def _test_commands(script: str) -> list[str]:
    """The test invocations of one `run:` script, one per logical line, with `${{ }}` expressions and
    install steps left out."""
    out = []
    for line in script.replace("\\\n", " ").splitlines():
        for part in re.split(r"\s*(?:&&|;|\|\|)\s*", line.strip()):
            if _is_install(part) or part.startswith("#"):
                continue
            match = _TEST_LINE.search(part)
            if match:
                out.append(_python_command(_GITHUB_EXPR.sub("", part[match.start("cmd") :]).strip()))
    return [c for c in out if c]


def _delegated_tool(command: str) -> str | None:
    """tox or nox, when a CI command hands the tests over to one of them."""
    match = re.match(r"(?:python3?(?:\.\d+)?\s+-m\s+)?(tox|nox)\b", command)
    return match.group(1) if match else None


def _is_install(command: str) -> bool:
    return bool(re.search(r"\b(?:pip3?|uv\s+pip|npm|yarn|pnpm)\s+(?:install|ci|add)\b", command))


def _python_command(command: str) -> str:
    """`pytest …` / `python3 -m pytest …` / `coverage run -m pytest …` as `python -m …`, so the venv's
    interpreter runs it; anything else unchanged."""
    command = re.sub(r"^-\s*", "", command.strip())  # tox's "ignore the exit code" marker
    command = re.sub(r"^coverage\s+", "python -m coverage ", command)
    match = _PYTHON_PREFIX.match(command)
    if not match:
        return re.sub(r"^python3?(?:\.\d+)?\s", "python ", command)
    tool = "pytest" if match["tool"] == "py.test" else match["tool"]
    return f"python -m {tool}{command[match.end() :]}"


# --- tox and nox -------------------------------------------------------------------------------------


def _tox_envs(root: Path) -> Iterable[tuple[str, dict[str, list[str]]]]:
    """(source, {commands, deps, extras}) for each tox configuration found, best first."""
    ini = _ini(root / "tox.ini")
    if ini is not None and (env := _ini_testenv(ini, "")):
        yield f"tox.ini [{env[0]}]", env[1]
    tox = _toml(root / "pyproject.toml").get("tool", {}).get("tox", {})
    if isinstance(tox.get("legacy_tox_ini"), str):
        parser = _ini_text(tox["legacy_tox_ini"])
        if parser is not None and (env := _ini_testenv(parser, "")):
            yield f"pyproject.toml [tool.tox] [{env[0]}]", env[1]
    if isinstance(tox.get("env_run_base"), dict):
        yield "pyproject.toml [tool.tox.env_run_base]", _toml_testenv(tox["env_run_base"])
    cfg = _ini(root / "setup.cfg")
    if cfg is not None and (env := _ini_testenv(cfg, "tox:")):
        yield f"setup.cfg [{env[0]}]", env[1]


def _ini_testenv(parser: configparser.ConfigParser, prefix: str) -> tuple[str, dict[str, list[str]]] | None:
    """(section name, {commands, deps, extras}) of the first test environment with commands."""
    names = [f"{prefix}testenv", "testenv"]
    names += [s for s in parser.sections() if re.match(rf"(?:{prefix})?testenv:(?:py|test)", s)]
    for name in dict.fromkeys(names):
        if parser.has_section(name) and parser.get(name, "commands", fallback="").strip():
            env = {key: _ini_lines(parser, name, key) for key in ("commands", "deps", "extras")}
            return name, env
    return None


def _ini_lines(parser: configparser.ConfigParser, section: str, key: str) -> list[str]:
    """A multi-line tox value, with `\\` continuations joined and `{[section]key}` references resolved."""
    text = parser.get(section, key, fallback="")
    for ref_section, ref_key in re.findall(r"\{\[([^\]]+)\]([\w-]+)\}", text):
        text = text.replace(f"{{[{ref_section}]{ref_key}}}", parser.get(ref_section, ref_key, fallback=""))
    lines = text.replace("\\\n", " ").splitlines()
    return [re.sub(r"\s+", " ", line).strip() for line in lines if line.strip() and not line.startswith("#")]


def _toml_testenv(env: dict[str, Any]) -> dict[str, list[str]]:
    """tox 4's native TOML: commands are argv lists; `{replace = "posargs", default = [...]}` is its
    posargs with a default."""
    commands = [" ".join(shlex.quote(w) for w in _toml_words(c)) for c in env.get("commands", []) if c]
    return {
        "commands": [c.replace("'{posargs}'", "") for c in commands],
        "deps": [str(d) for d in env.get("deps", [])],
        "extras": [str(e) for e in env.get("extras", [])],
    }


def _toml_words(command: list[Any]) -> list[str]:
    words: list[str] = []
    for word in command:
        if isinstance(word, dict):
            words += [str(w) for w in _as_list(word.get("default"))]
        else:
            words.append(str(word))
    return words


def _tox_substitute(text: str) -> str:
    """tox's substitutions, for a command run from the checkout's root inside our venv."""
    text = re.sub(r"\{posargs:([^}]*)\}", r"\1", text)
    text = text.replace("{posargs}", "").replace("{toxinidir}", ".").replace("{tox_root}", ".")
    text = re.sub(r"\{envpython\}|\{env_python\}", "python", text)
    text = re.sub(r"\{envbindir\}/|\{env_bin_dir\}/", "", text)
    # Scratch directories tox would make per environment: the sandbox's private /tmp serves.
    text = re.sub(r"\{envtmpdir\}|\{env_tmp_dir\}", "/tmp/archon-envtmp", text)
    text = re.sub(r"\{toxworkdir\}|\{work_dir\}", "/tmp/archon-toxwork", text)
    text = re.sub(r"\{envname\}|\{env_name\}", "archon", text)
    return re.sub(r"\s+", " ", text).strip()


def _nox_session(path: Path) -> ast.FunctionDef | None:
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and _nox_name(node) in ("test", "tests"):
            return node
    return None


def _nox_name(func: ast.FunctionDef) -> str | None:
    """The session's name (`name=` or the function's), or None when it is not a nox session."""
    for decorator in func.decorator_list:
        call = decorator if isinstance(decorator, ast.Call) else None
        target = call.func if call else decorator
        text = ast.unparse(target)
        if text in ("nox.session", "session"):
            for keyword in call.keywords if call else []:
                if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                    return str(keyword.value.value)
            return func.name
    return None


def _nox_calls(func: ast.FunctionDef) -> tuple[list[str], list[str], list[str]]:
    """`session.run(...)` test commands, `session.install(...)` deps and extras, constant arguments only."""
    commands: list[str] = []
    deps: list[str] = []
    for node in ast.walk(func):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        args = [str(a.value) for a in node.args if isinstance(a, ast.Constant)]
        if node.func.attr == "run" and args and _TEST_LINE.search(" ".join(args)):
            commands.append(_python_command(" ".join(shlex.quote(a) for a in args)))
        elif node.func.attr == "install":
            deps += _nox_install_args(args)
    return commands, deps, []


def _nox_install_args(args: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(args):
        if args[i] in ("-r", "-c", "-e") and i + 1 < len(args):
            out.append(f"{args[i]} {args[i + 1]}")
            i += 2
            continue
        out.append(args[i])
        i += 1
    return out


# --- small readers -------------------------------------------------------------------------------------


def _unittest_command(root: Path) -> str | None:
    """unittest discovery over `tests/` when it holds test modules: `-t .` only when `tests` is a package
    (discovery refuses a start directory it cannot import otherwise); `-v`, because with `-q` unittest
    names only the tests that failed, and comparisons need every test's outcome."""
    tests = root / "tests"
    if not (tests.is_dir() and any(tests.rglob("test*.py"))):
        return None
    top = " -t ." if (tests / "__init__.py").is_file() else ""
    return f"python -m unittest discover -s tests{top} -v"


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}


def _ini(path: Path) -> configparser.ConfigParser | None:
    try:
        return _ini_text(path.read_text()) if path.is_file() else None
    except OSError:
        return None


def _ini_text(text: str) -> configparser.ConfigParser | None:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(text)
    except configparser.Error:
        return None
    return parser


def _cfg_list(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip() and not line.strip().startswith("#")]


def _requirement_lines(path: Path) -> list[str]:
    try:
        return [line.split("#")[0].strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return []


def _requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return _normalise(match.group(1)) if match else ""


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", str(name)).lower()


def _as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)] if value else []


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
