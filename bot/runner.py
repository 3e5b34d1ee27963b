"""Set up a run's world — repository config, workflow, worktree, models, publisher — and run the engine.

`run_on_github` is what the run job calls; `archon-bot run` (bot/local.py) builds the same pieces from a
local checkout. The worktree is always released: removed after success, kept for a while after a
failure for debugging (`ARCHON_KEEP_FAILED_HOURS`), then cleaned by the next run.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from rq.timeouts import JobTimeoutException

from bot.agent.loop import AgentLimits
from bot.conventions import read_conventions
from bot.evaluation.service import files_at
from bot.github.forge import RepoForge
from bot.limits import DailySpend, RunGuard, deployment_limits, effective_limits
from bot.providers.factory import build_chain
from bot.providers.registry import ModelRegistry
from bot.providers.types import ModelSlot
from bot.publish import GitHubPublisher, StatusEdits
from bot.repo_config import CONFIG_PATH, RepoConfig, parse_repo_config, registry_for
from bot.runs import IssueInfo, RunRecord, RunState, RunStore
from bot.sandbox import Sandbox, SandboxPolicy
from bot.settings import Settings
from bot.validation.detect import detect
from bot.validation.schema import Evidence
from bot.validation.validator import Validator, evidence_between, merge_base
from bot.workflow.engine import Engine, Outcome, Publisher, RunServices, gated
from bot.workflow.evaluate import Judging, script_variant
from bot.workflow.schema import REPO_DIR, AgentNode, Workflow, WorkflowError, load_workflows
from bot.workspace import REMOTE_REFS, Workspace, Worktree, git_text

log = logging.getLogger(__name__)


def branch_name(record: RunRecord) -> str:
    """`archon/issue-<n>-<plan>-<impl>-<short id>`: readable, and unique per run."""
    models = record.config.models
    plan, impl = (models[role].alias for role in ("plan", "impl"))  # type: ignore[index]
    short = hashlib.sha256(record.run_id.encode()).hexdigest()[:6]  # benchmark cells share a prefix
    return f"archon/issue-{record.config.issue}-{plan}-{impl}-{short}"


def base_limits(config: RepoConfig, settings: Settings) -> AgentLimits:
    """Every agent node's limits before its own `budget`: the deployment's ceilings, lowered (never
    raised) by the repository's `budgets`."""
    return effective_limits(deployment_limits(settings), config.budgets.model_dump(exclude={"bench_max_usd"}))


def run_guard(record: RunRecord, settings: Settings, connection: redis.Redis | None) -> RunGuard:
    """The run's cost cap over all its nodes, and the installation's daily spend when there is one (a
    local `archon-bot run` has no installation and no Redis: only the run cap applies)."""
    daily = None
    if connection is not None and record.installation_id:
        daily = DailySpend.of(connection, record.installation_id, settings)
    return RunGuard(settings.archon_max_run_usd, spent_before=record.cost_usd, daily=daily)


def chain_factory(
    record: RunRecord, registry: ModelRegistry, settings: Settings
) -> Callable[[AgentNode], tuple[str, list[ModelSlot]]]:
    """An agent node's model: its explicit alias, else the run's model for its role; plus fallbacks."""

    def chain_for(node: AgentNode) -> tuple[str, list[ModelSlot]]:
        alias = node.model or record.config.models[node.role].alias  # type: ignore[index]
        return alias, build_chain(alias, registry, settings, node=node.id, variant=script_variant(record))

    return chain_for


def make_validator(
    config: RepoConfig,
    checkout: Path,
    sandbox: Sandbox,
    settings: Settings,
    progress: Callable[[str], None] | None = None,
) -> Validator | None:
    """The repository's validation: `validate:`/`setup:` from `.github/archon.yml`, else detected the way
    its own CI runs its tests. None when nothing could be found."""
    plan = detect(checkout, config.validate_commands, config.setup_commands)
    if plan.empty:
        return None
    log.info("validation for %s: %s (from %s)", checkout.name, " && ".join(plan.commands), plan.source)
    return Validator(plan, sandbox, settings.archon_data_dir, progress)


def pull_evidence(
    settings: Settings, token: Callable[[], str], repo: str, pull: Any, config: RepoConfig, plan: str | None
) -> tuple[Evidence | None, list[str] | None]:
    """Validation of a pull request, the same way a run's is measured: its head and the merge base with
    its base branch, from the repository's mirror; and the head's files (what evidence may cite). A fork's
    head is not in the mirror: (None, None), logged."""
    head_repo = pull.head.repo.full_name if pull.head.repo else None
    if head_repo != repo:
        log.info("%s#%s comes from %s: its head is not fetched, no validation", repo, pull.number, head_repo)
        return None, None
    workspace = git_workspace(settings)
    mirror = workspace.sync(repo, token=token())
    base = f"refs/remotes/origin/{pull.base.ref}"
    # `evidence_between` clones with --shared, which cannot fetch lazily: a partial mirror hydrates first
    workspace.hydrate(repo, [pull.head.sha, merge_base(mirror, base, pull.head.sha)], token=token())
    evidence = evidence_between(
        mirror,
        base,
        pull.head.sha,
        validate=config.validate_commands,
        setup=config.setup_commands,
        plan_text=plan,
        sandbox=Sandbox(SandboxPolicy.from_settings(settings)),
        data_dir=settings.archon_data_dir,
    )
    return evidence, files_at(mirror, pull.head.sha)


def run_on_github(
    record: RunRecord,
    settings: Settings,
    forge: RepoForge,
    store: RunStore,
    token: Callable[[], str],
    publisher: Publisher | None = None,
    status: StatusEdits | None = None,
) -> Outcome:
    """Everything one run job does after the record says `running`.

    The issue's text is the snapshot taken when the run was accepted; only a run without one (a
    benchmark cell, an older record) reads it from GitHub, once, and keeps that for its retries.
    The repository's files — `.github/archon.yml`, its workflows, its conventions — come from the mirror,
    at the commit of the default branch the run's worktree was made from: config and code that agree,
    rather than a contents-API call per file. The worktree comes first: `prepare` checks the remote for
    pushes while it checks out what the mirror has, so a later run pays for that round trip only when
    something moved (docs/performance.md, workspaces). The default branch too: the mirror's `origin/HEAD`
    is the remote's, so no `GET /repos/{repo}`.
    `status`: the job's status comment writer (its interval spans the whole job).
    """
    if record.issue is None:
        title, body, url = forge.issue(record.config.issue)
        record.issue = IssueInfo(number=record.config.issue, title=title, body=body, url=url)
    workspace = git_workspace(settings)
    record.branch = record.branch or branch_name(record)
    worktree = workspace.prepare(record.config.repo, record.run_id, record.branch, token=token())
    try:
        mirror = workspace.mirror_path(record.config.repo)
        record.default_branch = record.default_branch or mirror_default_branch(mirror)
        files = workspace.snapshot(record.config.repo, worktree.base_tip, token=token())
        config = parse_repo_config(files.read_file(CONFIG_PATH))
        workflow = pick_workflow(record, files.read_dir(REPO_DIR))
        registry = registry_for(config, settings)
        publisher = publisher or GitHubPublisher(
            forge,
            store,
            lambda: gated(workflow, record),
            min_score=config.evaluation.min_score,
            status=status,
        )
    except BaseException:
        workspace.remove(worktree)  # nothing ran in it: a retry makes a fresh one
        raise
    workspace.cleanup(settings.archon_keep_failed_hours * 3600)  # ours is held, so it is kept
    return execute(
        workflow, record, publisher, workspace, worktree, config, registry, settings, token,
        store.redis, read_conventions(files.read_file),
    )  # fmt: skip


@dataclass(frozen=True)
class RunSetup:
    """What a run needs besides its worktree: the pieces `execute` assembles the engine's services from."""

    workflow: Workflow
    record: RunRecord
    publisher: Publisher
    config: RepoConfig
    registry: ModelRegistry
    settings: Settings
    token: Callable[[], str | None]


def mirror_default_branch(mirror: Path) -> str:
    """The remote's default branch, as the mirror's last fetch recorded it (`refs/remotes/origin/HEAD`)."""
    ref = git_text(["symbolic-ref", f"{REMOTE_REFS}/HEAD"], cwd=mirror).strip()
    return ref.removeprefix(f"{REMOTE_REFS}/")


def git_workspace(settings: Settings) -> Workspace:
    """The deployment's mirrors and worktrees (`<data dir>/git`), fetched from the GitHub git host."""
    return Workspace(
        settings.archon_data_dir / "git", settings.github_git_url, partial=settings.archon_git_partial_clone
    )


def execute_in(
    workspace: Workspace,
    setup: RunSetup,
    connection: redis.Redis | None = None,
    conventions: str = "",
    **prepare: Any,
) -> Outcome:
    """A fresh worktree for the run's branch (`prepare`: `Workspace.prepare`'s options), then the run."""
    record = setup.record
    record.branch = record.branch or branch_name(record)
    worktree = workspace.prepare(
        record.config.repo, record.run_id, record.branch, token=setup.token(), **prepare
    )
    return execute(
        setup.workflow, record, setup.publisher, workspace, worktree, setup.config, setup.registry,
        setup.settings, setup.token, connection, conventions,
    )  # fmt: skip


def pick_workflow(record: RunRecord, repo_files: dict[str, str]) -> Workflow:
    workflows = load_workflows(repo_files)
    if record.config.workflow not in workflows:
        names = ", ".join(f"`{name}`" for name in sorted(workflows))
        raise WorkflowError(f"there is no workflow `{record.config.workflow}`; available: {names}")
    return workflows[record.config.workflow]


def execute(
    workflow: Workflow,
    record: RunRecord,
    publisher: Publisher,
    workspace: Workspace,
    worktree: Worktree,
    config: RepoConfig,
    registry: ModelRegistry,
    settings: Settings,
    token: Callable[[], str | None],
    connection: redis.Redis | None = None,
    conventions: str = "",
) -> Outcome:
    """`connection`: the Redis holding the installation's daily spend (None: from REDIS_URL, if set).
    `conventions`: the repository's guidance for contributors, fenced (`bot.conventions`)."""
    if connection is None and settings.redis_url and record.installation_id:
        connection = redis.Redis.from_url(settings.redis_url)
    guard = run_guard(record, settings, connection)
    run_dir = settings.archon_data_dir / "runs" / record.run_id
    secrets = [t for t in (token(),) if t]
    sandbox = Sandbox(SandboxPolicy.from_settings(settings))
    validator = make_validator(config, worktree.path, sandbox, settings)
    services = RunServices(
        publisher=publisher,
        worktree=worktree,
        chain_for=chain_factory(record, registry, settings),
        validator=validator,
        run_dir=run_dir,
        base_limits=base_limits(config, settings),
        guard=guard,
        push_token=token,
        secrets=secrets,
        sandbox=sandbox,
        evaluate=Judging(registry, settings),
        forgiving_edits=settings.archon_forgiving_edits,
        interrupts=(JobTimeoutException,),
        conventions=conventions,
    )
    outcome = Outcome(RunState.FAILED, "the run stopped before it finished")
    try:
        outcome = Engine(workflow, record, services).run()
        return outcome
    finally:
        if outcome.state is RunState.FAILED:
            workspace.mark_failed(worktree)
        else:
            workspace.remove(worktree)
