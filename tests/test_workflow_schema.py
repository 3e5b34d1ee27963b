"""Workflow files: the bundled default, repository overrides, every load error, templates and the graph."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import yaml

from bot.agent.loop import AgentLimits
from bot.agent.tools import ALL, READ_ONLY
from bot.workflow import dag
from bot.workflow.schema import AgentNode, WorkflowError, load_workflows, parse_workflow
from bot.workflow.templates import TemplateError, evaluate, render

SOURCE = ".archon/workflows/t.yml"
FIX_ISSUE_ORDER = [
    "explore",
    "plan",
    "post-plan",
    "implement",
    "validate",
    "self-review",
    "commit",
    "open-pr",
    "evaluate",
]


def agent(node_id: str, **fields: object) -> dict[str, object]:
    return {"id": node_id, "kind": "agent", "role": "impl", "prompt": "Fix #{{ issue.number }}", **fields}


def workflow_text(*nodes: dict[str, object], name: str = "t", **top: object) -> str:
    return yaml.safe_dump({"name": name, "description": "A test workflow.", **top, "nodes": list(nodes)})


def context(**overrides: object) -> dict[str, object]:
    base = {
        "issue": {"number": 7, "title": "Crash on empty input", "body": "", "url": "https://x/7"},
        "repo": {"full_name": "octo/demo", "default_branch": "main", "conventions": ""},
        "run": {"id": "r1", "branch": "archon/7", "pairing": "plan-opus impl-kimi"},
        "inputs": {},
        "feedback": "",
        "attempt": 1,
        "validation": {"passed": None, "output": "", "commands": []},
    }
    return {**base, **overrides}


# --- the bundled workflow and overrides -------------------------------------------------------------


def test_bundled_fix_issue_loads_in_order() -> None:
    workflow = load_workflows()["fix-issue"]
    assert [n.id for n in workflow.order()] == FIX_ISSUE_ORDER
    assert workflow.source == "bot/workflow/workflows/fix-issue.yml"


def test_bundled_fix_issue_nodes() -> None:
    workflow = load_workflows()["fix-issue"]
    explore, plan, implement = (workflow.node(i) for i in ("explore", "plan", "implement"))
    assert isinstance(explore, AgentNode) and explore.tool_names() == READ_ONLY
    assert isinstance(plan, AgentNode) and plan.reasoning.enabled and plan.reasoning.budget_tokens == 8000
    assert isinstance(implement, AgentNode) and implement.tool_names() == ALL
    assert not implement.reasoning.enabled
    loop = workflow.node("validate").loop
    assert loop is not None and (loop.back_to, loop.max_iterations, loop.until) == (
        "implement",
        3,
        "validate.passed",
    )
    assert workflow.node("post-plan").inputs == {"plan": "plan.text"}


def test_bundled_prompts_render_with_the_documented_context() -> None:
    workflow = load_workflows()["fix-issue"]
    plan = render(workflow.node("plan").prompt, context(inputs={"exploration": "notes"}, feedback="Use X."))
    assert "Crash on empty input" in plan and "Use X." in plan and "## Risks" in plan
    failed = {"passed": False, "output": "1 failed", "commands": ["pytest -q"]}
    retry = render(
        workflow.node("implement").prompt, context(inputs={"plan": "P"}, attempt=2, validation=failed)
    )
    assert "attempt 2" in retry and "1 failed" in retry and "`pytest -q`" in retry
    first = render(workflow.node("implement").prompt, context(inputs={"plan": "P"}))
    assert "attempt" not in first.split("The plan to implement")[1].split("Work through")[0]


def test_repo_files_override_a_bundled_workflow_and_add_new_ones() -> None:
    files = {
        ".archon/workflows/fix-issue.yml": workflow_text(agent("only"), name="fix-issue"),
        ".archon/workflows/docs.yaml": workflow_text(agent("write"), name="docs"),
        ".archon/workflows/README.md": "not a workflow",
    }
    workflows = load_workflows(files)
    assert set(workflows) == {"fix-issue", "revise", "docs"}
    assert [n.id for n in workflows["fix-issue"].nodes] == ["only"]
    assert workflows["fix-issue"].source == ".archon/workflows/fix-issue.yml"


def test_load_reports_every_broken_file_by_name() -> None:
    files = {
        ".archon/workflows/a.yml": workflow_text(agent("x", dependson=["y"]), name="a"),
        ".archon/workflows/b.yml": workflow_text(agent("x"), name="not-b"),
    }
    with pytest.raises(WorkflowError) as caught:
        load_workflows(files)
    message = str(caught.value)
    assert "`.archon/workflows/a.yml`: node `x`: `dependson`: Extra inputs are not permitted" in message
    assert "`.archon/workflows/b.yml`: `name` is `not-b`" in message


# --- load errors: each names the file and the node ----------------------------------------------------


ERRORS = {
    "cycle": (
        [agent("a", depends_on=["c"]), agent("b", depends_on=["a"]), agent("c", depends_on=["b"])],
        "node `a`: dependency cycle a → c → b → a",
    ),
    "self-cycle": ([agent("a", depends_on=["a"])], "node `a`: dependency cycle a → a"),
    "typo field": ([agent("a"), agent("b", dependson=["a"])], "node `b`: `dependson`: Extra inputs"),
    "dangling depends_on": ([agent("a", depends_on=["nope"])], "node `a`: `depends_on` names `nope`"),
    "dangling input": ([agent("a", inputs={"plan": "nope.text"})], "node `a`: `inputs.plan` names `nope`"),
    "input from a non-ancestor": (
        [agent("a"), agent("b", inputs={"plan": "a.text"})],
        "node `b`: `inputs.plan` reads `a.text`, but `a` is not among its depends_on",
    ),
    "unknown output": (
        [agent("a"), agent("b", depends_on=["a"], inputs={"plan": "a.txt"})],
        "node `b`: `inputs.plan` reads `a.txt`; `agent` nodes output ['text']",
    ),
    "loop back_to a non-ancestor": (
        [
            agent("a"),
            {"id": "v", "kind": "validate", "loop": {"back_to": "a", "max_iterations": 2, "until": "1"}},
        ],
        "node `v`: `loop.back_to` is `a`, which this node does not depend on",
    ),
    "dangling loop back_to": (
        [{"id": "v", "kind": "validate", "loop": {"back_to": "x", "max_iterations": 2, "until": "1"}}],
        "node `v`: `loop.back_to` names `x`, which is not a node",
    ),
    "zero iterations": (
        [
            agent("a"),
            {"id": "v", "kind": "validate", "loop": {"back_to": "a", "max_iterations": 0, "until": "1"}},
        ],
        "node `v`: `loop.max_iterations`: Input should be greater than or equal to 1",
    ),
    "bad when syntax": ([agent("a", when="issue.number >")], "node `a`: `when`: syntax error"),
    "bad prompt syntax": ([agent("a", prompt="{% if x %}")], "node `a`: `prompt`: syntax error"),
    "unknown variable": ([agent("a", prompt="{{ isue.title }}")], "node `a`: `prompt` reads `isue`"),
    "undeclared input": (
        [agent("a", prompt="{{ inputs.plan }}")],
        "node `a`: `prompt` reads `inputs` `plan`",
    ),
    "role and model": (
        [agent("a", model="opus")],
        "node `a`: an agent node needs exactly one of `role` and `model`",
    ),
    "neither role nor model": (
        [{"id": "a", "kind": "agent", "prompt": "p"}],
        "node `a`: an agent node needs exactly one of",
    ),
    "shell without command": ([{"id": "s", "kind": "shell"}], "node `s`: `command`: Field required"),
    "agent field on a built-in": (
        [{"id": "c", "kind": "commit", "prompt": "p"}],
        "node `c`: `prompt`: Extra",
    ),
    "unknown kind": ([{"id": "k", "kind": "deploy"}], "node `k`: Input tag 'deploy'"),
    "duplicate ids": ([agent("a"), agent("a")], "node `a`: the id is used by more than one node"),
    "id shadows the context": ([agent("issue")], "node `issue`: the id is a context variable's name"),
    "unknown tool": ([agent("a", tools=["read_file", "rm"])], "node `a`: `tools`: unknown tools"),
    "unknown tool set": ([agent("a", tools="readonly")], "node `a`: `tools`: must be `read_only`"),
    "budget typo": ([agent("a", budget={"max_turn": 3})], "node `a`: `budget.max_turn`: Extra inputs"),
    "bad reasoning": (
        [agent("a", reasoning={"enabled": True, "budget_tokens": 10})],
        "node `a`: `reasoning.budget_tokens`: Input should be greater than or equal to 1024",
    ),
}


@pytest.mark.parametrize(("nodes", "expected"), ERRORS.values(), ids=ERRORS.keys())
def test_errors_name_the_file_and_the_node(nodes: list[dict[str, object]], expected: str) -> None:
    with pytest.raises(WorkflowError) as caught:
        parse_workflow(workflow_text(*nodes), SOURCE)
    assert f"`{SOURCE}`: {expected}" in str(caught.value)


def test_workflow_level_errors_name_the_file() -> None:
    with pytest.raises(WorkflowError, match=r"`t.yml`: `nodes`: a workflow needs at least one node"):
        parse_workflow(workflow_text(), "t.yml")
    with pytest.raises(WorkflowError, match=r"`t.yml`: `gate` is true but no `post-plan` node"):
        parse_workflow(workflow_text(agent("a"), gate=True), "t.yml")
    with pytest.raises(WorkflowError, match=r"`t.yml` is not valid YAML"):
        parse_workflow("nodes: [", "t.yml")
    with pytest.raises(WorkflowError, match=r"`t.yml` must be a mapping"):
        parse_workflow("- a", "t.yml")


def test_templates_may_read_the_context_and_earlier_nodes() -> None:
    nodes = [
        agent("a"),
        {"id": "v", "kind": "validate", "depends_on": ["a"], "when": "a.text and attempt < 3"},
        {
            "id": "s",
            "kind": "shell",
            "depends_on": ["v"],
            "command": "echo {{ run.branch }} {{ inputs.out }}",
            "inputs": {"out": "v.output"},
            "loop": {"back_to": "a", "max_iterations": 2, "until": "s.exit_code == 0 and v.passed"},
        },
    ]
    workflow = parse_workflow(workflow_text(*nodes), SOURCE)
    assert [n.id for n in dag.loop_body(workflow.nodes, "s", "a")] == ["a", "v", "s"]


def test_budget_overrides_only_the_fields_it_sets() -> None:
    node = parse_workflow(workflow_text(agent("a", budget={"max_turns": 5})), SOURCE).node("a")
    assert isinstance(node, AgentNode)
    base = AgentLimits(max_cost_usd=3)
    assert node.limits(base) == AgentLimits(max_turns=5, max_cost_usd=3)


# --- templates ------------------------------------------------------------------------------------------


def test_render_fails_loudly_on_an_undefined_variable() -> None:
    assert render("#{{ issue.number }}: {{ issue.title }}", context()) == "#7: Crash on empty input"
    with pytest.raises(TemplateError, match=r"node `plan` `prompt`: undefined variable: .*'titel'"):
        render("{{ issue.titel }}", context(), where="node `plan` `prompt`")
    with pytest.raises(TemplateError, match="undefined variable: 'isue' is undefined"):
        render("{{ isue.title }}", context())


def test_templates_cannot_reach_python_internals() -> None:
    with pytest.raises(TemplateError):
        render("{{ issue.__class__.__init__.__globals__ }}", context())


def test_evaluate() -> None:
    assert evaluate("validate.passed", {"validate": {"passed": True}}) is True
    assert evaluate("validation.passed", context()) is False
    assert evaluate("attempt < 3 and not feedback", context(attempt=2)) is True
    with pytest.raises(TemplateError, match=r"node `v` `loop.until`: undefined variable"):
        evaluate("validate.pased", {"validate": {"passed": True}}, where="node `v` `loop.until`")


# --- the graph ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class V:
    id: str
    depends_on: tuple[str, ...] = ()


# a → b → d, a → c → d, e alone; listed out of order to check the file order tie-break.
GRAPH = [V("c", ("a",)), V("a"), V("e"), V("d", ("b", "c")), V("b", ("a",))]


def test_topological_order_is_stable_in_file_order() -> None:
    assert [n.id for n in dag.topological_order(GRAPH)] == ["a", "c", "e", "b", "d"]
    with pytest.raises(ValueError, match="cycle: x → y → x"):
        dag.topological_order([V("x", ("y",)), V("y", ("x",))])


def test_ancestors_and_descendants() -> None:
    assert dag.ancestors(GRAPH, "d") == {"a", "b", "c"}
    assert dag.descendants(GRAPH, "a") == {"b", "c", "d"}
    assert dag.ancestors(GRAPH, "e") == dag.descendants(GRAPH, "e") == set()


def test_ready() -> None:
    assert [n.id for n in dag.ready(GRAPH, done=set(), failed=set())] == ["a", "e"]
    assert [n.id for n in dag.ready(GRAPH, done={"a", "e"}, failed=set())] == ["c", "b"]
    assert [n.id for n in dag.ready(GRAPH, done={"a", "e", "c"}, failed={"b"})] == []
    assert dag.blocked(GRAPH, {"b"}) == {"d"}


def test_resume_set_is_the_failed_node_and_its_descendants() -> None:
    assert dag.resume_set(GRAPH, "b") == {"b", "d"}
    assert dag.resume_set(GRAPH, "a") == {"a", "b", "c", "d"}
    nodes = load_workflows()["fix-issue"].nodes
    assert dag.resume_set(nodes, "validate") == {"validate", "self-review", "commit", "open-pr", "evaluate"}
