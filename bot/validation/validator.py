"""Validation for one run or one evaluation: the imperative shell around the pure core.

A `Validator` holds the plan (what to run), the sandbox (how) and the data directory (where environments
are cached). It runs the plan on a checkout, on a commit (a throwaway `--shared` clone, so nothing is
registered in a mirror other runs fetch into), and the change's new tests on the old code — the three runs
`baseline.compare` and `baseline.prove_fix` need. The workflow's validate and evaluate nodes,
`archon-bot evaluate` and `/archon evaluate` all use it, so they agree on what a change did.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bot.sandbox import Sandbox
from bot.validation.baseline import changed_tests, compare, named_tests, prove_fix
from bot.validation.run import run_plan
from bot.validation.schema import Comparison, Evidence, FixProof, ValidationPlan, ValidationRun
from bot.workspace import DIFF_OPTIONS, checked_git_dir, git_text, network_config, run_git

VALIDATE_TIMEOUT_S = 900.0


@dataclass
class Validator:
    plan: ValidationPlan
    sandbox: Sandbox
    data_dir: Path
    progress: Callable[[str], None] | None = None
    timeout_s: float = VALIDATE_TIMEOUT_S
    _at_commit: dict[tuple[str, tuple[str, ...]], ValidationRun] = field(default_factory=dict, repr=False)

    def run(self, checkout: Path, tests: Sequence[str] = ()) -> ValidationRun:
        """The plan on `checkout` as it is (the worktree, with the change)."""
        return run_plan(
            self.plan,
            checkout,
            sandbox=self.sandbox,
            data_dir=self.data_dir,
            timeout_s=self.timeout_s,
            progress=self.progress,
            tests=tests,
        )

    def at_commit(
        self,
        repo_dir: Path,
        commit: str,
        overlay: Mapping[str, bytes] | None = None,
        tests: Sequence[str] = (),
    ) -> ValidationRun:
        """The plan on `commit` of the repository at `repo_dir` (a worktree or a checkout), in a throwaway
        clone; `overlay` files are written on top first (the change's tests, to run them on the old code).
        Runs without an overlay are remembered: the merge base is run once per validator."""
        key = (commit, tuple(tests))
        if not overlay and key in self._at_commit:
            return self._at_commit[key]
        scratch = Path(tempfile.mkdtemp(prefix="archon-at-commit-"))
        try:
            checkout = clone_at(repo_dir, commit, scratch / "tree")
            for path, data in (overlay or {}).items():
                target = checkout / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            result = self.run(checkout, tests)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if not overlay:
            self._at_commit[key] = result
        return result

    def compare(self, base: ValidationRun | None, after: ValidationRun, plan_text: str | None) -> Comparison:
        named = named_tests(plan_text, after.outcomes()) if plan_text else []
        return compare(base, after, named)

    def prove(
        self,
        repo_dir: Path,
        base_commit: str,
        diff: str,
        after: ValidationRun,
        read: Callable[[str], bytes],
    ) -> FixProof:
        """The change's new or changed tests on the old code: its test files (`read` gives a path's content
        after the change) put on `base_commit`, and those tests run there."""
        tests = changed_tests(diff, after)
        if not tests:
            return prove_fix([], None, after)
        files = changed_test_files(diff, read)
        on_base = self.at_commit(repo_dir, base_commit, overlay=files, tests=tests)
        return prove_fix(tests, on_base, after)


def changed_test_files(diff: str, read: Callable[[str], bytes]) -> dict[str, bytes]:
    """The change's test files (added or modified, per `is_test_path`) as they are after it, plus any
    `conftest.py` it touches: what the old code is run against to prove the fix."""
    from unidiff import PatchSet

    from bot.evaluation.signals import is_test_path

    files = {}
    for patched in PatchSet(diff):
        path = patched.path
        if patched.is_removed_file or not (is_test_path(path) or Path(path).name == "conftest.py"):
            continue
        try:
            files[path] = read(path)
        except OSError:
            continue
    return files


def merge_base(repo_dir: Path, base: str, head: str) -> str:
    """Where `head` forked from `base`: what a three-dot diff compares against."""
    git_dir = checked_git_dir(repo_dir)
    args = ["--git-dir", str(git_dir), "merge-base", "--end-of-options", base, head]
    return git_text(args, cwd=repo_dir).strip()


def commit_sha(git_dir: Path, commit: str) -> str:
    args = ["--git-dir", str(git_dir), "rev-parse", "--verify", "--end-of-options", f"{commit}^{{commit}}"]
    return git_text(args, cwd=git_dir).strip()


def clone_at(repo_dir: Path, commit: str, checkout: Path) -> Path:
    """Check `commit` out at `checkout`, cloned `--shared` from the repository's common directory rather
    than from a worktree path, so the clone never goes through a `.git` file the checkout's own code could
    rewrite. The clone's config is git's fresh one: no filter or hook the repository's config defines runs."""
    git_dir = checked_git_dir(repo_dir)
    sha = commit_sha(git_dir, commit)
    common = git_text(
        ["--git-dir", str(git_dir), "rev-parse", "--path-format=absolute", "--git-common-dir"], cwd=git_dir
    ).strip()
    clone = [*network_config(common), "clone", "--quiet", "--shared", "--no-checkout", common, str(checkout)]
    run_git(clone, cwd=checkout.parent)
    run_git(["checkout", "--quiet", "--detach", sha], cwd=checkout)
    return checkout


def evidence_between(
    repo_dir: Path,
    base: str,
    head: str,
    *,
    validate: Sequence[str],
    setup: Sequence[str],
    plan_text: str | None,
    sandbox: Sandbox,
    data_dir: Path,
    progress: Callable[[str], None] | None = None,
) -> Evidence | None:
    """Validation of `base...head` in any repository (a local checkout, a mirror): the plan detected on
    `head`, run there and on the merge base, and the change's new tests on the merge base. None when the
    repository has nothing to run."""
    from bot.validation.detect import detect

    fork = merge_base(repo_dir, base, head)
    scratch = Path(tempfile.mkdtemp(prefix="archon-evidence-"))
    try:
        checkout = clone_at(repo_dir, head, scratch / "head")
        plan = detect(checkout, validate, setup)
        if plan.empty:
            return None
        if progress:
            progress(f"validation from {plan.source}: {' && '.join(plan.commands)}")
        validator = Validator(plan, sandbox, data_dir, progress)
        after = validator.run(checkout)
        base_run = validator.at_commit(repo_dir, fork)
        comparison = validator.compare(base_run, after, plan_text)
        diff = git_text(["-C", str(checkout), "diff", *DIFF_OPTIONS, "-M", fork, "HEAD"], cwd=checkout)
        proof = validator.prove(repo_dir, fork, diff, after, lambda path: (checkout / path).read_bytes())
        return Evidence(base=base_run, after=after, comparison=comparison, proof=proof)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
