"""`archon-bot run`: the same workflow on a local checkout or any git URL, without a webhook.

This is how someone tries the product with their own keys: models come from the environment like
the bot's (ANTHROPIC_API_KEY, MOONSHOT_API_KEY, …), the repository is never pushed to, and everything a
webhook run would publish lands in a folder: `plan.md`, `pull-request.md`, `changes.diff`, `status.md`,
`run.json` (nodes, tokens, costs), `ledger.json` and the transcripts. The worktree with the committed
branch is kept and its path printed.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from bot.limits import panel_refusal
from bot.providers.registry import ModelRegistry
from bot.publish import FolderPublisher
from bot.repo_config import CONFIG_PATH, RepoConfig, parse_repo_config, registry_for, role_defaults
from bot.runconfig import resolve_run
from bot.runner import base_limits, branch_name, chain_factory, make_validator, run_guard
from bot.runs import IssueInfo, NodeRun, RunRecord, RunState, now
from bot.sandbox import Sandbox, SandboxPolicy
from bot.secrets import redact
from bot.settings import ConfigurationError, Settings
from bot.triggers import Role, RunRequest
from bot.workflow.engine import Engine, Outcome, RunServices
from bot.workflow.evaluate import Judging
from bot.workflow.schema import REPO_DIR, Workflow, load_workflows
from bot.workspace import Workspace, Worktree, run_git


@dataclass(frozen=True)
class LocalRequest:
    repo: str  # a path or a git URL
    issue: int | None
    issue_file: Path | None
    models: dict[Role, str]
    workflow: str | None
    out: Path


def read_issue_file(path: Path, number: int | None) -> IssueInfo:
    """Markdown: the first non-empty line is the title (a leading `#` is dropped), the rest the body."""
    text = path.read_text()
    lines = text.strip().splitlines()
    if not lines:
        raise ConfigurationError(f"{path} is empty: write the issue's title on the first line")
    title = lines[0].lstrip("#").strip()
    body = "\n".join(lines[1:]).strip()
    return IssueInfo(number=number or 0, title=title, body=body, url=path.resolve().as_uri())


def _repo_name(repo: str) -> str:
    """A stable `owner/name` for a path or URL (names mirrors and branches, never sent anywhere)."""
    name = re.sub(r"\.git$", "", repo.rstrip("/").rsplit("/", 1)[-1]) or "repo"
    name = re.sub(r"[^A-Za-z0-9._-]", "-", name)
    return f"local/{name}"


def _remote(repo: str) -> str:
    path = Path(repo).expanduser()
    return str(path.resolve()) if path.exists() else repo


def _issue(request: LocalRequest, settings: Settings) -> IssueInfo:
    if request.issue_file is not None:
        return read_issue_file(request.issue_file, request.issue)
    match = re.search(r"([\w.-]+)/([\w.-]+?)(?:\.git)?/?$", request.repo)
    if request.issue is None or match is None:
        raise ConfigurationError("give --issue-file FILE, or --issue N with a GitHub repository URL")
    from bot.github.auth import github_for_repo
    from bot.github.forge import RepoForge

    full_name = f"{match[1]}/{match[2]}"
    github, _ = github_for_repo(settings, full_name)
    title, body, url = RepoForge(github, full_name).issue(request.issue)
    return IssueInfo(number=request.issue, title=title, body=body, url=url)


@dataclass
class LocalRepo:
    """A local checkout or git URL, mirrored, with its configuration read from the default branch."""

    name: str
    workspace: Workspace
    mirror: Path
    config: RepoConfig
    registry: ModelRegistry
    defaults: dict[Role, str]
    workflows: dict[str, Workflow]
    default_branch: str


def open_repo(repo: str, settings: Settings) -> LocalRepo:
    name = _repo_name(repo)
    workspace = Workspace(
        settings.archon_data_dir / "git", settings.github_git_url, remotes={name: _remote(repo)}
    )
    mirror = workspace.sync(name, token=None)
    config = parse_repo_config(_show(mirror, CONFIG_PATH))
    registry, defaults = registry_for(config, settings), role_defaults(config, settings)
    workflows = load_workflows(_show_dir(mirror, REPO_DIR))
    return LocalRepo(name, workspace, mirror, config, registry, defaults, workflows, _default_branch(mirror))


def run_record(
    local: LocalRepo,
    record: RunRecord,
    workflow: Workflow,
    folder: Path,
    settings: Settings,
    console: Console,
) -> tuple[Outcome, Worktree]:
    """Run one record's workflow on a fresh local worktree; results under `folder`. Nothing is pushed."""
    record.branch = record.branch or branch_name(record)
    record.default_branch = local.default_branch
    worktree = local.workspace.prepare(local.name, record.run_id, record.branch, token=None, resume=False)
    publisher = FolderPublisher(folder, on_progress=_printer(console))
    sandbox = Sandbox(SandboxPolicy.from_settings(settings))
    validator = make_validator(local.config, worktree.path, sandbox, settings, _progress(console))
    guard = run_guard(record, settings, None)  # the run's cost cap; no installation, so no daily cap
    services = RunServices(
        publisher=publisher,
        worktree=worktree,
        chain_for=chain_factory(record, local.registry, settings),
        validator=validator,
        run_dir=folder,
        base_limits=base_limits(local.config, settings),
        guard=guard,
        push=False,
        sandbox=sandbox,
        evaluate=Judging(local.registry, settings),
        forgiving_edits=settings.archon_forgiving_edits,
    )
    outcome = Engine(workflow, record, services).run()
    record.state, record.summary, record.finished_at = outcome.state, outcome.summary, now()
    publisher.progress(record)
    (folder / "changes.diff").write_text(redact(worktree.diff()))
    (folder / "ledger.json").write_text(redact(json.dumps(_ledger(record), indent=2)) + "\n")
    worktree.release()
    return outcome, worktree


def _new_id(prefix: str, *parts: object) -> str:
    return prefix + hashlib.sha256("".join(map(str, (*parts, time.time()))).encode()).hexdigest()[:10]


def run_local(request: LocalRequest, settings: Settings, console: Console | None = None) -> int:
    console = console or Console()
    issue = _issue(request, settings)
    local = open_repo(request.repo, settings)
    run_id = _new_id("l", request.repo, issue.title)
    console.print(f"Run [bold]{run_id}[/] on {request.repo}: {issue.title}")
    run_config = resolve_run(
        RunRequest(models=request.models, workflow=request.workflow),
        repo=local.name,
        issue=issue.number,
        registry=local.registry,
        defaults=local.defaults,
        gate="none",
        allow_unpriced=settings.archon_allow_unpriced_models,
    )
    if run_config.workflow not in local.workflows:
        names = ", ".join(sorted(local.workflows))
        raise ConfigurationError(f"no workflow `{run_config.workflow}`; available: {names}")
    record = RunRecord(
        run_id=run_id,
        job_id="local",
        installation_id=0,
        config=run_config,
        requested_by="you",
        trigger="`archon-bot run`",
        issue=issue,
        state=RunState.RUNNING,
        started_at=now(),
    )
    folder = (request.out / run_id).resolve()
    outcome, worktree = run_record(
        local, record, local.workflows[run_config.workflow], folder, settings, console
    )
    console.print(f"[bold]{outcome.state}[/]: {outcome.summary}")
    console.print(f"Results in {folder}; the branch `{record.branch}` is checked out in {worktree.path}.")
    return 0 if outcome.state is RunState.DONE else 1


def _printer(console: Console):
    seen: dict[str, str] = {}

    def show(record: RunRecord) -> None:
        for node in record.nodes.values():
            key = f"{node.state}{node.attempts}"
            if node.state != "pending" and seen.get(node.id) != key:
                seen[node.id] = key
                console.print(f"  {node.state:<8} {node.id:<12} {_line(node)}")

    return show


def _line(node: NodeRun) -> str:
    parts = [node.model or "", f"${node.cost_usd:.4f}" if node.cost_usd else "", node.error or ""]
    return "  ".join(p for p in parts if p)


def _ledger(record: RunRecord) -> dict:
    return {
        "run": record.run_id,
        "pairing": record.config.pairing(),
        "cost_usd": record.cost_usd,
        "usage": record.usage.model_dump(),
        "nodes": {
            n.id: {
                "model": n.model,
                "answered_by": n.answered_by,
                "usage": n.usage.model_dump(),
                "cost_usd": n.cost_usd,
                "providers": {k: v.model_dump() for k, v in n.providers.items()},
            }
            for n in record.nodes.values()
        },
    }


DEFAULT_REF = "refs/remotes/origin/HEAD"  # the remote's default branch, in a mirror


def _progress(console: Console) -> Callable[[str], None]:
    """Validation's progress lines, with the time since the command started."""
    started = time.monotonic()

    def show(line: str) -> None:
        console.print(f"[dim]{time.monotonic() - started:7.1f}s[/dim]  {line}")

    return show


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`git <args>` in `repo` through `run_git` (its safe config and minimal environment), as text; the caller
    reads the exit status."""
    done = run_git(args, cwd=repo, check=False)
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
    )


def _show(repo: Path, path: str, ref: str = DEFAULT_REF) -> str | None:
    """A file's text at `ref`, or None when it is not there."""
    done = _git(repo, "show", f"{ref}:{path}")
    return done.stdout if done.returncode == 0 else None


def _show_dir(mirror: Path, folder: str) -> dict[str, str]:
    listing = _git(mirror, "ls-tree", "--name-only", f"{DEFAULT_REF}:{folder}")
    if listing.returncode != 0:
        return {}
    files = {}
    for name in listing.stdout.split():
        if (text := _show(mirror, f"{folder}/{name}")) is not None:
            files[f"{folder}/{name}"] = text
    return files


def _default_branch(mirror: Path) -> str:
    ref = _git(mirror, "symbolic-ref", DEFAULT_REF).stdout.strip()
    return ref.rsplit("/", 1)[-1] or "main"


def evaluate_local(
    repo: Path,
    base: str,
    head: str,
    judges: list[str],
    plan_file: Path | None,
    out: Path,
    settings: Settings,
    console: Console | None = None,
) -> int:
    """`archon-bot evaluate`: the seven-dimension review of `base...head` in a local repository."""
    from bot.evaluation.service import files_at, git_diff, judge_change
    from bot.providers.factory import build_chain
    from bot.validation.validator import evidence_between

    if why := panel_refusal(len(judges), settings):  # before anything runs, let alone a model
        raise ConfigurationError(why)
    console = console or Console()
    repo = repo.resolve()
    diff = git_diff(repo, base, head)
    if not diff.strip():
        raise ConfigurationError(f"`{base}...{head}` has no changes to evaluate")
    config = parse_repo_config(_show(repo, CONFIG_PATH, head))
    registry, defaults = registry_for(config, settings), role_defaults(config, settings)
    aliases = judges or [defaults[Role.EVAL]]
    slots = [(alias, build_chain(alias, registry, settings, node="evaluate")[0]) for alias in aliases]
    plan = plan_file.read_text() if plan_file else None
    evidence = evidence_between(
        repo,
        base,
        head,
        validate=config.validate_commands,
        setup=config.setup_commands,
        plan_text=plan,
        sandbox=Sandbox(SandboxPolicy.from_settings(settings)),
        data_dir=settings.archon_data_dir,
        progress=_progress(console),
    )
    if evidence is None:
        console.print("No test commands were configured or detected: validation did not run.")
    title = _git(repo, "log", "-1", "--format=%s", head).stdout.strip()
    files = files_at(repo, head)
    verdict = judge_change(
        slots, title=title, body="", diff=diff, plan=plan, evidence=evidence, repo_files=files
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(
        json.dumps(verdict.evaluation.model_dump(mode="json"), indent=2) + "\n"
    )
    (out / "review.md").write_text(redact(verdict.body) + "\n")
    console.print(verdict.body)
    console.print(f"\n{verdict.headline()} — written to {out / 'review.md'} and evaluation.json")
    return 0 if verdict.evaluation.status == "ok" else 1
