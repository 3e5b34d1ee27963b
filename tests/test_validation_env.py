"""Detection on real file trees, and real test environments: real pip from PyPI through the sandbox's
`packages` network, real venvs, real bubblewrap, tests run with no network.

One data directory (venv cache and pip cache) is shared by the module, so PyPI is asked once per package.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from bot.repo_config import parse_repo_config
from bot.sandbox import Sandbox, SandboxPolicy, bwrap_problem
from bot.validation import environment
from bot.validation.detect import CONFIG_SOURCE, detect
from bot.validation.run import run_plan, selecting
from bot.validation.schema import CheckStatus, ValidationRun

needs_bwrap = pytest.mark.skipif(bwrap_problem() is not None, reason=f"bwrap unusable: {bwrap_problem()}")


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def git_init(root: Path) -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True)
        return done.stdout.strip()

    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "init")
    return git("rev-parse", "HEAD")


# --- detection ------------------------------------------------------------------------------------------

SRC_PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "tinypkg"
version = "{version}"
dependencies = []

[project.optional-dependencies]
test = [{test}]
"""


def test_tox_ini_with_a_src_layout(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pyproject.toml": SRC_PYPROJECT.format(version="0.1", test='"iniconfig"'),
            "src/tinypkg/__init__.py": "",
            "tox.ini": "[tox]\nenvlist = py311\n\n[testenv]\ndeps =\n    pytest\n    -r{toxinidir}/req.txt\n"
            "commands =\n    pytest {posargs:tests} -q\n",
        },
    )
    plan = detect(tmp_path)
    assert plan.source == "tox.ini [testenv]"
    assert plan.commands == ("python -m pytest tests -q",)
    assert plan.python_env and plan.import_check == "tinypkg"
    assert plan.setup[0] == "python -m pip install --upgrade 'setuptools>=61' wheel"
    assert plan.setup[1] == "python -m pip install iniconfig pytest -r ./req.txt"


def test_pyproject_dependency_groups(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pyproject.toml": '[project]\nname = "flat-pkg"\nversion = "1"\ndependencies = ["attrs"]\n\n'
            '[dependency-groups]\ntest = ["pytest>=8", {include-group = "lint"}]\nlint = ["ruff"]\n',
            "flat_pkg/__init__.py": "",
            "tests/__init__.py": "",
        },
    )
    plan = detect(tmp_path)
    assert plan.source == "pyproject.toml [dependency-groups] test"
    assert plan.commands == ("python -m pytest -q",)
    assert plan.setup == (  # no [build-system]: pip's default backend
        "python -m pip install --upgrade 'setuptools>=40.8.0' wheel",
        "python -m pip install attrs 'pytest>=8' ruff",
    )
    assert plan.import_check == "flat_pkg"


def test_noxfile_is_read_never_run(tmp_path: Path) -> None:
    canary = tmp_path / "ran"
    write(
        tmp_path,
        {
            "pyproject.toml": SRC_PYPROJECT.format(version="0.1", test='"pytest", "iniconfig"'),
            "src/tinypkg/__init__.py": "",
            "noxfile.py": f"import nox, pathlib\npathlib.Path({str(canary)!r}).write_text('x')\n\n"
            "@nox.session(python=['3.11'])\ndef tests(session):\n"
            "    session.install('-e', '.[test]')\n    session.run('pytest', '-x', *session.posargs)\n",
        },
    )
    plan = detect(tmp_path)
    assert plan.source == "noxfile.py session tests"
    assert plan.commands == ("python -m pytest -x",)
    assert "iniconfig" in plan.setup[-1] and not canary.exists()


def test_a_ci_workflow_wins_and_its_install_steps_are_skipped(tmp_path: Path) -> None:
    workflow = """\
jobs:
  lint:
    runs-on: ubuntu-latest
    steps:
      - run: ruff check .
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: pip install -e .[test]
      - run: |
          python -m pip install --upgrade pip
          pytest -q --maxfail=1 tests ${{ matrix.extra }}
"""
    write(
        tmp_path,
        {
            ".github/workflows/ci.yml": workflow,
            "tox.ini": "[testenv]\ncommands = pytest\n",
            "pyproject.toml": SRC_PYPROJECT.format(version="0.1", test='"pytest"'),
            "src/tinypkg/__init__.py": "",
        },
    )
    plan = detect(tmp_path)
    assert plan.source == ".github/workflows/ci.yml"
    assert plan.commands == ("python -m pytest -q --maxfail=1 tests",)
    assert not any("--upgrade pip" in s for s in plan.setup)


def test_a_workflow_running_tox_hands_over_to_tox_ini(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            ".github/workflows/test.yaml": "jobs:\n  t:\n    steps:\n      - run: pip install tox && tox\n",
            "tox.ini": "[testenv]\ndeps = pytest\ncommands = python -m pytest {posargs}\n",
        },
    )
    plan = detect(tmp_path)
    assert plan.source == ".github/workflows/test.yaml → tox.ini [testenv]"
    assert plan.commands == ("python -m pytest",)


def test_requirements_test_file_and_a_single_module(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "requirements-test.txt": "pytest\nrequests  # http\n",
            "setup.py": "from setuptools import setup\nsetup(name='tool', py_modules=['tool'])\n",
            "tool.py": "",
        },
    )
    plan = detect(tmp_path)
    assert plan.source == "requirements-test.txt"
    assert plan.setup[-1] == "python -m pip install -r requirements-test.txt"
    assert plan.import_check == "tool" and plan.commands == ("python -m pytest -q",)


def test_plain_unittest_tests(tmp_path: Path) -> None:
    write(tmp_path, {"tests/__init__.py": "", "tests/test_a.py": "", "pkg/__init__.py": ""})
    plan = detect(tmp_path)
    assert plan.source == "tests/ (unittest)"
    assert plan.commands == ("python -m unittest discover -s tests -t . -v",)
    assert plan.python_env and plan.setup == () and plan.import_check == "pkg"


@pytest.mark.parametrize(
    ("files", "source", "ecosystem", "command"),
    [
        (
            {"package.json": '{"scripts": {"test": "node --test"}}'},
            "package.json scripts.test",
            "node",
            "npm",
        ),
        ({"go.mod": "module example.com/x\n"}, "go.mod", "go", "go test ./..."),
        ({"Makefile": "test:\n\techo ok\n"}, "Makefile test:", "make", "make test"),
        ({"Cargo.toml": "[package]\nname = 'x'\n"}, "Cargo.toml", "rust", "cargo test"),
    ],
)
def test_other_ecosystems(
    tmp_path: Path, files: dict[str, str], source: str, ecosystem: str, command: str
) -> None:
    plan = detect(write(tmp_path, files))
    assert (plan.source, plan.ecosystem, plan.python_env) == (source, ecosystem, False)
    assert plan.commands[0].startswith(command) and plan.setup == ()


def test_archon_yml_wins_with_its_setup(tmp_path: Path) -> None:
    pyproject = SRC_PYPROJECT.format(version="1", test="")
    write(tmp_path, {"tox.ini": "[testenv]\ncommands = pytest\n", "pyproject.toml": pyproject})
    config = parse_repo_config(
        "validate:\n  - python -m pytest tests/unit\nsetup:\n  - pip install -r dev.txt\n"
    )
    plan = detect(tmp_path, config.validate_commands, config.setup_commands)
    assert plan.source == CONFIG_SOURCE and plan.commands == ("python -m pytest tests/unit",)
    assert plan.setup[-1] == "pip install -r dev.txt" and "setuptools" in plan.setup[0]


def test_selecting_tests() -> None:
    assert (
        selecting("python -m pytest -q", ["tests/test_a.py::test_b"])
        == "python -m pytest -q tests/test_a.py::test_b"
    )
    unittest = selecting("python -m unittest discover -s tests -t . -v", ["tests/test_a.py::Case::test_b"])
    assert unittest == "python -m unittest -v tests.test_a.Case.test_b"
    assert selecting("npm test", ["x"]) is None and selecting("npm test", []) == "npm test"


# --- real environments ------------------------------------------------------------------------------------

TEST_FILE = """\
import socket

import iniconfig
import pytest

import tinypkg


def test_double():
    assert tinypkg.double(2) == 4 and iniconfig


def test_no_network():
    with pytest.raises(OSError):
        socket.create_connection(("pypi.org", 443), timeout=5)
"""


def project(root: Path, version: str = "0.1", test: str = '"iniconfig"', layout: str = "src") -> Path:
    """A tiny setuptools project: `src/tinypkg`, or `lib/` mapped to `tinypkg` (`layout="mapped"`, which
    setuptools installs editable through an import hook rather than a path entry)."""
    files = {
        "pyproject.toml": SRC_PYPROJECT.format(version=version, test=test),
        "tests/test_double.py": TEST_FILE,
    }
    code = "def double(x):\n    return 2 * x\n"
    if layout == "src":
        files["src/tinypkg/__init__.py"] = code
    else:
        files["lib/__init__.py"] = code
        files["pyproject.toml"] += (
            '\n[tool.setuptools]\npackage-dir = {"tinypkg" = "lib"}\npackages = ["tinypkg"]\n'
        )
    files["pyproject.toml"] += '\n[tool.pytest.ini_options]\ntestpaths = ["tests"]\n'
    return write(root, files)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("archon-data")


@pytest.fixture(scope="module")
def box(data_dir: Path) -> Sandbox:
    """The data dir hidden, as in a deployment: the venv and caches are reachable only as mounted."""
    return Sandbox(SandboxPolicy(mode="required", hidden=(data_dir,)))


@pytest.fixture(scope="module")
def cold(
    tmp_path_factory: pytest.TempPathFactory, box: Sandbox, data_dir: Path
) -> tuple[Path, ValidationRun]:
    root = project(tmp_path_factory.mktemp("cold"))
    git_init(root)
    return root, run_plan(detect(root), root, sandbox=box, data_dir=data_dir)


@needs_bwrap
def test_a_venv_is_built_and_the_tests_run_offline_from_the_checkout(
    cold: tuple[Path, ValidationRun],
) -> None:
    root, run = cold
    assert run.status is CheckStatus.PASSED, [(s.command, s.reason, s.output[-800:]) for s in run.setup]
    commands = [s.command for s in run.setup]
    assert commands[0] == "python -m venv" and "python -m pip install iniconfig pytest" in commands
    assert all(s.duration_s > 0 for s in run.setup)
    assert run.setup[-1].summary == "tinypkg imports from the checkout"
    assert run.outcomes() == {
        "tests/test_double.py::test_double": "passed",
        "tests/test_double.py::test_no_network": "passed",
    }
    assert "built in" in run.environment and "editable" in run.environment
    assert (
        run.commit
        == subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    )
    status = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True).stdout
    assert status == "", "the run left files in the checkout"


@needs_bwrap
def test_a_second_checkout_reuses_the_cached_venv(
    cold: tuple[Path, ValidationRun], tmp_path: Path, box: Sandbox, data_dir: Path
) -> None:
    first, _ = cold
    second = tmp_path / "second"
    shutil.copytree(first, second)
    lines: list[str] = []
    run = run_plan(detect(second), second, sandbox=box, data_dir=data_dir, progress=lines.append)
    assert run.status is CheckStatus.PASSED
    assert "(cached" in run.environment
    assert not any(s.command.split()[-1] == "venv" or "pip install iniconfig" in s.command for s in run.setup)
    assert str(second) in run.setup[-1].output
    assert any(line.startswith("environment ready in") and line.endswith("(cached)") for line in lines)
    assert any(line.startswith("$ python -m pytest -q … 2 passed") for line in lines)


@needs_bwrap
def test_only_the_named_tests_run(cold: tuple[Path, ValidationRun], box: Sandbox, data_dir: Path) -> None:
    root, _ = cold
    run = run_plan(
        detect(root), root, sandbox=box, data_dir=data_dir, tests=["tests/test_double.py::test_double"]
    )
    assert run.outcomes() == {"tests/test_double.py::test_double": "passed"}


@needs_bwrap
def test_a_copy_installed_elsewhere_fails_the_import_check(
    tmp_path: Path, box: Sandbox, data_dir: Path
) -> None:
    root = project(tmp_path / "shadowed", layout="mapped")
    plan = detect(root, ["python -m pytest -q"], ["python -m pip install '.[test]' pytest"])
    plan = plan.model_copy(update={"import_check": "tinypkg"})
    run = run_plan(plan, root, sandbox=box, data_dir=data_dir)
    check = run.setup[-1]
    assert run.status is CheckStatus.COULD_NOT_RUN and check.status is CheckStatus.COULD_NOT_RUN
    assert check.reason.startswith("imports tinypkg from ") and check.reason.endswith(
        ", not from the checkout"
    )
    assert "site-packages" in check.reason and run.checks == []


@needs_bwrap
def test_a_failed_install_could_not_run_and_is_rebuilt_next_time(
    tmp_path: Path, box: Sandbox, data_dir: Path
) -> None:
    root = project(tmp_path / "broken", test='"archon-no-such-package-zz9"')
    plan = detect(root)
    run = run_plan(plan, root, sandbox=box, data_dir=data_dir)
    failed = run.setup[-1]
    assert run.status is CheckStatus.COULD_NOT_RUN and failed.status is CheckStatus.COULD_NOT_RUN
    assert "archon-no-such-package-zz9" in failed.reason and run.checks == []
    key = environment.cache_key(plan, root)
    assert (data_dir / "venvs" / f"{key}.failed").is_file() and not (data_dir / "venvs" / key).exists()
    again = run_plan(plan, root, sandbox=box, data_dir=data_dir)
    assert again.setup[0].command == "python -m venv", "a failed build is never reused"


@needs_bwrap
def test_concurrent_builds_of_one_spec_make_one_venv(tmp_path: Path, box: Sandbox, data_dir: Path) -> None:
    roots = [project(tmp_path / name, version="0.3") for name in ("a", "b")]
    plan = detect(roots[0])
    runs: dict[str, ValidationRun] = {}

    def build(root: Path) -> None:
        runs[root.name] = run_plan(plan, root, sandbox=box, data_dir=data_dir)

    threads = [threading.Thread(target=build, args=(root,)) for root in roots]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r.status is CheckStatus.PASSED for r in runs.values())
    assert sorted("built in" in r.environment for r in runs.values()) == [False, True]
    key = environment.cache_key(plan, roots[0])
    assert len(list((data_dir / "venvs").glob(f"{key}-*"))) == 1
    for name, run in runs.items():
        assert str(tmp_path / name) in run.setup[-1].output, "each run tests its own checkout"


@needs_bwrap
def test_a_non_python_plan_runs_without_an_environment(tmp_path: Path, box: Sandbox, data_dir: Path) -> None:
    root = write(tmp_path, {"Makefile": "test:\n\t@echo make-ran\n"})
    run = run_plan(detect(root), root, sandbox=box, data_dir=data_dir)
    assert run.environment.startswith("none (make") and run.setup == []
    assert run.status is CheckStatus.PASSED and "make-ran" in run.checks[0].output


@needs_bwrap
def test_unittest_without_packaging_runs_from_pythonpath(
    tmp_path: Path, box: Sandbox, data_dir: Path
) -> None:
    root = write(
        tmp_path,
        {
            "src/plainpkg/__init__.py": "VALUE = 3\n",
            "tests/__init__.py": "",
            "tests/test_value.py": "import unittest\n\nimport plainpkg\n\n\nclass Value(unittest.TestCase):\n"
            "    def test_value(self):\n        self.assertEqual(plainpkg.VALUE, 3)\n\n"
            "    def test_other(self):\n        self.assertTrue(plainpkg)\n",
        },
    )
    plan = detect(root)
    run = run_plan(
        plan, root, sandbox=box, data_dir=data_dir, tests=["tests/test_value.py::Value::test_value"]
    )
    assert run.status is CheckStatus.PASSED, [(c.command, c.reason, c.output[-500:]) for c in run.checks]
    assert f"PYTHONPATH={root / 'src'}" in run.environment
    assert run.setup[-1].summary == "plainpkg imports from the checkout"
    assert run.outcomes() == {"tests.test_value.Value.test_value": "passed"}
