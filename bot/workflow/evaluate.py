"""The workflow's `evaluate` node: measure the change, judge it blind with the run's eval model, post the
review through the publisher, and keep the evaluation on the run record.

The engine calls `evaluate_node` for `kind: evaluate` nodes with what the run already has (worktree,
validator, publisher, spend guard, conventions) plus `Judging` — the model registry and settings the
judge's chain is built from. Nothing here calls back into the job layer that assembled the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.evaluation.service import Verdict, files_at, judge_change
from bot.limits import RunGuard
from bot.providers.factory import build_chain
from bot.providers.registry import ModelRegistry
from bot.runs import NodeRun, RunRecord
from bot.settings import Settings
from bot.validation.schema import Comparison, Evidence, ValidationRun
from bot.validation.validator import Validator
from bot.workspace import Worktree

EVAL_ROLE = "eval"  # a `Role` value; the record's model table is keyed by it


@dataclass(frozen=True)
class Judging:
    """What the evaluate node needs beyond the run's other services: where the eval model's chain
    (provider, fallbacks, prices) comes from."""

    registry: ModelRegistry
    settings: Settings


def script_variant(record: RunRecord) -> str:
    """For scripted models: scripts may differ per pairing (`<model>-<node>-<plan>-<impl>.jsonl`)."""
    models = record.config.models
    return f"{models['plan'].alias}-{models['impl'].alias}"  # type: ignore[index]


def judge_verdict(
    record: RunRecord,
    context: dict[str, Any],
    state: NodeRun,
    judging: Judging,
    worktree: Worktree,
    validator: Validator | None,
    guard: RunGuard | None,
) -> Verdict:
    """Measure (the validate node's runs on the merge base and the change, and the change's new tests on
    the old code) and judge blind with the run's eval model; the judging's cost goes to `state`."""
    alias = record.config.models[EVAL_ROLE].alias  # type: ignore[index]
    state.model = alias
    chain = build_chain(
        alias, judging.registry, judging.settings, node="evaluate", variant=script_variant(record)
    )
    validation = context["validation"]
    issue = record.issue
    worktree.verify()  # a `.git` the run replaced must not become the source of the old-code checkout
    diff = worktree.diff()
    verdict = judge_change(
        [(alias, chain[0])],
        title=issue.title if issue else "",
        body=issue.body if issue else "",
        diff=diff,
        plan=str(context["inputs"].get("plan") or "") or None,
        validation_output=str(validation.get("output") or ""),
        after=validation.get("passed"),
        evidence=evidence_of(validator, validation, worktree, diff),
        repo_files=files_at(worktree.path, "HEAD"),
        guard=guard,
        conventions=context["repo"]["conventions"],
    )
    state.usage = state.usage + verdict.usage
    state.cost_usd = round(state.cost_usd + verdict.cost_usd, 8)
    return verdict


def evidence_of(
    validator: Validator | None, validation: dict[str, Any], worktree: Worktree, diff: str
) -> Evidence | None:
    """The validate node's runs, plus the fix proof: the change's new tests run on the merge base."""
    if validator is None or not validation.get("after"):
        return None
    after = ValidationRun.model_validate(validation["after"])
    base = ValidationRun.model_validate(validation["base"]) if validation.get("base") else None
    comparison = Comparison.model_validate(validation["comparison"])
    read = lambda path: (worktree.path / path).read_bytes()  # noqa: E731 - the change's files, as they are now
    proof = validator.prove(worktree.path, worktree.base_sha, diff, after, read)
    return Evidence(base=base, after=after, comparison=comparison, proof=proof)


def review_wanted(record: RunRecord) -> bool:
    """A benchmark cell without a pull request keeps its evaluation on the record only."""
    return bool(record.pr_number or not record.bench_id)
