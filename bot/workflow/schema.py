"""Workflow files: a named graph of nodes — agent calls, shell commands and built-in steps — schema first.

Bundled workflows ship in `bot/workflow/workflows/*.yml`; a repository adds or overrides them (the same
name wins) with `.archon/workflows/*.yml` from its default branch. A file's name is its workflow's name.
The pydantic models below are the documentation and the validator; `parse_workflow` then checks the graph
(unknown ids, cycles, outputs read from nodes that do not run first) and parses every template and
expression, so a bad file fails when it is loaded, never halfway through a run. Every error names the
file and the node.

The run context: the names templates (`prompt`, `system`, `command`) and expressions (`when`,
`loop.until`) can read. The engine provides exactly these; any other name is an error (StrictUndefined),
and loading already rejects names that are not in this list.

    issue       {number: int, title: str, body: str ("" when empty), url: str}
    repo        {full_name: str ("owner/name"), default_branch: str, conventions: str (the repository's
                AGENTS.md / CLAUDE.md / CONTRIBUTING.md / copilot instructions, fenced; "" when none)}
    run         {id: str, branch: str (the run's work branch), pairing: str ("plan-opus impl-kimi")}
    inputs      {name: value}: this node's `inputs`, each the value of the output it names
    feedback    str: the text of `/archon revise <feedback>`; "" when there is none
    attempt     int: 1 on a node's first run; n on the n-th run a `loop` brings about
    validation  {passed: bool | None, output: str, commands: list[str]}: the latest `validate` result;
                before any validation: passed None, output "", commands []
    <node id>   the outputs of each finished ancestor (in `loop.until`, of the node itself too), e.g.
                `plan.text`, `validate.passed`. Ids with `-` are not Jinja names: read those through
                `inputs`. A node skipped by its `when` has every output set to "".

Node outputs (what `inputs` and `<node id>.` can name), by kind:

    agent: text (the final answer)              shell: output (stdout and stderr), exit_code
    post-plan: url (of the plan comment)        validate: passed, output, commands (= `validation`)
    commit: sha                                 open-pr: url, number
    evaluate: text

Built-ins read their inputs by name: `post-plan` posts `inputs.plan`; `open-pr` writes the pull request
body from `inputs.plan` and `inputs.review` when present. `gate: true` stops a run after `post-plan` until
`/archon approve`. A `loop` is checked after its node runs: while `until` is false the run goes back to
`back_to` and re-runs the nodes from there to this one (`dag.loop_body`), `attempt` counting up, at most
`max_iterations` runs in all; if `until` is still false after the last, the node fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.agent.loop import AgentLimits
from bot.agent.tools import ALL, READ_ONLY
from bot.providers.registry import ALIAS_PATTERN
from bot.providers.types import Reasoning
from bot.triggers import WORKFLOW_PATTERN, Role
from bot.workflow import dag, templates

BUNDLED_WORKFLOWS = "bot.workflow.workflows"
BUNDLED_DIR = "bot/workflow/workflows"
REPO_DIR = ".archon/workflows"
SUFFIXES = (".yml", ".yaml")

NODE_ID = r"^[a-z0-9][a-z0-9_-]{0,63}$"
INPUT_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
OUTPUT_REF = r"^[a-z0-9][a-z0-9_-]{0,63}\.[a-z_]+$"

CONTEXT_NAMES = ("issue", "repo", "run", "inputs", "feedback", "attempt", "validation")
BUILTIN_KINDS = ("post-plan", "validate", "commit", "open-pr", "evaluate")
OUTPUTS: Mapping[str, tuple[str, ...]] = {
    "agent": ("text",),
    "shell": ("output", "exit_code"),
    "post-plan": ("url",),
    "validate": ("passed", "output", "commands", "source", "summary", "base", "after", "comparison"),
    "commit": ("sha",),
    "open-pr": ("url", "number"),
    "evaluate": ("text",),
}
TOOL_SETS: Mapping[str, tuple[str, ...]] = {"read_only": READ_ONLY, "all": ALL}

_NO_FILES: Mapping[str, str] = MappingProxyType({})


class WorkflowError(ValueError):
    """A workflow file is not valid; each line of the message names the file, the node and the reason."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Loop(_Strict):
    """Go back to an earlier node until a condition holds."""

    back_to: str = Field(pattern=NODE_ID, description="An ancestor of this node to run again from.")
    max_iterations: int = Field(ge=1, description="Runs of the loop's body at most, the first included.")
    until: str = Field(min_length=1, description="Expression; the loop ends once it is true.")


class _Node(_Strict):
    id: str = Field(pattern=NODE_ID, description="Unique in the workflow; a slug.")
    depends_on: tuple[str, ...] = Field((), description="Nodes that must finish before this one starts.")
    inputs: dict[Annotated[str, Field(pattern=INPUT_NAME)], Annotated[str, Field(pattern=OUTPUT_REF)]] = (
        Field(default_factory=dict, description="`name: node_id.output`, read as `inputs.name`.")
    )
    when: str | None = Field(None, min_length=1, description="Expression; the node is skipped when false.")
    loop: Loop | None = None
    timeout_s: float | None = Field(None, gt=0, description="Wall clock for the node.")


class AgentNode(_Node):
    """A model with tools, in the run's worktree."""

    kind: Literal["agent"]
    role: Role | None = Field(None, description="Model chosen per run for this role; or give `model`.")
    model: str | None = Field(None, pattern=ALIAS_PATTERN.pattern, description="An explicit model alias.")
    prompt: str = Field(min_length=1, description="Template: the task the model is given.")
    system: str | None = Field(None, min_length=1, description="Template: the system prompt.")
    tools: str | tuple[str, ...] = Field("read_only", description="`read_only`, `all` or tool names.")
    reasoning: Reasoning = Field(default_factory=Reasoning)
    budget: AgentLimits | None = Field(
        None, description="Lower limits for this node: each cap is the lower of this and the run's."
    )

    @field_validator("tools")
    @classmethod
    def _tools(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        if isinstance(value, str) and value not in TOOL_SETS:
            raise ValueError(f"must be `read_only`, `all` or a list of tool names, not {value!r}")
        unknown = [name for name in value if name not in ALL] if isinstance(value, tuple) else []
        if unknown:
            raise ValueError(f"unknown tools {unknown}; choose from {list(ALL)}")
        return value

    @model_validator(mode="after")
    def _one_model(self) -> AgentNode:
        if (self.role is None) == (self.model is None):
            raise ValueError("an agent node needs exactly one of `role` and `model`")
        return self

    def tool_names(self) -> tuple[str, ...]:
        return TOOL_SETS[self.tools] if isinstance(self.tools, str) else self.tools

    def limits(self, base: AgentLimits) -> AgentLimits:
        """`base` lowered by the fields this node's `budget` sets: a workflow file in the repository may
        tighten the run's caps (the repository's and the deployment's), never loosen them."""
        if self.budget is None:
            return base
        return base.lowered({name: getattr(self.budget, name) for name in self.budget.model_fields_set})


class ShellNode(_Node):
    """A command run in the run's worktree."""

    kind: Literal["shell"]
    command: str = Field(min_length=1, description="Template: the shell command.")


class BuiltinNode(_Node):
    """A step the engine implements: post the plan, validate, commit, open the pull request, evaluate."""

    kind: Literal["post-plan", "validate", "commit", "open-pr", "evaluate"]


Node = Annotated[AgentNode | ShellNode | BuiltinNode, Field(discriminator="kind")]


class Workflow(_Strict):
    name: str = Field(pattern=WORKFLOW_PATTERN.pattern, description="What triggers name: `workflow=<name>`.")
    description: str = Field(description="One line for help texts.")
    gate: bool = Field(False, description="Stop after `post-plan` until `/archon approve`, by default.")
    nodes: tuple[Node, ...]
    _source: str = PrivateAttr("")

    @field_validator("nodes")
    @classmethod
    def _not_empty(cls, value: tuple[Node, ...]) -> tuple[Node, ...]:
        if not value:
            raise ValueError("a workflow needs at least one node")
        return value

    @property
    def source(self) -> str:
        """The file it was loaded from."""
        return self._source

    def node(self, node_id: str) -> AgentNode | ShellNode | BuiltinNode:
        return next(n for n in self.nodes if n.id == node_id)

    def order(self) -> list[AgentNode | ShellNode | BuiltinNode]:
        return dag.topological_order(self.nodes)


# --- loading --------------------------------------------------------------------------------------


def load_workflows(repo_files: Mapping[str, str] = _NO_FILES) -> dict[str, Workflow]:
    """The bundled workflows, then the repository's `{path: text}` (same name wins). Files that are not
    YAML are ignored. All broken files are reported together."""
    bundled = resources.files(BUNDLED_WORKFLOWS)
    files = {
        f"{BUNDLED_DIR}/{item.name}": item.read_text(encoding="utf-8")
        for item in sorted(bundled.iterdir(), key=lambda item: item.name)
        if item.name.endswith(SUFFIXES)
    }
    workflows: dict[str, Workflow] = {}
    errors: list[str] = []
    for files_layer in (files, repo_files):
        layer: dict[str, Workflow] = {}
        for path, text in sorted(files_layer.items()):
            if not path.endswith(SUFFIXES):
                continue
            try:
                workflow = _named_for_file(parse_workflow(text, path), path)
                if workflow.name in layer:
                    raise WorkflowError(f"`{path}`: workflow `{workflow.name}` is defined in two files")
                layer[workflow.name] = workflow
            except WorkflowError as error:
                errors.append(str(error))
        workflows.update(layer)
    if errors:
        raise WorkflowError("\n".join(errors))
    return workflows


def _named_for_file(workflow: Workflow, path: str) -> Workflow:
    stem = PurePosixPath(path).stem
    if workflow.name != stem:
        raise WorkflowError(f"`{path}`: `name` is `{workflow.name}`, but the file is named for `{stem}`")
    return workflow


def parse_workflow(text: str, source: str) -> Workflow:
    """Validate one file's text; `source` (its path) is named in every error."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise WorkflowError(f"`{source}` is not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise WorkflowError(f"`{source}` must be a mapping with `name`, `description` and `nodes`.")
    try:
        workflow = Workflow.model_validate(data)
    except ValidationError as error:
        raise WorkflowError(_describe(error, data, source)) from error
    if problems := check_graph(workflow):
        raise WorkflowError("\n".join(f"`{source}`: {problem}" for problem in problems))
    workflow._source = source
    return workflow


def _describe(error: ValidationError, data: dict[str, Any], source: str) -> str:
    return "\n".join(f"`{source}`: {_where(item['loc'], data)}{_message(item)}" for item in error.errors())


def _where(loc: tuple[int | str, ...], data: dict[str, Any]) -> str:
    """`node `plan`: `dependson`: ` for ('nodes', 2, 'agent', 'dependson')."""
    if len(loc) >= 2 and loc[0] == "nodes" and isinstance(loc[1], int):
        raw = data["nodes"][loc[1]] if isinstance(data.get("nodes"), list) else None
        node_id = raw.get("id") if isinstance(raw, dict) else None
        node = f"node `{node_id}`" if isinstance(node_id, str) else f"node #{loc[1] + 1}"
        rest = loc[3:] if len(loc) > 2 and loc[2] in OUTPUTS else loc[2:]  # drop the union's kind tag
        return f"{node}: " + (f"`{_dotted(rest)}`: " if rest else "")
    return f"`{_dotted(loc)}`: " if loc else ""


def _dotted(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _message(item: Any) -> str:
    return str(item["msg"]).removeprefix("Value error, ")


# --- graph and template checks -----------------------------------------------------------------------


def check_graph(workflow: Workflow) -> list[str]:
    """What is wrong beyond the schema, one `node `x`: reason` per problem; empty when nothing is."""
    problems = _duplicates(workflow) or _dangling(workflow)
    if not problems and (cycle := dag.find_cycle(workflow.nodes)):
        problems = [f"node `{cycle[0]}`: dependency cycle {' → '.join(cycle)}"]
    if problems:
        return problems
    if workflow.gate and not any(n.kind == "post-plan" for n in workflow.nodes):
        problems.append("`gate` is true but no `post-plan` node posts a plan to stop at")
    for node in workflow.nodes:
        problems += [f"node `{node.id}`: {p}" for p in _node_problems(workflow, node)]
    return problems


def _duplicates(workflow: Workflow) -> list[str]:
    seen: set[str] = set()
    problems = []
    for node in workflow.nodes:
        if node.id in seen:
            problems.append(f"node `{node.id}`: the id is used by more than one node")
        if node.id in CONTEXT_NAMES:
            problems.append(f"node `{node.id}`: the id is a context variable's name; choose another")
        seen.add(node.id)
    return problems


def _dangling(workflow: Workflow) -> list[str]:
    ids = {n.id for n in workflow.nodes}
    problems = []
    for node in workflow.nodes:
        refs = [("depends_on", d) for d in node.depends_on]
        refs += [(f"inputs.{name}", ref.split(".")[0]) for name, ref in node.inputs.items()]
        refs += [("loop.back_to", node.loop.back_to)] if node.loop else []
        problems += [
            f"node `{node.id}`: `{f}` names `{ref}`, which is not a node" for f, ref in refs if ref not in ids
        ]
    return problems


def _node_problems(workflow: Workflow, node: AgentNode | ShellNode | BuiltinNode) -> list[str]:
    earlier = dag.ancestors(workflow.nodes, node.id)
    problems = []
    for name, ref in node.inputs.items():
        source, output = ref.split(".")
        kind = workflow.node(source).kind
        if source not in earlier:
            problems.append(
                f"`inputs.{name}` reads `{ref}`, but `{source}` is not among its depends_on (or theirs)"
            )
        elif output not in OUTPUTS[kind]:
            problems.append(f"`inputs.{name}` reads `{ref}`; `{kind}` nodes output {list(OUTPUTS[kind])}")
    if node.loop and node.loop.back_to not in earlier:
        problems.append(f"`loop.back_to` is `{node.loop.back_to}`, which this node does not depend on")
    for field, source, expression in _templates(node):
        known = earlier | {node.id} if field == "loop.until" else earlier
        problems += _template_problems(source, expression, field, known, set(node.inputs))
    return problems


def _templates(node: AgentNode | ShellNode | BuiltinNode) -> list[tuple[str, str, bool]]:
    """(field, text, is_expression) for every template and expression the node has."""
    found = [("when", node.when, True), ("loop.until", node.loop.until if node.loop else None, True)]
    if isinstance(node, AgentNode):
        found += [("prompt", node.prompt, False), ("system", node.system, False)]
    if isinstance(node, ShellNode):
        found.append(("command", node.command, False))
    return [(field, text, expression) for field, text, expression in found if text is not None]


def _template_problems(
    source: str, expression: bool, field: str, nodes: set[str], inputs: set[str]
) -> list[str]:
    check = templates.check_expression if expression else templates.check_template
    try:
        check(source, f"`{field}`")
    except templates.TemplateError as error:
        return [str(error)]
    problems = []
    unknown = templates.variables(source, expression=expression) - set(CONTEXT_NAMES) - nodes
    if unknown:
        problems.append(f"`{field}` reads {_names(unknown)}: neither context variables nor earlier nodes")
    undeclared = templates.attributes(source, "inputs", expression=expression) - inputs
    if undeclared:
        problems.append(f"`{field}` reads `inputs` {_names(undeclared)}, which the node does not declare")
    return problems


def _names(names: set[str]) -> str:
    return ", ".join(f"`{name}`" for name in sorted(names))
