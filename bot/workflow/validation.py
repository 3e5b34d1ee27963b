"""Which commands check a change, when `.github/archon.yml` does not say: detected from the repository."""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from pathlib import Path


def detect_commands(root: Path) -> list[str]:
    """Best-effort test commands for common layouts; empty when nothing is recognisable."""
    for detector in (_python, _node, _make, _rust, _go):
        if commands := detector(root):
            return commands
    return []


def _python(root: Path) -> list[str]:
    has_tests = (root / "tests").is_dir() or any(root.glob("test_*.py")) or any(root.glob("*/test_*.py"))
    if not has_tests:
        return []
    if _uses_pytest(root):
        return ["python3 -m pytest -q"]
    return [
        "python3 -m unittest discover -s tests -t . -q"
        if (root / "tests").is_dir()
        else "python3 -m unittest -q"
    ]


def _uses_pytest(root: Path) -> bool:
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text())
        except tomllib.TOMLDecodeError:
            data = {}
        if "pytest" in json.dumps(data):
            return True
    return (
        (root / "pytest.ini").is_file()
        or (root / "conftest.py").is_file()
        or ((root / "setup.cfg").is_file() and "[tool:pytest]" in (root / "setup.cfg").read_text())
    )


def _node(root: Path) -> list[str]:
    package = root / "package.json"
    if not package.is_file() or not shutil.which("npm"):
        return []
    try:
        scripts = json.loads(package.read_text()).get("scripts", {})
    except ValueError:
        return []
    test = scripts.get("test", "")
    return ["npm test --silent"] if test and "no test specified" not in test else []


def _make(root: Path) -> list[str]:
    makefile = root / "Makefile"
    if makefile.is_file() and re.search(r"^test:", makefile.read_text(), re.MULTILINE):
        return ["make test"]
    return []


def _rust(root: Path) -> list[str]:
    return ["cargo test --quiet"] if (root / "Cargo.toml").is_file() and shutil.which("cargo") else []


def _go(root: Path) -> list[str]:
    return ["go test ./..."] if (root / "go.mod").is_file() and shutil.which("go") else []
