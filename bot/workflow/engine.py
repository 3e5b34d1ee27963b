"""The workflow engine: runs a workflow's nodes in order for one run, in the run's worktree.

It knows nothing of GitHub, Redis or RQ. What it needs from the outside comes in `RunServices`: a
`Publisher` (the plan comment, the pull request, progress reports), the worktree, the model chain for an
agent node, the validation commands, a token for pushing, and what the `evaluate` node judges with
(`bot.workflow.evaluate`). The same engine runs behind the webhook
(publishing to GitHub) and at a terminal (`archon-bot run`, publishing to a folder).

Every node's state is in the run record and reported after each change. A node that fails stops the
run with its reason; `/archon retry` resets it and its descendants and runs again from there. Nodes that
change code commit and push a checkpoint to the run's branch, so a retry on another machine continues
from the pushed work: no job depends on a local disk from an earlier job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bot.agent.ledger import ProviderStats
from bot.agent.loop import Agent, AgentLimits, SpendGuard
from bot.agent.tools import Toolbox
from bot.providers.types import ModelSlot
from bot.runs import NodeRun, NodeState, RunRecord, RunState, now
from bot.sandbox import Sandbox
from bot.secrets import describe_error
from bot.untrusted import NOTICE, fence
from bot.validation.baseline import feedback
from bot.validation.schema import ValidationRun
from bot.validation.validator import Validator
from bot.workflow import dag
from bot.workflow.evaluate import Judging, judge_verdict, review_wanted
from bot.workflow.report import pull_request_body, pull_request_title
from bot.workflow.schema import AgentNode, BuiltinNode, ShellNode, Workflow
from bot.workflow.templates import evaluate, render, render_shell
from bot.workspace import Worktree

log = logging.getLogger(__name__)

Node = AgentNode | ShellNode | BuiltinNode
WRITE_TOOLS = {"write_file", "edit_file", "multi_edit", "run"}
DEFAULT_SYSTEM = (
    "You are a careful software engineer working in a git repository with the tools provided. " + NOTICE
)
VALIDATE_TIMEOUT_S = 900
NO_VALIDATION = (
    "No validation commands are configured (`validate:` in `.github/archon.yml`) and none were detected."
)
NO_EVALUATOR = "no evaluator is configured for this run"
NOTHING_CHANGED = "the implementation changed no files, so there is nothing to validate or propose"


class Publisher(Protocol):
    """Where a run's results go: GitHub for webhook runs, a folder for `archon-bot run`."""

    def post_plan(self, record: RunRecord, text: str) -> str:
        """Publish the plan; return its URL. Earlier plans of the run are marked superseded."""
        ...

    def open_pr(self, record: RunRecord, title: str, body: str) -> tuple[int | None, str]:
        """Open (or find) the draft pull request for the run's branch: (number, URL)."""
        ...

    def progress(self, record: RunRecord) -> None:
        """The record changed: save it and show it (the status comment, a terminal table)."""
        ...

    def post_review(self, record: RunRecord, body: str, comments: list[dict]) -> str:
        """Publish the evaluation (a PR review on GitHub); return where it is."""
        ...


@dataclass
class RunServices:
    publisher: Publisher
    worktree: Worktree
    chain_for: Callable[[AgentNode], tuple[str, list[ModelSlot]]]
    #: Validation (the plan detected or configured for this repository); None: there is nothing to run.
    validator: Validator | None
    run_dir: Path
    base_limits: AgentLimits = field(default_factory=AgentLimits)
    #: The run's cost cap and the installation's daily spend, checked before every model call.
    guard: SpendGuard | None = None
    push_token: Callable[[], str | None] = lambda: None
    secrets: Sequence[str] = ()
    #: The one command runner (bubblewrap under the deployment's policy) for tools, validation, shell nodes.
    sandbox: Sandbox = field(default_factory=Sandbox)
    #: The eval model's registry and settings for the `evaluate` node; None: that node fails, saying so.
    evaluate: Judging | None = None
    push: bool = True  # `archon-bot run` keeps the branch local and writes the diff to its folder
    #: Exceptions that stop the whole job rather than fail a node (a job timeout from the queue).
    interrupts: tuple[type[BaseException], ...] = ()
    #: The repository's conventions for contributors, fenced (`bot.conventions`): `repo.conventions`.
    conventions: str = ""
    #: The edit tools' forgiving rules (line-number prefixes, whitespace, indentation):
    #: `ARCHON_FORGIVING_EDITS`.
    forgiving_edits: bool = True


@dataclass(frozen=True)
class Outcome:
    state: RunState
    summary: str


class NodeFailedError(Exception):
    """A node could not do its job; the message is the one-line reason people read."""


def gated(workflow: Workflow, record: RunRecord) -> bool:
    """Whether the run stops for approval after its plan (trigger, then repository, then workflow)."""
    if record.config.gate is not None:
        return record.config.gate == "plan"
    return workflow.gate


def plan_node_id(workflow: Workflow) -> str | None:
    """The node whose output the `post-plan` step publishes (what `/archon revise` re-runs)."""
    for node in workflow.nodes:
        if node.kind == "post-plan" and "plan" in node.inputs:
            return node.inputs["plan"].split(".", 1)[0]
    return None


def prepare_nodes(workflow: Workflow, record: RunRecord) -> None:
    """Give the record a NodeRun per node, in workflow order, keeping the states it already has."""
    nodes = {}
    for node in workflow.order():
        nodes[node.id] = record.nodes.get(node.id) or NodeRun(id=node.id, kind=node.kind)
    record.nodes = nodes


def reset_from(workflow: Workflow, record: RunRecord, node_id: str) -> list[str]:
    """Mark `node_id` and everything after it as pending again (retry, revise). Returns their ids."""
    again = dag.resume_set(workflow.nodes, node_id)
    for nid in again:
        state = record.nodes[nid]
        state.state, state.error, state.outputs = NodeState.PENDING, None, {}
    for loop_node in [n.id for n in workflow.nodes if n.loop and n.id in again]:
        record.loops.pop(loop_node, None)
    return [n.id for n in workflow.order() if n.id in again]


class Engine:
    def __init__(self, workflow: Workflow, record: RunRecord, services: RunServices) -> None:
        self.workflow, self.record, self.services = workflow, record, services
        self.order = workflow.order()
        prepare_nodes(workflow, record)

    # --- the run ------------------------------------------------------------------------------

    def run(self) -> Outcome:
        index = 0
        while index < len(self.order):
            node = self.order[index]
            state = self.record.nodes[node.id]
            if state.state in (NodeState.DONE, NodeState.SKIPPED):
                index += 1
                continue
            try:
                self._run_node(node, state)
                index = self._after(node, state, index)
            except NodeFailedError as error:
                return self._failed(state, str(error))
            except self.services.interrupts:
                raise
            except Exception as error:  # a bug or an outage: the node fails visibly, the run stops
                log.exception("node %s of run %s crashed", node.id, self.record.run_id)
                return self._failed(state, describe_error(error))
            if index < 0:
                return Outcome(RunState.WAITING, self._waiting_summary())
        return Outcome(RunState.DONE, self._done_summary())

    def _run_node(self, node: Node, state: NodeRun) -> None:
        context = self.context(node)
        if node.when and not evaluate(node.when, context, where=f"node `{node.id}` `when`"):
            state.state, state.outputs = NodeState.SKIPPED, dict.fromkeys(_outputs(node), "")
            self.services.publisher.progress(self.record)
            return
        state.state, state.error, state.attempts = NodeState.RUNNING, None, state.attempts + 1
        state.started_at, state.finished_at = now(), None
        self.services.publisher.progress(self.record)
        context["attempt"] = state.attempts
        try:
            state.outputs = self._execute(node, state, context)
        finally:
            state.finished_at = now()
        state.state = NodeState.DONE
        self.services.publisher.progress(self.record)

    def _after(self, node: Node, state: NodeRun, index: int) -> int:
        """The index of the next node: a loop may go back; a gate after the plan returns -1 (stop)."""
        if node.loop is not None:
            passed = evaluate(node.loop.until, self.context(node), where=f"node `{node.id}` `loop.until`")
            runs = self.record.loops.get(node.id, 1)
            if not passed:
                if runs >= node.loop.max_iterations:
                    state.state = NodeState.FAILED
                    raise NodeFailedError(f"`{node.loop.until}` is still false after {runs} attempts")
                self.record.loops[node.id] = runs + 1
                body = dag.loop_body(self.order, node.id, node.loop.back_to)
                for member in body:
                    self.record.nodes[member.id].state = NodeState.PENDING
                return next(i for i, n in enumerate(self.order) if n.id == node.loop.back_to)
        if node.kind == "post-plan" and gated(self.workflow, self.record) and not self.record.approved:
            return -1
        return index + 1

    def _failed(self, state: NodeRun, reason: str) -> Outcome:
        state.state, state.error, state.finished_at = NodeState.FAILED, reason, state.finished_at or now()
        if state.kind == "evaluate" and self.record.pr_number is not None:  # a pull request on GitHub
            return self._evaluation_failed()
        self.record.failed_node = state.id
        self.services.publisher.progress(self.record)
        summary = f"Node `{state.id}` failed: {reason}"
        return Outcome(RunState.FAILED, summary)

    def _evaluation_failed(self) -> Outcome:
        """The pull request is the run's result and it exists: the run is done, with its link. The
        evaluate node stays failed with its reason, which the status comment shows beside
        `/archon evaluate` (`bot.status`); the run stops here, as after any failed node."""
        self.services.publisher.progress(self.record)
        return Outcome(RunState.DONE, self._done_summary())

    # --- the run context (see bot/workflow/schema.py) ------------------------------------------

    def context(self, node: Node) -> dict[str, Any]:
        """What templates read. Text people wrote (the issue, revise feedback) arrives cleaned and
        fenced as untrusted data (`bot.untrusted`), so no template can hand it to a model bare."""
        record = self.record
        issue = record.issue
        finished = {
            nid: n.outputs
            for nid, n in record.nodes.items()
            if n.state in (NodeState.DONE, NodeState.SKIPPED)
        }
        if node.loop is not None and record.nodes[node.id].state is NodeState.DONE:
            finished[node.id] = record.nodes[node.id].outputs
        inputs = {}
        for name, ref in node.inputs.items():
            source, _, output = ref.partition(".")
            inputs[name] = finished.get(source, {}).get(output, "")
        return {
            **finished,
            "issue": {
                "number": record.config.issue,
                "title": fence("issue-title", issue.title, author=issue.author) if issue else "",
                "body": fence("issue-body", issue.body, author=issue.author) if issue else "",
                "url": issue.url if issue else "",
            },
            "repo": {
                "full_name": record.config.repo,
                "default_branch": record.default_branch or "main",
                "conventions": self.services.conventions,
            },
            "run": {"id": record.run_id, "branch": record.branch or "", "pairing": record.config.pairing()},
            "inputs": inputs,
            "feedback": fence("feedback", record.feedback),
            "attempt": max(1, record.nodes[node.id].attempts),
            "validation": self._latest_validation(),
        }

    def _latest_validation(self) -> dict[str, Any]:
        done = [n for n in self.record.nodes.values() if n.kind == "validate" and n.outputs]
        if not done:
            return {**dict.fromkeys(_outputs_of("validate")), "output": "", "commands": []}
        latest = max(done, key=lambda n: n.finished_at or now())
        return {key: latest.outputs.get(key) for key in _outputs_of("validate")}

    # --- node kinds ----------------------------------------------------------------------------

    def _execute(self, node: Node, state: NodeRun, context: dict[str, Any]) -> dict[str, Any]:
        if isinstance(node, AgentNode):
            return self._agent(node, state, context)
        if isinstance(node, ShellNode):
            return self._shell(node, context)
        if node.kind == "evaluate":
            return self._evaluate(node, state, context)
        handler = {
            "post-plan": self._post_plan,
            "validate": self._validate,
            "commit": self._commit,
            "open-pr": self._open_pr,
        }[node.kind]
        return handler(node, context)

    def _agent(self, node: AgentNode, state: NodeRun, context: dict[str, Any]) -> dict[str, Any]:
        alias, chain = self.services.chain_for(node)
        state.model = alias
        where = f"node `{node.id}`"
        system = render(node.system or DEFAULT_SYSTEM, context, where=f"{where} `system`")
        prompt = render(node.prompt, context, where=f"{where} `prompt`")
        toolbox = self._toolbox(node.tool_names())
        transcript = self.services.run_dir / "transcripts" / f"{node.id}-{state.attempts}.jsonl"
        limits = node.limits(self.services.base_limits)
        agent = Agent(chain, toolbox, limits, node.reasoning, transcript, guard=self.services.guard)
        try:
            result = agent.run(system, prompt)
        finally:
            _account(state, agent)
            if WRITE_TOOLS & set(node.tool_names()):
                self._checkpoint(f"archon: {node.id} (attempt {state.attempts})")
        if not result.completed:
            raise NodeFailedError(f"{result.stop.replace('_', ' ')}: {result.stop_detail}")
        if not result.final_text.strip():
            raise NodeFailedError("the model ended without an answer")
        return {"text": result.final_text}

    def _shell(self, node: ShellNode, context: dict[str, Any]) -> dict[str, Any]:
        command = render_shell(node.command, context, where=f"node `{node.id}` `command`")
        box = self._toolbox(())
        result = box.execute(command, int(node.timeout_s or VALIDATE_TIMEOUT_S))
        if not result.ok:
            why = "timed out" if result.timed_out else f"exited with {result.exit_code}"
            raise NodeFailedError(f"`{command}` {why}: {_tail(result.output)}")
        return {"output": result.output, "exit_code": result.exit_code}

    def _post_plan(self, node: BuiltinNode, context: dict[str, Any]) -> dict[str, Any]:
        plan = str(context["inputs"].get("plan") or "").strip()
        if not plan:
            raise NodeFailedError("there is no plan to post (the plan node gave no text)")
        url = self.services.publisher.post_plan(self.record, plan)
        if url not in self.record.plan_urls:
            self.record.plan_urls.append(url)
        return {"url": url}

    def _validate(self, node: BuiltinNode, context: dict[str, Any]) -> dict[str, Any]:
        """The change's run against the merge base's: only what the change broke fails it, and what was
        already failing is named as such, never sent back to the implementer as its fault."""
        validator = self.services.validator
        if validator is None or validator.plan.empty:
            return {"passed": True, "output": NO_VALIDATION, "commands": [], "source": ""}
        worktree = self.services.worktree
        if not worktree.changed_files():
            raise NodeFailedError(NOTHING_CHANGED)  # fail fast: no validation, no retry
        if node.timeout_s:
            validator.timeout_s = float(node.timeout_s)
        base = self._validation_base(validator)
        after = validator.run(worktree.path)
        comparison = validator.compare(base, after, self._plan_text())
        return {
            "passed": comparison.passed,
            "output": feedback(comparison, after),
            "commands": list(validator.plan.commands),
            "source": validator.plan.source,
            "summary": comparison.reason,
            "base": base.model_dump(mode="json") if base else None,
            "after": after.model_dump(mode="json"),
            "comparison": comparison.model_dump(mode="json"),
        }

    def _validation_base(self, validator: Validator) -> ValidationRun | None:
        """The plan on the merge base, once per run: a loop's later attempts and a retry reuse it."""
        for state in self.record.nodes.values():
            if state.kind == "validate" and state.outputs.get("base"):
                return ValidationRun.model_validate(state.outputs["base"])
        worktree = self.services.worktree
        return validator.at_commit(worktree.path, worktree.base_sha)

    def _plan_text(self) -> str | None:
        plan = self.record.nodes.get(plan_node_id(self.workflow) or "")
        return str(plan.outputs.get("text") or "") or None if plan else None

    def _commit(self, node: BuiltinNode, context: dict[str, Any]) -> dict[str, Any]:
        worktree = self.services.worktree
        if not worktree.changed_files():
            raise NodeFailedError(NOTHING_CHANGED)
        issue = self.record.issue
        title = issue.title if issue else f"issue #{self.record.config.issue}"
        message = (
            f"Fix #{self.record.config.issue}: {title}\n\nArchon run {self.record.run_id} "
            f"({self.record.config.pairing()})."
        )
        worktree.commit(message)
        if self.services.push:
            worktree.push(self.services.push_token())
        return {"sha": worktree.head()}

    def _open_pr(self, node: BuiltinNode, context: dict[str, Any]) -> dict[str, Any]:
        if not self.record.open_pr:
            return {"url": "", "number": 0}  # a benchmark cell: the pushed branch is the result
        inputs = context["inputs"]
        title = pull_request_title(self.record)
        body = pull_request_body(self.record, str(inputs.get("review") or ""), self.services.worktree.diff())
        number, url = self.services.publisher.open_pr(self.record, title, body)
        self.record.pr_number, self.record.pr_url = number, url
        return {"url": url, "number": number or 0}

    def _evaluate(self, node: BuiltinNode, state: NodeRun, context: dict[str, Any]) -> dict[str, Any]:
        """Judge the change (`bot.workflow.evaluate`), keep the evaluation, post the review (and its check
        run) through the publisher. A failed evaluation fails the node after its review is posted, so the
        pull request says why; `_failed` then ends a run whose pull request exists as done."""
        services = self.services
        if services.evaluate is None:
            raise NodeFailedError(NO_EVALUATOR)
        verdict = judge_verdict(
            self.record,
            context,
            state,
            services.evaluate,
            services.worktree,
            services.validator,
            services.guard,
        )
        self.record.evaluation = verdict.evaluation.model_dump(mode="json")
        url = ""
        if review_wanted(self.record):
            url = services.publisher.post_review(self.record, verdict.body, verdict.comments)
        if verdict.evaluation.status == "failed":
            raise NodeFailedError(f"{verdict.headline()} (the review on the pull request says so)")
        return {"text": verdict.headline(), "url": url}

    # --- helpers -------------------------------------------------------------------------------

    def _toolbox(self, tools: Sequence[str]) -> Toolbox:
        """Tools bound to the run's worktree, running commands through the deployment's sandbox."""
        services = self.services
        return Toolbox(
            services.worktree.path,
            tools,
            secrets=services.secrets,
            sandbox=services.sandbox,
            forgiving_edits=services.forgiving_edits,
        )

    def _checkpoint(self, message: str) -> None:
        """Commit and push work in progress, so a retry anywhere continues from it."""
        worktree = self.services.worktree
        if worktree.commit(message) is not None and self.services.push:
            worktree.push(self.services.push_token())

    def _waiting_summary(self) -> str:
        plan = f"[The plan]({self.record.plan_urls[-1]})" if self.record.plan_urls else "The plan"
        return (
            f"{plan} is posted and waits for approval. Comment `/archon approve` to implement it, or "
            "`/archon revise <feedback>` to have it rewritten."
        )

    def _done_summary(self) -> str:
        parts = []
        if self.record.plan_urls:
            parts.append(f"[Plan]({self.record.plan_urls[-1]})")
        if self.record.pr_url:
            parts.append(f"[draft pull request]({self.record.pr_url})")
        return " · ".join(parts) or "The workflow finished."


def _account(state: NodeRun, agent: Agent) -> None:
    """Add an agent run's ledger to the node (a node's attempts add up)."""
    ledger = agent.ledger
    state.usage = state.usage + ledger.usage
    state.cost_usd = round(state.cost_usd + ledger.cost_usd, 8)
    for name, stats in ledger.providers.items():
        state.providers[name] = _merge(state.providers.get(name), stats)
    for key, stats in ledger.models.items():
        state.models[key] = _merge(state.models.get(key), stats)
    answered = [c for c in ledger.calls if c.error is None]
    if answered:
        state.answered_by = answered[-1].model


def _merge(old: ProviderStats | None, new: ProviderStats) -> ProviderStats:
    return new.model_copy() if old is None else old + new


def _outputs(node: Node) -> tuple[str, ...]:
    return _outputs_of(node.kind)


def _outputs_of(kind: str) -> tuple[str, ...]:
    from bot.workflow.schema import OUTPUTS

    return OUTPUTS[kind]


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(line for line in text.strip().splitlines()[-lines:])[:300]
