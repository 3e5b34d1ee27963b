"""A large bare repository for the workspace benchmarks, made in seconds with `git fast-import`:
`--commits` commits on `main` over `--files` Python files, each commit rewriting a few of them, so the
history holds far more blob versions than the tip (what a blobless partial clone skips).

    .venv/bin/python scripts/make_large_repo.py /tmp/large.git --commits 10000 --files 2000
"""

from __future__ import annotations

import argparse
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

AUTHOR = "Bench <bench@example.com>"
EPOCH = 1_700_000_000


def _data(text: str) -> bytes:
    body = text.encode()
    return b"data %d\n%s\n" % (len(body), body)


def _module(path: str, version: int, rng: random.Random) -> str:
    """About 1 KB of Python that differs per version (so every version is a distinct blob)."""
    lines = [f'"""{path}, version {version}."""', ""]
    for index in range(20):
        lines.append(f"def f_{index}(x: int) -> int:\n    return x * {rng.randint(1, 10_000)} + {version}\n")
    return "\n".join(lines)


def stream(commits: int, files: int, per_commit: int, seed: int) -> Iterator[bytes]:
    """The fast-import commands: one commit adding every file, then commits each changing `per_commit`."""
    rng = random.Random(seed)
    paths = [f"pkg{index % 40}/module_{index}.py" for index in range(files)]
    for number in range(commits):
        changed = paths if number == 0 else rng.sample(paths, per_commit)
        when = EPOCH + number * 60
        yield b"commit refs/heads/main\n"
        yield f"committer {AUTHOR} {when} +0000\n".encode()
        yield _data(f"Change {number}")  # no `from`: fast-import goes on from the branch's last commit
        for path in changed:
            yield f"M 100644 inline {path}\n".encode()
            yield _data(_module(path, number, rng))
        yield b"\n"


def make(target: Path, commits: int, files: int, per_commit: int = 3, seed: int = 13) -> Path:
    """Create the bare repository `target` (replaced if it exists), allowing partial-clone filters."""
    subprocess.run(["rm", "-rf", str(target)], check=True)
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(target)], check=True)
    importer = subprocess.Popen(
        ["git", "--git-dir", str(target), "fast-import", "--quiet"], stdin=subprocess.PIPE
    )
    assert importer.stdin is not None
    for chunk in stream(commits, files, per_commit, seed):
        importer.stdin.write(chunk)
    importer.stdin.close()
    if importer.wait():
        raise SystemExit(f"git fast-import failed with {importer.returncode}")
    subprocess.run(["git", "--git-dir", str(target), "config", "uploadpack.allowFilter", "true"], check=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("target", type=Path)
    parser.add_argument("--commits", type=int, default=10_000)
    parser.add_argument("--files", type=int, default=2_000)
    parser.add_argument("--per-commit", type=int, default=3)
    args = parser.parse_args(argv)
    make(args.target, args.commits, args.files, args.per_commit)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
