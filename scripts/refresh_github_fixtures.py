#!/usr/bin/env python3
"""Vendor GitHub's own test data into tests/data/github/.

Why: the fake GitHub server and the webhook tests must not drift from what
GitHub really sends and accepts. Instead of hand-written shapes we vendor

* a subset of GitHub's OpenAPI description (from the npm package
  ``@octokit/openapi``) restricted to the operations in
  ``tests/data/github/operations.txt`` plus every component they reference, and
* GitHub's example webhook payloads (from ``@octokit/webhooks-examples``).

Only the standard library and ``npm`` (for ``npm pack``) are needed. Running the
script again with the same package versions rewrites identical files.

Usage::

    python scripts/refresh_github_fixtures.py [--openapi-version X] [--webhooks-version Y]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "tests" / "data" / "github"
OPERATIONS_FILE = DATA_DIR / "operations.txt"
SUBSET_FILE = DATA_DIR / "openapi-subset.json"
WEBHOOKS_DIR = DATA_DIR / "webhooks"

OPENAPI_PACKAGE = "@octokit/openapi"
OPENAPI_FILE = "generated/api.github.com.json"  # not the .deref variant: we keep $refs small
WEBHOOKS_PACKAGE = "@octokit/webhooks-examples"
WEBHOOKS_FILE = "api.github.com/index.json"
WEBHOOK_EVENTS = (
    "ping",
    "issues",
    "issue_comment",
    "installation",
    "installation_repositories",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "push",
)
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
# Top-level keys dropped from the subset. ``x-webhooks`` describes webhook
# payloads, not REST operations, and would drag in hundreds of schemas.
DROPPED_TOP_LEVEL = {"x-webhooks"}


class FixtureError(RuntimeError):
    """Raised for anything that must stop the refresh loudly."""


def npm_pack(spec: str, dest: Path) -> tuple[str, Path]:
    """Download ``spec`` with ``npm pack``; return (version, tarball path).

    Why ``npm pack``: it uses npm's own registry configuration and integrity
    checks, and does not need a package.json or node_modules.
    """
    if shutil.which("npm") is None:
        raise FixtureError("npm is not on PATH; it is needed to download the packages")
    cmd = ["npm", "pack", spec, "--json", "--pack-destination", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise FixtureError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    try:
        info = json.loads(proc.stdout)[0]
        version, tarball = info["version"], dest / info["filename"]
    except (json.JSONDecodeError, IndexError, KeyError, TypeError) as exc:
        raise FixtureError(f"unexpected `npm pack --json` output: {proc.stdout!r}") from exc
    if not tarball.is_file():
        raise FixtureError(f"npm pack reported {tarball.name} but did not write it")
    print(f"downloaded {spec} -> {info['id']}")
    return version, tarball


def extract_json(tarball: Path, inner_path: str) -> Any:
    """Extract and parse one JSON file of a package tarball.

    Why only one member: @octokit/openapi unpacks to ~400 MB of specs we don't need.
    """
    name = f"package/{inner_path}"
    with tarfile.open(tarball) as tar:
        try:
            member = tar.getmember(name)
        except KeyError as exc:
            raise FixtureError(f"{tarball.name} has no {inner_path}") from exc
        handle = tar.extractfile(member)
        if handle is None:
            raise FixtureError(f"{inner_path} in {tarball.name} is not a regular file")
        with handle:
            return json.loads(handle.read().decode("utf-8"))


def read_operations(path: Path) -> list[tuple[str, str]]:
    """Parse ``METHOD /path`` lines, ignoring blanks and ``#`` comments."""
    ops: list[tuple[str, str]] = []
    for lineno, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0].lower() not in HTTP_METHODS or not parts[1].startswith("/"):
            raise FixtureError(f"{path}:{lineno}: expected 'METHOD /path', got {raw!r}")
        ops.append((parts[0].lower(), parts[1]))
    if not ops:
        raise FixtureError(f"{path} lists no operations")
    return ops


def iter_refs(node: Any) -> Iterator[str]:
    """Yield every ``$ref`` string inside a JSON value."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield ref
        for value in node.values():
            yield from iter_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from iter_refs(value)


def resolve_pointer(doc: dict[str, Any], ref: str) -> Any:
    """Resolve a local JSON pointer like ``#/components/schemas/x``."""
    if not ref.startswith("#/"):
        raise FixtureError(f"only local $refs are supported, got {ref!r}")
    node: Any = doc
    for token in ref[2:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        try:
            node = node[token]
        except (KeyError, TypeError) as exc:
            raise FixtureError(f"dangling $ref {ref!r}") from exc
    return node


def select_paths(spec: dict[str, Any], ops: list[tuple[str, str]]) -> dict[str, Any]:
    """Keep only the listed operations (and shared path-item keys) from ``spec['paths']``."""
    paths: dict[str, Any] = {}
    wanted: dict[str, set[str]] = {}
    for method, path in ops:
        item = spec["paths"].get(path)
        if item is None or method not in item:
            raise FixtureError(f"{method.upper()} {path} is not in the OpenAPI description")
        wanted.setdefault(path, set()).add(method)
    for path, item in spec["paths"].items():  # keep the spec's order for stable diffs
        if path not in wanted:
            continue
        paths[path] = {
            key: value for key, value in item.items() if key not in HTTP_METHODS or key in wanted[path]
        }
    return paths


def referenced_components(spec: dict[str, Any], roots: Any) -> dict[str, Any]:
    """Return ``components`` restricted to what ``roots`` references, transitively."""
    seen: set[str] = set()
    pending = list(iter_refs(roots))
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        pending.extend(iter_refs(resolve_pointer(spec, ref)))
    keep: dict[str, set[str]] = {}
    for ref in seen:
        parts = ref[2:].split("/")
        if parts[0] != "components" or len(parts) != 3:
            raise FixtureError(f"unsupported $ref target {ref!r}")
        keep.setdefault(parts[1], set()).add(parts[2].replace("~1", "/").replace("~0", "~"))
    components: dict[str, Any] = {}
    for section, entries in spec.get("components", {}).items():
        if section in keep:
            components[section] = {k: v for k, v in entries.items() if k in keep[section]}
    return components


def build_subset(spec: dict[str, Any], ops: list[tuple[str, str]], vendored: str) -> dict[str, Any]:
    """Build the reduced OpenAPI document with provenance recorded in ``info``."""
    paths = select_paths(spec, ops)
    subset: dict[str, Any] = {}
    for key, value in spec.items():
        if key in DROPPED_TOP_LEVEL:
            continue
        if key == "paths":
            subset[key] = paths
        elif key == "components":
            subset[key] = referenced_components(spec, paths)
        elif key == "info":
            subset[key] = {**value, "x-vendored-from": vendored}
        else:
            subset[key] = value
    return subset


def write_json(path: Path, data: Any) -> None:
    """Write stable, diff-friendly JSON and report it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)} ({len(text.encode()):,} bytes)")


def refresh_openapi(tarball: Path, version: str) -> None:
    """Write openapi-subset.json from the package's api.github.com description."""
    spec = extract_json(tarball, OPENAPI_FILE)
    if not str(spec.get("openapi", "")).startswith("3.0."):
        raise FixtureError(f"expected OpenAPI 3.0.x in {OPENAPI_FILE}, got {spec.get('openapi')}")
    ops = read_operations(OPERATIONS_FILE)
    subset = build_subset(spec, ops, f"{OPENAPI_PACKAGE}@{version}")
    write_json(SUBSET_FILE, subset)
    counts = ", ".join(f"{len(v)} {k}" for k, v in subset["components"].items())
    print(f"  {len(ops)} operations in {len(subset['paths'])} paths; components: {counts}")


def webhook_file_names(event: str, examples: list[dict[str, Any]]) -> list[str]:
    """Name each example ``<event>[.<action>][.N].json``, numbering repeats from 2."""
    names: list[str] = []
    used: dict[str, int] = {}
    for example in examples:
        action = example.get("action")
        stem = f"{event}.{action}" if isinstance(action, str) and action else event
        used[stem] = used.get(stem, 0) + 1
        suffix = "" if used[stem] == 1 else f".{used[stem]}"
        names.append(f"{stem}{suffix}.json")
    return names


def refresh_webhooks(tarball: Path, version: str) -> None:
    """Write one file per example payload for WEBHOOK_EVENTS, plus VERSION."""
    index = extract_json(tarball, WEBHOOKS_FILE)
    by_name = {entry["name"]: entry for entry in index}
    missing = [event for event in WEBHOOK_EVENTS if event not in by_name]
    if missing:
        raise FixtureError(f"{WEBHOOKS_PACKAGE}@{version} lacks events: {missing}")
    written: set[str] = set()
    for event in WEBHOOK_EVENTS:
        examples = by_name[event]["examples"]
        if not examples:
            raise FixtureError(f"{WEBHOOKS_PACKAGE}@{version} has no examples for {event}")
        for name, payload in zip(webhook_file_names(event, examples), examples, strict=True):
            write_json(WEBHOOKS_DIR / name, payload)
            written.add(name)
    # The directory is owned by this script: drop payloads a newer version removed.
    for stale in sorted(WEBHOOKS_DIR.glob("*.json")):
        if stale.name not in written:
            stale.unlink()
            print(f"removed stale {stale.relative_to(ROOT)}")
    (WEBHOOKS_DIR / "VERSION").write_text(f"{WEBHOOKS_PACKAGE}@{version}\n", encoding="utf-8")
    print(f"wrote {(WEBHOOKS_DIR / 'VERSION').relative_to(ROOT)} ({WEBHOOKS_PACKAGE}@{version})")


def main(argv: list[str] | None = None) -> int:
    """Download both packages into a temp dir and regenerate the fixtures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--openapi-version", default="latest", help="npm version or tag")
    parser.add_argument("--webhooks-version", default="latest", help="npm version or tag")
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="gh-fixtures-") as tmp:
            tmpdir = Path(tmp)
            version, tarball = npm_pack(f"{OPENAPI_PACKAGE}@{args.openapi_version}", tmpdir)
            refresh_openapi(tarball, version)
            version, tarball = npm_pack(f"{WEBHOOKS_PACKAGE}@{args.webhooks_version}", tmpdir)
            refresh_webhooks(tarball, version)
    except FixtureError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
