"""A small sample repository with a real bug and a failing test, for the demo and the end-to-end tests.

`textkit.slug.slugify` joins on single spaces, so punctuation survives and repeated spaces make empty
segments; `tests/test_slug.py` has a test that fails until that is fixed. The tests use only the
standard library (`python3 -m unittest`), so the demo needs nothing installed beyond the bot.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = "octo-org/hello-archon"
ISSUE_TITLE = "slugify keeps punctuation and doubles hyphens"
ISSUE_BODY = (
    '`slugify("Hello,  World!")` returns `"hello,--world!"`. It should return `"hello-world"`: lower-case '
    "letters and digits only, words joined by single hyphens. `tests/test_slug.py` has a failing test."
)
VALIDATE = "python3 -m unittest discover -s tests -t . -q"

FILES = {
    ".gitignore": "__pycache__/\n*.pyc\n",
    "README.md": "# textkit\n\nSmall text helpers. Test with `python3 -m unittest discover -s tests`.\n",
    ".github/archon.yml": f"validate:\n  - {VALIDATE}\n",
    "textkit/__init__.py": '"""Small text helpers."""\n',
    "textkit/slug.py": (
        '"""Turn titles into URL slugs."""\n'
        "\n"
        "\n"
        "def slugify(title: str) -> str:\n"
        '    """Lower-case words joined by single hyphens: "Hello, World!" -> "hello-world"."""\n'
        '    return "-".join(title.lower().split(" "))\n'
    ),
    "tests/__init__.py": "",
    "tests/test_slug.py": (
        "import unittest\n"
        "\n"
        "from textkit.slug import slugify\n"
        "\n"
        "\n"
        "class SlugifyTest(unittest.TestCase):\n"
        "    def test_plain_words(self):\n"
        '        self.assertEqual(slugify("Hello World"), "hello-world")\n'
        "\n"
        "    def test_punctuation_and_repeated_spaces(self):\n"
        '        self.assertEqual(slugify("Hello,  World!"), "hello-world")\n'
    ),
}

_IDENTITY = {
    "GIT_AUTHOR_NAME": "Octo Cat",
    "GIT_AUTHOR_EMAIL": "octocat@example.com",
    "GIT_COMMITTER_NAME": "Octo Cat",
    "GIT_COMMITTER_EMAIL": "octocat@example.com",
}


def _git(*args: str, cwd: Path) -> None:
    env = {**os.environ, **_IDENTITY}
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def create_bare_remote(remotes: Path, full_name: str = REPO) -> Path:
    """Write the sample into a fresh bare repository at `remotes/<owner>/<repo>.git` (branch `main`)."""
    bare = remotes / f"{full_name}.git"
    work = remotes / ".work" / full_name
    work.mkdir(parents=True)
    for path, text in FILES.items():
        target = work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    _git("init", "-q", "-b", "main", cwd=work)
    _git("add", "-A", cwd=work)
    _git("commit", "-q", "-m", "textkit: slugify", cwd=work)
    bare.parent.mkdir(parents=True, exist_ok=True)
    _git("clone", "-q", "--bare", str(work), str(bare), cwd=remotes)
    return bare


def demo_models() -> dict[str, dict]:
    """Model aliases for the demo: scripted stand-ins, priced like the models they stand in for so the
    cost table reads realistically. Every answer they give is labelled `scripted:`."""
    from bot.providers.registry import DEFAULT_MODELS

    models = {}
    for alias in ("opus", "sonnet", "haiku", "kimi", "gpt"):
        real = DEFAULT_MODELS[alias]
        models[alias] = {
            "provider": "scripted",
            "model": f"demo-{alias}",
            "description": f"scripted stand-in for {real.model} (priced like it)",
            "prices": real.prices.model_dump() if real.prices else None,
        }
    return models


def write_models_file(path: Path) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"models": demo_models()}, sort_keys=False))
    return path
