"""Limits the operator owns: every cap is the lower of the repository's and the deployment's, the daily
spend and concurrent runs per installation are kept in Redis, wide panels and matrices and unpriced
aliases are refused with the numbers before any model is called, and the permission floor only rises.

Pure arithmetic first; then through triage and real run jobs (fake GitHub, a real private Redis, a real
RQ worker, scripted models priced like the real ones)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from rq import Queue

from bot.agent.loop import AgentLimits
from bot.limits import (
    DailySpend,
    RunGuard,
    active_runs,
    cells_refusal,
    concurrency_refusal,
    effective_limits,
    lowest,
    panel_refusal,
    spend_key,
    today,
)
from bot.providers.factory import build_chain
from bot.providers.registry import ModelRegistry, ModelSpec, Provider
from bot.queue import RUNS_QUEUE
from bot.repo_config import RepoConfigError, bench_cap_usd, parse_repo_config, within_deployment
from bot.runconfig import UnknownModelError, resolve_run
from bot.runner import base_limits
from bot.runs import NodeState, RunState, RunStore
from bot.sample_repo import FILES
from bot.settings import ConfigurationError, Settings
from bot.triggers import RunRequest
from bot.workflow.schema import AgentNode
from tests.support import INSTALLATION_ID, REPO
from tests.test_triage import bot_comments, command, only_reply, run_labelled_issue

pytestmark = pytest.mark.usefixtures("worker_env")

UNPRICED_REPO = "models:\n  cheap:\n    provider: openrouter\n    model: some/unpriced-model\n"


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def run_jobs(redis_conn: redis.Redis) -> list:
    return Queue(RUNS_QUEUE, connection=redis_conn).get_jobs()


# --- the arithmetic -------------------------------------------------------------------------------------


def test_lowest_ignores_unset_layers() -> None:
    assert lowest(None, 3.0, 5.0) == 3.0
    assert lowest(None, None) is None


def test_repository_budgets_cannot_raise_the_deployment_ceilings() -> None:
    config = parse_repo_config("budgets:\n  max_cost_usd: 500\n  max_turns: 4\n  max_wall_s: 99999\n")
    limits = base_limits(config, settings(archon_max_node_usd=2, archon_max_turns=30, archon_max_wall_s=600))
    assert (limits.max_cost_usd, limits.max_turns, limits.max_wall_s) == (2, 4, 600)


def test_a_node_budget_cannot_raise_the_runs_limits() -> None:
    node = AgentNode(
        id="a", kind="agent", role="plan", prompt="p", budget={"max_turns": 500, "max_cost_usd": 0.5}
    )
    limits = node.limits(AgentLimits(max_turns=5, max_cost_usd=3))
    assert (limits.max_turns, limits.max_cost_usd) == (5, 0.5)


def test_lowering_keeps_what_is_not_a_ceiling() -> None:
    base = AgentLimits(max_turns=5)
    lowered = effective_limits(base, {"max_output_tokens": 900, "switch_after": 4, "max_tokens": None})
    assert lowered == AgentLimits(max_turns=5, max_output_tokens=900, switch_after=4)


def test_refusals_carry_the_numbers() -> None:
    deployment = settings(archon_max_judges=5, archon_max_bench_cells=24)
    assert concurrency_refusal(2, 3) is None
    assert concurrency_refusal(3, 3) == (
        "this installation has 3 runs in progress, the limit is 3 (ARCHON_MAX_CONCURRENT_RUNS); "
        "try again when one has finished"
    )
    assert panel_refusal(5, deployment) is None
    assert "1000 judges" in panel_refusal(1000, deployment) and "ARCHON_MAX_JUDGES" in panel_refusal(
        1000, deployment
    )
    assert cells_refusal(2, 4, 3, deployment) is None
    assert "25 cells" in cells_refusal(1, 25, 1, deployment)


def test_the_repository_bench_cap_only_lowers_the_deployments() -> None:
    deployment = settings(archon_bench_max_usd=20)
    assert bench_cap_usd(parse_repo_config("budgets:\n  bench_max_usd: 500\n"), deployment) == 20
    assert bench_cap_usd(parse_repo_config("budgets:\n  bench_max_usd: 5\n"), deployment) == 5
    assert bench_cap_usd(parse_repo_config(None), deployment) == 20


def test_the_repository_may_only_narrow_who_can_start_work() -> None:
    deployment = settings()
    within_deployment(parse_repo_config("triggers:\n  permissions: [maintain, admin]\n"), deployment)
    with pytest.raises(RepoConfigError, match=r"`triggers.permissions`: `read` may not start work"):
        within_deployment(parse_repo_config("triggers:\n  permissions: [read, write]\n"), deployment)


def test_an_unpriced_alias_is_refused_unless_the_deployment_allows_it() -> None:
    registry = ModelRegistry.default().with_overrides(
        {"cheap": ModelSpec(provider=Provider.OPENROUTER, model="x/y")}
    )
    request = RunRequest(models={"impl": "cheap"})
    defaults = {"explore": "haiku", "plan": "opus", "impl": "kimi", "eval": "opus"}
    with pytest.raises(UnknownModelError, match=r"`cheap` has no `prices`.*ARCHON_ALLOW_UNPRICED_MODELS"):
        resolve_run(request, repo=REPO, issue=1, registry=registry, defaults=defaults)
    config = resolve_run(
        request, repo=REPO, issue=1, registry=registry, defaults=defaults, allow_unpriced=True
    )
    assert config.models["impl"].alias == "cheap"
    keyed = settings(openrouter_api_key="k")
    with pytest.raises(ConfigurationError, match="ARCHON_ALLOW_UNPRICED_MODELS"):
        build_chain("cheap", registry, keyed)
    allowed = settings(openrouter_api_key="k", archon_allow_unpriced_models=True)
    assert [slot.spec.model for slot in build_chain("cheap", registry, allowed)] == ["x/y"]


def test_an_unpriced_fallback_is_skipped_not_used() -> None:
    registry = ModelRegistry.default().with_overrides(
        {"cheap": ModelSpec(provider=Provider.OPENROUTER, model="x/y")}
    )
    deployment = settings(moonshot_api_key="k", openrouter_api_key="k", archon_fallbacks="kimi=cheap")
    assert [slot.spec.model for slot in build_chain("kimi", registry, deployment)] == ["kimi-k2.6"]


def test_every_bundled_alias_has_prices() -> None:
    assert [alias for alias, spec in ModelRegistry.default().items() if spec.prices is None] == []


# --- the spend ledger (a real Redis) ---------------------------------------------------------------------


def test_daily_spend_adds_up_per_installation_and_day(redis_conn: redis.Redis) -> None:
    ledger = DailySpend(redis_conn, 7, cap_usd=5.0)
    ledger.record(2.5)
    ledger.record(2.47)
    DailySpend(redis_conn, 8, cap_usd=5.0).record(1.0)
    assert ledger.spent() == pytest.approx(4.97)
    assert ledger.refusal() is None
    assert 0 < redis_conn.ttl(spend_key(7, today())) <= 2 * 24 * 3600
    ledger.record(0.03)
    assert ledger.refusal().startswith("today's spend for this installation is $5.00 of $5.00")


def test_the_run_guard_stops_at_the_run_cap_counting_earlier_nodes(redis_conn: redis.Redis) -> None:
    guard = RunGuard(run_cap_usd=1.0, spent_before=0.6, daily=DailySpend(redis_conn, 7, cap_usd=50))
    assert guard.refusal() is None
    guard.record(0.4)
    assert guard.refusal() == "this run has spent $1.00 of its $1.00 (ARCHON_MAX_RUN_USD)"
    assert DailySpend(redis_conn, 7, cap_usd=50).spent() == pytest.approx(0.4)


# --- through triage ---------------------------------------------------------------------------------------


def use_repo_config(github, text: str, **extra: object) -> None:
    github.add_repo(
        REPO,
        installation=INSTALLATION_ID,
        collaborators={"maintainer": "maintain", "reader": "read"},
        files={".github/archon.yml": text},
        **extra,
    )
    github.add_issue(REPO, 1)


def test_lowering_the_permission_floor_is_a_config_error(github, redis_conn) -> None:
    use_repo_config(github, "triggers:\n  permissions: [read]\n")
    command(github, redis_conn, "/archon run", sender="reader")
    reply = only_reply(github)
    assert "configuration is invalid" in reply and "`triggers.permissions`: `read`" in reply
    assert run_jobs(redis_conn) == []


def test_an_unpriced_repository_alias_is_refused(github, redis_conn) -> None:
    use_repo_config(github, UNPRICED_REPO)
    command(github, redis_conn, "/archon run impl=cheap")
    reply = only_reply(github)
    assert "nothing was started" in reply and "`cheap` has no `prices`" in reply
    assert "ARCHON_ALLOW_UNPRICED_MODELS" in reply and run_jobs(redis_conn) == []


def test_an_unpriced_alias_runs_when_the_deployment_allows_it(github, redis_conn, monkeypatch) -> None:
    monkeypatch.setenv("ARCHON_ALLOW_UNPRICED_MODELS", "true")
    use_repo_config(github, UNPRICED_REPO)
    command(github, redis_conn, "/archon run impl=cheap")
    assert len(run_jobs(redis_conn)) == 1


def test_the_fourth_concurrent_run_is_refused_with_the_numbers(github, redis_conn, monkeypatch) -> None:
    monkeypatch.setenv("ARCHON_MAX_CONCURRENT_RUNS", "3")
    for plan, impl in (("opus", "kimi"), ("opus", "opus"), ("kimi", "kimi")):
        command(github, redis_conn, f"/archon run plan={plan} impl={impl}")
    assert len(run_jobs(redis_conn)) == 3
    assert active_runs(redis_conn, INSTALLATION_ID) == 3
    command(github, redis_conn, "/archon run plan=kimi impl=opus")
    [refusal] = [c["body"] for c in bot_comments(github) if "nothing was started" in c["body"]]
    assert "this installation has 3 runs in progress, the limit is 3 (ARCHON_MAX_CONCURRENT_RUNS)" in refusal
    assert len(run_jobs(redis_conn)) == 3
    command(github, redis_conn, "/archon cancel")  # cancelled runs leave the index
    assert active_runs(redis_conn, INSTALLATION_ID) == 0


def test_a_thousand_judge_panel_is_refused_before_any_model(github, redis_conn) -> None:
    command(github, redis_conn, "/archon evaluate eval=" + ",".join(["opus"] * 1000), pull_request=True)
    reply = only_reply(github)
    assert "a panel of 1000 judges is more than the 5 allowed here (ARCHON_MAX_JUDGES)" in reply
    assert Queue("archon-runs", connection=redis_conn).count == 0
    assert redis_conn.keys("archon:spend:*") == []


def test_a_huge_benchmark_is_refused_before_any_model(github, redis_conn) -> None:
    every = "opus,sonnet,haiku,kimi,gpt"
    command(github, redis_conn, f"/archon bench plan={every} impl={every} repeat=10")
    reply = only_reply(github)
    assert "this benchmark has 250 cells (1 issue(s) × 25 pairing(s) × 10)" in reply
    assert "more than the 24 allowed here (ARCHON_MAX_BENCH_CELLS)" in reply
    assert redis_conn.keys("archon:bench:*") == [] and run_jobs(redis_conn) == []


def test_a_spent_day_refuses_new_runs(github, redis_conn, monkeypatch) -> None:
    monkeypatch.setenv("ARCHON_DAILY_USD_PER_INSTALLATION", "5")
    DailySpend(redis_conn, INSTALLATION_ID, cap_usd=5).record(5.0)
    command(github, redis_conn, "/archon run")
    reply = only_reply(github)
    assert "nothing was started: today's spend for this installation is $5.00 of $5.00" in reply
    assert run_jobs(redis_conn) == []


# --- real runs (scripted models, priced like the real ones) ----------------------------------------------


def failed_node(redis_conn: redis.Redis, record) -> tuple[str, str]:
    record = RunStore(redis_conn).load(record.run_id)
    assert record.state is RunState.FAILED
    node = record.nodes[record.failed_node]
    assert node.state is NodeState.FAILED
    return record.failed_node, node.error or ""


def test_repository_budgets_over_the_deployments_are_clamped(
    github, redis_conn, remote: Path, monkeypatch
) -> None:
    monkeypatch.setenv("ARCHON_MAX_TURNS", "1")
    use_repo_config(github, FILES[".github/archon.yml"] + "budgets:\n  max_turns: 100\n", git_dir=remote)
    record = run_labelled_issue(redis_conn)
    node, error = failed_node(redis_conn, record)
    assert (node, error) == ("explore", "max turns: turn limit of 1 reached")


def test_the_daily_cap_stops_a_run_before_its_next_model_call(
    github, redis_conn, remote: Path, monkeypatch
) -> None:
    monkeypatch.setenv("ARCHON_DAILY_USD_PER_INSTALLATION", "0.0001")
    record = run_labelled_issue(redis_conn)
    node, error = failed_node(redis_conn, record)
    assert node == "explore" and "ARCHON_DAILY_USD_PER_INSTALLATION" in error
    stats = RunStore(redis_conn).load(record.run_id).nodes["explore"].providers["scripted"]
    assert stats.calls == 1  # the first call was allowed (nothing spent yet); the second was not made
    spent = DailySpend(redis_conn, INSTALLATION_ID, cap_usd=1).spent()
    assert spent == pytest.approx(stats.cost_usd) and spent > 0.0001
    command(github, redis_conn, "/archon run plan=kimi impl=kimi")
    assert "nothing was started: today's spend for this installation" in bot_comments(github)[-1]["body"]


def test_the_run_cap_counts_every_node(github, redis_conn, remote: Path, monkeypatch) -> None:
    monkeypatch.setenv("ARCHON_MAX_RUN_USD", "0.0001")
    record = run_labelled_issue(redis_conn)
    node, error = failed_node(redis_conn, record)
    assert node == "explore" and "(ARCHON_MAX_RUN_USD)" in error and "this run has spent" in error


# --- the command line ---------------------------------------------------------------------------------------


def test_the_cli_refuses_a_wide_panel_before_reading_the_repository(tmp_path: Path) -> None:
    from bot.local import evaluate_local

    with pytest.raises(ConfigurationError, match="a panel of 6 judges is more than the 5 allowed"):
        evaluate_local(tmp_path, "main", "fix", ["opus"] * 6, None, tmp_path / "out", settings())


def test_the_cli_refuses_a_huge_matrix_before_exploring(tmp_path: Path) -> None:
    from bot import sample_repo
    from bot.bench.local import LocalBench, bench_local

    bare = sample_repo.create_bare_remote(tmp_path / "remotes", "octo/sample")
    issue = tmp_path / "issue.md"
    issue.write_text(f"# {sample_repo.ISSUE_TITLE}\n\n{sample_repo.ISSUE_BODY}\n")
    models = sample_repo.write_models_file(tmp_path / "models.yml")
    deployment = settings(
        archon_data_dir=tmp_path / "data", archon_models_file=models, archon_max_bench_cells=3
    )
    request = LocalBench(
        str(bare), [issue], ["opus", "kimi"], ["opus", "kimi"], 1, [], None, tmp_path / "out"
    )
    with pytest.raises(ConfigurationError, match=r"4 cells .* more than the 3 allowed here"):
        bench_local(request, deployment)
    assert not (tmp_path / "out").exists()


def test_judges_are_checked_before_each_call_and_charged_after(redis_conn: redis.Redis) -> None:
    from bot.evaluation.service import judge_change
    from tests.test_evaluation_judge import DIFF, PLAN, judge, scores, submit

    first, second = judge(submit(scores(True))), judge(submit(scores(True)))
    daily = DailySpend(redis_conn, 7, cap_usd=50)
    guard = RunGuard(run_cap_usd=0.01, daily=daily)  # one opus-priced judging call costs about $0.03
    verdict = judge_change(
        [("opus", first), ("sonnet", second)], title="b is wrong", body="", diff=DIFF, plan=PLAN, guard=guard
    )
    assert first.provider.remaining == 0 and second.provider.remaining == 1  # never called
    assert verdict.evaluation.status == "ok"  # the first judge's scores stand
    assert any("(ARCHON_MAX_RUN_USD)" in flag for flag in verdict.evaluation.flags)
    assert daily.spent() == pytest.approx(verdict.cost_usd) and verdict.cost_usd > 0.01
