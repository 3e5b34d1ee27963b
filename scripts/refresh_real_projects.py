#!/usr/bin/env python3
"""Vendor three real open-source projects into tests/data/projects/, each with a known bug and its fix.

Why: validation (detect, environment, run, baseline, fix proof) must be tested on real code with its own
tests, runners and configuration, not on code invented for the test. Each project is a pinned sdist from
PyPI (its real sources and test suite), plus data that turns it into a small history:

* commit 1 — the sdist as released;
* commit 2 — a known bug planted (the "base branch"): one file, old text → new text;
* branch ``fix`` — the bug fixed and one new test added (what a good implementer would produce).

``projects.json`` records, for each project: name, version, sha256 and size of the sdist, layout, the
test command a person would use, the test dependencies, the bug, the tests that fail because of it, the
fix's new test (fails on the buggy code, passes on the fixed code) and any pre-existing failures (tests that
fail on Python 3.11 on every commit, regardless of the bug). ``tests/projects.py`` replays it.

Test ids are in the project's runner's own form: pytest node ids for pytest projects, dotted unittest ids
(``tests.test_x.Class.test_y``) for unittest projects.

Only the standard library and ``pip`` (for ``pip download``) are needed; running it again rewrites
identical files. ``--check`` verifies the vendored files against the data without the network.

Usage::

    python scripts/refresh_real_projects.py [--check]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "tests" / "data" / "projects"
INDEX = DATA_DIR / "projects.json"
MAX_TOTAL_BYTES = 2_000_000

# --- cachetools: src layout, tox.ini, pytest -------------------------------------------------------------

_LRU_FIXED = """\
    def __getitem__(self, key, cache_getitem=Cache.__getitem__):
        value = cache_getitem(self, key)
        if key in self:  # __missing__ may not store item
            self.__update(key)
        return value

    def __setitem__(self, key, value, cache_setitem=Cache.__setitem__):
        cache_setitem(self, key, value)
        self.__update(key)

    def __delitem__(self, key, cache_delitem=Cache.__delitem__):
        cache_delitem(self, key)
        del self.__order[key]

    def popitem(self):
        \"\"\"Remove and return the `(key, value)` pair least recently used.\"\"\"
"""
_LRU_BUGGY = """\
    def __getitem__(self, key, cache_getitem=Cache.__getitem__):
        return cache_getitem(self, key)

    def __setitem__(self, key, value, cache_setitem=Cache.__setitem__):
        cache_setitem(self, key, value)
        self.__update(key)

    def __delitem__(self, key, cache_delitem=Cache.__delitem__):
        cache_delitem(self, key)
        del self.__order[key]

    def popitem(self):
        \"\"\"Remove and return the `(key, value)` pair least recently used.\"\"\"
"""
_LRU_TEST_ANCHOR = """\
        with self.assertRaises(ValueError):
            cache[4] = 4
        self.assertEqual(len(cache), 1)
        self.assertEqual(cache[3], 3)
"""
_LRU_NEW_TEST = """
    def test_lru_read_refreshes_recency(self):
        cache = LRUCache(maxsize=2)
        cache[1] = 1
        cache[2] = 2

        self.assertEqual(cache.get(1), 1)  # a read makes 1 the most recently used
        cache[3] = 3

        self.assertIn(1, cache)
        self.assertNotIn(2, cache)
        self.assertEqual(cache.popitem(), (1, 1))
"""

# --- toolz: flat layout, plain pytest --------------------------------------------------------------------

_PARTITION_FIXED = """\
        except TypeError:
            # Get first index of no_pad without using .index()
            # https://github.com/pytoolz/toolz/issues/387
            # Binary search from CPython's bisect module,
            # modified for identity testing.
            lo, hi = 0, n
            while lo < hi:
                mid = (lo + hi) // 2
                if prev[mid] is no_pad:
                    hi = mid
                else:
                    lo = mid + 1
            yield prev[:lo]
"""
_PARTITION_BUGGY = """\
        except TypeError:
            yield prev[:prev.index(no_pad)]
"""
_PARTITION_TEST_ANCHOR = """\
    assert list(partition_all(4, [obj]*7)) == result
    assert list(partition_all(4, iter([obj]*7))) == result
"""
_PARTITION_NEW_TEST = """

def test_partition_all_iterator_never_compares_items():
    class Loud(object):
        def __eq__(self, other):
            raise AssertionError("partition_all compared an item")
        __hash__ = object.__hash__

    items = [Loud() for _ in range(5)]
    assert [len(p) for p in partition_all(2, iter(items))] == [2, 2, 1]
    assert [p[0] is items[4] for p in partition_all(2, iter(items))][-1]
"""

# --- idna: flat layout, unittest only --------------------------------------------------------------------

_LABEL_FIXED = """\
def valid_label_length(label: Union[bytes, str]) -> bool:
    if len(label) > 63:
        return False
    return True
"""
_LABEL_BUGGY = """\
def valid_label_length(label: Union[bytes, str]) -> bool:
    if len(label) > 64:
        return False
    return True
"""
_LABEL_TEST_ANCHOR = """\
        self.assertTrue(idna.valid_label_length('a' * 63))
        self.assertFalse(idna.valid_label_length('a' * 64))
        self.assertRaises(idna.IDNAError, idna.encode, 'a' * 64)
"""
_LABEL_NEW_TEST = """
    def test_encode_label_length_boundary(self):

        self.assertEqual(idna.encode('a' * 63 + '.example'), b'a' * 63 + b'.example')
        self.assertRaises(idna.IDNAError, idna.encode, 'a' * 64 + '.example')
        self.assertRaises(idna.IDNAError, idna.alabel, 'b' * 64)
"""


def _insert_after(anchor: str, addition: str) -> dict[str, str]:
    return {"old": anchor, "new": anchor + addition}


PROJECTS: list[dict[str, Any]] = [
    {
        "name": "cachetools",
        "version": "5.3.3",
        "layout": "src",
        "config": "tox.ini",
        "runner": "pytest",
        "test_command": "python -m pytest",
        "pythonpath": "src",
        "test_deps": ["pytest"],
        "notes": "tox.ini [testenv] runs `py.test --basetemp={envtmpdir} --cov=cachetools` with deps pytest, "
        "pytest-cov; the coverage plugin is not needed to run the tests. Tests are unittest.TestCase "
        "classes collected by pytest. The package lives in src/: install it or set PYTHONPATH=src.",
        "bug": {
            "origin": "planted",
            "summary": "LRUCache.__getitem__ no longer marks the key as most recently used, so a read does "
            "not protect an entry from eviction (the cache behaves FIFO on reads).",
            "file": "src/cachetools/__init__.py",
            "old": _LRU_FIXED,
            "new": _LRU_BUGGY,
        },
        "failing_tests": ["tests/test_lru.py::LRUCacheTest::test_lru"],
        "fix": {
            "summary": "Restore the recency update on reads; add a regression test.",
            "new_test": "tests/test_lru.py::LRUCacheTest::test_lru_read_refreshes_recency",
            "test_file": "tests/test_lru.py",
            **_insert_after(_LRU_TEST_ANCHOR, _LRU_NEW_TEST),
        },
        "pre_existing_failures": [],
    },
    {
        "name": "toolz",
        "version": "0.11.2",
        "layout": "flat",
        "config": "none (plain pytest; tests inside the package, toolz/tests/)",
        "runner": "pytest",
        "test_command": "python -m pytest",
        "pythonpath": "",
        "test_deps": ["pytest"],
        "notes": "No pytest configuration at all; the tests live in toolz/tests/ and import the package "
        "from the working directory. 0.11.2 predates Python 3.11 support (0.12.0).",
        "bug": {
            "origin": "upstream fix reverted",
            "summary": "partition_all on an iterator finds the padding with tuple.index(), which compares "
            "items with ==; items whose __eq__ raises (or lies) break it. This reverts the fix for "
            "pytoolz/toolz#387 (an identity-based binary search) to the pre-fix one-liner.",
            "file": "toolz/itertoolz.py",
            "old": _PARTITION_FIXED,
            "new": _PARTITION_BUGGY,
        },
        "failing_tests": ["toolz/tests/test_itertoolz.py::test_partition_all"],
        "fix": {
            "summary": "Find the first padding slot by identity (binary search); add a regression test.",
            "new_test": "toolz/tests/test_itertoolz.py::test_partition_all_iterator_never_compares_items",
            "test_file": "toolz/tests/test_itertoolz.py",
            **_insert_after(_PARTITION_TEST_ANCHOR, _PARTITION_NEW_TEST),
        },
        "pre_existing_failures": [
            {
                "test": "toolz/tests/test_tlz.py::test_tlz",
                "origin": "genuine",
                "reason": "Python 3.11's importlib expects ModuleSpec._uninitialized_submodules, which toolz "
                "0.11.2's TlzSpec lacks (AttributeError); fixed upstream in toolz 0.12.0.",
            }
        ],
    },
    {
        "name": "idna",
        "version": "3.7",
        "layout": "flat",
        "config": "pyproject.toml (flit; no test configuration)",
        "runner": "unittest",
        "test_command": "python -m unittest",
        "pythonpath": "",
        "test_deps": [],
        "notes": "Tests are unittest.TestCase classes in tests/ (a package); `python -m unittest` discovers "
        "them from the repository root. No test dependencies.",
        "bug": {
            "origin": "planted",
            "summary": "valid_label_length accepts 64-octet labels (off by one: RFC 1035 allows at most 63), "
            "so encode() and alabel() accept a label that is one octet too long.",
            "file": "idna/core.py",
            "old": _LABEL_FIXED,
            "new": _LABEL_BUGGY,
        },
        "failing_tests": [
            "tests.test_idna.IDNATests.test_encode",
            "tests.test_idna.IDNATests.test_valid_label_length",
            "tests.test_idna_codec.IDNACodecTests.testDirectEncode",
            "tests.test_idna_codec.IDNACodecTests.testIndirectEncode",
            "tests.test_idna_codec.IDNACodecTests.testStreamWriter",
            # one id for all generated IdnaTestV2.txt cases (UTS #46 conformance lines with 64-octet labels)
            "tests.test_idna_uts46.TestIdnaTest.runTest",
        ],
        "fix": {
            "summary": "Restore the 63-octet limit; add a boundary test through encode() and alabel().",
            "new_test": "tests.test_idna.IDNATests.test_encode_label_length_boundary",
            "test_file": "tests/test_idna.py",
            **_insert_after(_LABEL_TEST_ANCHOR, _LABEL_NEW_TEST),
        },
        "pre_existing_failures": [],
    },
]


class RefreshError(RuntimeError):
    """Raised for anything that must stop the refresh loudly."""


def sdist_name(project: dict[str, Any]) -> str:
    return f"{project['name']}-{project['version']}.tar.gz"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def download(project: dict[str, Any], dest: Path) -> Path:
    spec = f"{project['name']}=={project['version']}"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-binary",
            ":all:",
            "--no-deps",
            spec,
            "-d",
            dest,
        ],
        check=True,
    )
    path = dest / sdist_name(project)
    if not path.is_file():
        raise RefreshError(f"pip download {spec} did not produce {path.name}: {sorted(dest.iterdir())}")
    return path


def member_text(archive: Path, project: dict[str, Any], relpath: str) -> str:
    prefix = f"{project['name']}-{project['version']}"
    with tarfile.open(archive) as tar:
        member = tar.extractfile(f"{prefix}/{relpath}")
        if member is None:
            raise RefreshError(f"{archive.name} has no file {relpath}")
        return member.read().decode()


def check_replacements(archive: Path, project: dict[str, Any]) -> None:
    """The bug's old text and the fix's anchor each occur exactly once in the released files."""
    bug, fix = project["bug"], project["fix"]
    for relpath, old in ((bug["file"], bug["old"]), (fix["test_file"], fix["old"])):
        count = member_text(archive, project, relpath).count(old)
        if count != 1:
            raise RefreshError(f"{project['name']}: expected text occurs {count} times in {relpath}")


def index_entry(project: dict[str, Any], archive: Path) -> dict[str, Any]:
    return {
        **project,
        "sdist": archive.name,
        "sha256": sha256(archive),
        "size": archive.stat().st_size,
    }


def write_index(entries: list[dict[str, Any]]) -> None:
    total = sum(e["size"] for e in entries)
    if total > MAX_TOTAL_BYTES:
        raise RefreshError(f"vendored sdists total {total} bytes, more than {MAX_TOTAL_BYTES}")
    document = {
        "about": "Real projects for validation tests; written by scripts/refresh_real_projects.py.",
        "python": "3.11",
        "projects": entries,
    }
    INDEX.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def refresh() -> None:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    entries = []
    with tempfile.TemporaryDirectory() as tmp:
        for project in PROJECTS:
            downloaded = download(project, Path(tmp))
            check_replacements(downloaded, project)
            target = DATA_DIR / downloaded.name
            target.write_bytes(downloaded.read_bytes())
            entries.append(index_entry(project, target))
            print(f"{target.name}: {target.stat().st_size} bytes, sha256 {entries[-1]['sha256']}")
    write_index(entries)
    print(f"wrote {INDEX.relative_to(ROOT)} ({sum(e['size'] for e in entries)} bytes of sdists)")


def check() -> None:
    """The vendored files match the data, with no network."""
    recorded = {e["name"]: e for e in json.loads(INDEX.read_text())["projects"]}
    for project in PROJECTS:
        archive = DATA_DIR / sdist_name(project)
        check_replacements(archive, project)
        if index_entry(project, archive) != recorded.get(project["name"]):
            raise RefreshError(f"{INDEX.name} is stale for {project['name']}: run this script again")
    print("projects.json and the vendored sdists agree")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify the vendored files, no network")
    args = parser.parse_args(argv)
    try:
        check() if args.check else refresh()
    except (RefreshError, subprocess.CalledProcessError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
