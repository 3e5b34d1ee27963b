"""The benchmark's pure half: cell schema, aggregation arithmetic, headline wording, and the report outputs.

The main fixture is a 2 × 2 matrix (plan × implement ∈ {opus, kimi}) over issues #12 and #15, 3 repeats each,
where the pairings differ in quality and cost and one cell hung. Expected numbers are worked out by hand in
the comments next to them.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.agent.ledger import ProviderStats
from bot.bench.aggregate import MISSING_REASON, headline, stat, summarize, verdict, within_noise
from bot.bench.chart import quality_cost_png
from bot.bench.report import BenchReport, bench_html, bench_json, bench_markdown, mermaid_chart
from bot.bench.results import BenchSpec, CellKey, CellResult, ledger_fields
from bot.providers.types import Usage

GOLDEN = Path(__file__).parent / "data" / "golden"
SPEC = BenchSpec(
    repo="octo/widgets",
    issues=[12, 15],
    plan=["opus", "kimi"],
    impl=["opus", "kimi"],
    repeat=3,
    judge=["opus"],
)
# Per pairing: dimension scores of issue #12's first repeat (totals OO 62, OK 57, KO 59, KK 46) and cost.
BASE = {
    ("opus", "opus"): ([9, 9, 9, 9, 8, 9, 9], 1.00),
    ("opus", "kimi"): ([8, 8, 8, 8, 8, 8, 9], 0.30),
    ("kimi", "opus"): ([9, 8, 9, 8, 8, 8, 9], 0.80),
    ("kimi", "kimi"): ([7, 6, 7, 6, 6, 7, 7], 0.10),
}
DIMENSION_IDS = ["root_cause", "resolution", "scope", "quality", "testing", "correctness", "fidelity"]
TESTING_SHIFT = {1: 0, 2: 1, 3: -1}  # by repeat
COST_FACTOR = {1: 1.0, 2: 1.1, 3: 0.9}  # by repeat
RESOLUTION_SHIFT = {12: 0, 15: -2}  # by issue
HUNG = CellKey(issue=15, plan="kimi", impl="opus", repeat=2)


def judged(key: CellKey) -> CellResult:
    scores, cost = BASE[key.pairing]
    scores = dict(zip(DIMENSION_IDS, scores, strict=True))
    scores["testing"] += TESTING_SHIFT[key.repeat]
    scores["resolution"] += RESOLUTION_SHIFT[key.issue]
    return CellResult(
        key=key,
        status="ok",
        scores=scores,
        cost_usd=round(cost * COST_FACTOR[key.repeat], 6),
        usage=Usage(input_tokens=10_000 * key.repeat, output_tokens=2_000, cache_read_tokens=30_000),
        wall_s=100.0 * key.repeat,
        tool_calls=20,
        tool_errors=key.repeat - 1,
        retries=1,
        fallbacks=int(key.pairing == ("opus", "kimi") and key.repeat == 3),
        validation_passed=not (key.pairing == ("kimi", "kimi") and key.repeat == 3),
        branch=f"archon/bench-{key.issue}-{key.plan}-{key.impl}-{key.repeat}",
    )


def hung() -> CellResult:
    return CellResult(
        key=HUNG,
        status="failed",
        reason="hung: no output for 600s,\n job killed",
        cost_usd=2.5,
        usage=Usage(input_tokens=50_000),
        wall_s=3600,
        tool_calls=30,
        tool_errors=4,
        stalls=3,
    )


def matrix() -> list[CellResult]:
    return [hung() if key == HUNG else judged(key) for key in SPEC.cells()]


def row(summary, code: str, issue: int | None = None):
    pairings = (
        summary.pairings if issue is None else next(i for i in summary.issues if i.issue == issue).pairings
    )
    return next(p for p in pairings if p.code == code)


# --- schema -------------------------------------------------------------------------------------------------


def test_cell_total_defaults_to_the_sum_of_its_scores() -> None:
    cell = judged(CellKey(issue=12, plan="opus", impl="opus", repeat=1))
    assert cell.total == 62 and cell.out_of == 70


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"status": "failed"}, "needs a reason"),
        ({"status": "ok"}, "needs scores or a total"),
        ({"status": "ok", "scores": {"style": 5}}, "unknown dimensions ['style']"),
        ({"status": "ok", "scores": {"scope": 11}}, "within 0–10"),
        ({"status": "ok", "total": 71}, "outside 0–70"),
    ],
)
def test_cell_rejects_inconsistent_results(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        CellResult(key=HUNG, **fields)


def test_spec_lists_every_cell_in_matrix_order() -> None:
    assert len(SPEC.cells()) == 24
    assert SPEC.pairings() == [("opus", "opus"), ("opus", "kimi"), ("kimi", "opus"), ("kimi", "kimi")]
    assert SPEC.cells()[:4] == [
        CellKey(issue=12, plan="opus", impl="opus", repeat=1),
        CellKey(issue=12, plan="opus", impl="opus", repeat=2),
        CellKey(issue=12, plan="opus", impl="opus", repeat=3),
        CellKey(issue=12, plan="opus", impl="kimi", repeat=1),
    ]


def test_ledger_fields_sum_the_nodes_providers() -> None:
    stats = [
        ProviderStats(tool_calls=5, tool_errors=1, retries=2, usage=Usage(input_tokens=10), cost_usd=0.1),
        ProviderStats(stalls=1, fallbacks=1, usage=Usage(input_tokens=5, output_tokens=3), cost_usd=0.2),
    ]
    cell = CellResult(key=HUNG, status="failed", reason="x", **ledger_fields(stats))
    assert cell.cost_usd == pytest.approx(0.3) and cell.usage == Usage(input_tokens=15, output_tokens=3)
    assert (cell.tool_calls, cell.tool_errors, cell.retries, cell.stalls, cell.fallbacks) == (5, 1, 2, 1, 1)


# --- aggregation --------------------------------------------------------------------------------------------


def test_stat_is_mean_and_sample_sd() -> None:
    assert stat([4.0]) == stat([4.0]) and stat([4.0]).sd == 0.0  # one value: no spread
    two = stat([1.0, 3.0])
    assert (two.mean, two.sd, two.n) == (2.0, math.sqrt(2), 2)  # Σ(x−x̄)² = 2, over n − 1 = 1
    assert stat([]) is None


def test_pairing_codes_and_cell_counts() -> None:
    summary = summarize(matrix(), SPEC)
    assert [p.code for p in summary.pairings] == ["OO", "OK", "KO", "KK"]
    assert [(p.n, p.n_ok, p.n_failed) for p in summary.pairings] == [
        (6, 6, 0),
        (6, 6, 0),
        (6, 5, 1),
        (6, 6, 0),
    ]
    assert summary.n_cells == 24 and [i.issue for i in summary.issues] == [12, 15]


def test_totals_are_means_with_sample_sd() -> None:
    summary = summarize(matrix(), SPEC)
    oo = row(summary, "OO")
    # 62 63 61 (#12) and 60 61 59 (#15): mean 61, Σ(x−x̄)² = 1+4+0+1+0+4 = 10, sd = √(10/5)
    assert (
        oo.total.mean == pytest.approx(61) and oo.total.sd == pytest.approx(math.sqrt(2)) and oo.total.n == 6
    )
    assert row(summary, "OK").total.mean == pytest.approx(56)  # 57 58 56 / 55 56 54
    assert row(summary, "KK").total.mean == pytest.approx(45)  # 46 47 45 / 44 45 43
    per_issue = row(summary, "OO", issue=12).total
    assert (per_issue.mean, per_issue.sd, per_issue.n) == (pytest.approx(62), pytest.approx(1), 3)


def test_dimensions_are_averaged_one_by_one() -> None:
    oo = row(summarize(matrix(), SPEC), "OO")
    # testing 8 9 7 8 9 7: mean 8, Σ = 4, sd √(4/5); resolution 9 9 9 7 7 7: mean 8, Σ = 6, sd √(6/5)
    assert oo.dimensions["testing"].mean == pytest.approx(8)
    assert oo.dimensions["testing"].sd == pytest.approx(math.sqrt(0.8))
    assert oo.dimensions["resolution"].mean == pytest.approx(8)
    assert oo.dimensions["resolution"].sd == pytest.approx(math.sqrt(1.2))
    assert oo.dimensions["fidelity"] == stat([9.0] * 6)


def test_cost_tokens_time_and_counters() -> None:
    summary = summarize(matrix(), SPEC)
    oo, ok, kk = row(summary, "OO"), row(summary, "OK"), row(summary, "KK")
    assert oo.cost_usd.mean == pytest.approx(1.0) and oo.total_cost_usd == pytest.approx(6.0)
    assert ok.cost_usd.mean == pytest.approx(0.3)
    assert oo.tokens["input_tokens"] == pytest.approx(20_000)  # 10k, 20k, 30k per issue
    assert oo.tokens["cache_read_tokens"] == 30_000 and oo.tokens["reasoning_tokens"] == 0
    assert oo.wall_s.mean == pytest.approx(200)
    assert (oo.tool_calls, oo.tool_errors, oo.retries, oo.stalls, oo.fallbacks) == (120, 6, 6, 0, 0)
    assert ok.fallbacks == 2
    assert (kk.validation_passed, kk.validated, kk.validation_rate) == (4, 6, pytest.approx(4 / 6))
    assert oo.validation_rate == 1.0


def test_a_hung_cell_is_a_failed_row_that_does_not_distort_the_means() -> None:
    summary = summarize(matrix(), SPEC)
    ko = row(summary, "KO")
    assert [(f.key, f.reason) for f in ko.failures] == [(HUNG, "hung: no output for 600s,\n job killed")]
    # Scored over the five finished cells: 59 60 58 / 57 56, mean 58, Σ = 1+4+0+1+4 = 10, sd √(10/4).
    assert ko.total.mean == pytest.approx(58) and ko.total.sd == pytest.approx(math.sqrt(2.5))
    assert ko.cost_usd.mean == pytest.approx((0.8 + 0.88 + 0.72 + 0.8 + 0.72) / 5)
    assert ko.tokens["input_tokens"] == pytest.approx(20_000)  # 10k 20k 30k / 10k 30k; not the hung 50k
    assert ko.wall_s.mean == pytest.approx(200)
    # What it spent and went through still counts.
    assert ko.total_cost_usd == pytest.approx(3.92 + 2.5)
    assert (ko.tool_calls, ko.tool_errors, ko.stalls) == (20 * 5 + 30, 0 + 1 + 2 + 0 + 2 + 4, 3)
    per_issue = row(summary, "KO", issue=15)
    assert (per_issue.n, per_issue.n_ok, per_issue.total.mean) == (3, 2, pytest.approx(56.5))
    assert row(summary, "KO", issue=12).failures == []


def test_a_cell_that_never_reported_is_failed_not_dropped() -> None:
    missing = CellKey(issue=12, plan="opus", impl="kimi", repeat=1)
    summary = summarize([c for c in matrix() if c.key != missing], SPEC)
    assert [(f.key, f.reason) for f in row(summary, "OK").failures] == [(missing, MISSING_REASON)]
    assert row(summary, "OK").n == 6 and row(summary, "OK").total.mean == pytest.approx(55.8)  # 280 / 5


def test_duplicate_results_are_refused() -> None:
    with pytest.raises(ValueError, match="two results"):
        summarize([*matrix(), judged(HUNG)], SPEC)


def test_noise_is_two_combined_standard_errors() -> None:
    a, b = stat([60.0, 64.0, 56.0]), stat([59.0, 63.0, 55.0])  # sd 4 each: 2·√(16/3 + 16/3) ≈ 6.5
    assert within_noise(a, b) is True
    assert within_noise(stat([62.0, 63.0, 61.0]), stat([57.0, 58.0, 56.0])) is False  # 5 > 2·√(2/3)
    assert within_noise(stat([60.0]), stat([50.0])) is None


# --- the headline -------------------------------------------------------------------------------------------


def test_headline_names_the_clear_winner() -> None:
    summary = summarize(matrix(), SPEC)
    found = verdict(summary)
    assert (found.reference.code, found.best.code, found.within_noise) == ("OO", "OK", False)
    # OK: 56 / 61 of the score, 0.30 / 1.00 of the cost; KO (58, 0.78) gives less per dollar; KK (45) < 90%.
    assert headline(summary) == (
        "Plan with opus, implement with kimi (OK): 92% of OO's score at 30% of its cost; "
        "1 of 24 cells failed."
    )


def two_pairings(
    oo: list[float], ok: list[float], costs: tuple[float, float] = (1.0, 0.3)
) -> list[CellResult]:
    cells = []
    for impl, totals, cost in (("opus", oo, costs[0]), ("kimi", ok, costs[1])):
        for repeat, total in enumerate(totals, 1):
            key = CellKey(issue=7, plan="opus", impl=impl, repeat=repeat)
            cells.append(CellResult(key=key, status="ok", total=total, cost_usd=cost))
    return cells


SMALL = BenchSpec(repo="octo/widgets", issues=[7], plan=["opus"], impl=["opus", "kimi"], repeat=3)


def test_headline_says_when_the_difference_is_within_the_noise() -> None:
    summary = summarize(two_pairings([60, 64, 56], [59, 63, 55]), SMALL)
    assert headline(summary) == (
        "Plan with opus, implement with kimi (OK): 98% of OO's score at 30% of its cost; "
        "the score difference (-1.0) is within the noise of 3 repeats."
    )


def test_headline_without_repeats_makes_no_noise_claim() -> None:
    summary = summarize(two_pairings([60], [58]), SMALL.model_copy(update={"repeat": 1}))
    assert headline(summary) == (
        "Plan with opus, implement with kimi (OK): 97% of OO's score at 30% of its cost; "
        "too few finished cells to estimate the noise."
    )


def test_headline_when_the_reference_is_the_best_value() -> None:
    summary = summarize(two_pairings([60, 61, 59], [40, 41, 39]), SMALL)
    assert headline(summary) == (
        "Plan and implement with opus (OO) is the best value: no other pairing gives more score per dollar "
        "while keeping 90% of its 60.0/70."
    )


def test_headline_with_one_pairing() -> None:
    spec = SMALL.model_copy(update={"impl": ["opus"], "repeat": 1})
    summary = summarize(two_pairings([60], []), spec)
    assert headline(summary) == "Plan and implement with opus (OO): 60.0/70 at 1.00 USD per cell."


def test_headline_when_one_pairing_alone_finished() -> None:
    spec = SMALL.model_copy(update={"repeat": 1})
    down = CellResult(key=CellKey(issue=7, plan="opus", impl="opus"), status="failed", reason="overloaded")
    summary = summarize([*two_pairings([], [50]), down], spec)
    assert headline(summary) == (
        "Only plan with opus, implement with kimi (OK) finished: 50.0/70 at 0.30 USD per cell; "
        "OO failed every cell."
    )


def test_headline_when_every_cell_failed() -> None:
    cells = [CellResult(key=k, status="failed", reason="provider down") for k in SMALL.cells()]
    summary = summarize(cells, SMALL)
    assert verdict(summary) is None
    assert headline(summary) == "No cell finished: all 6 cells failed (reasons below)."


def test_headline_for_free_scripted_models() -> None:
    summary = summarize(two_pairings([60, 60, 60], [63, 63, 63], costs=(0.0, 0.0)), SMALL)
    assert headline(summary) == (
        "Plan with opus, implement with kimi (OK): 105% of OO's score with both at no cost."
    )  # three identical scores each: no spread, so +3 is beyond the noise


def test_headline_when_the_reference_pairing_failed() -> None:
    spec = SPEC.model_copy(update={"issues": [12], "repeat": 1})
    cells = [
        judged(key)
        if key.plan != "opus" or key.impl != "opus"
        else CellResult(key=key, status="failed", reason="crash")
        for key in spec.cells()
    ]
    summary = summarize(cells, spec)
    found = verdict(summary)
    # OO, the costlier same-model pairing, finished nothing: KK is the reference, and at 46 for 0.10 USD
    # it beats OK (57 for 0.30) and KO (59 for 0.80) on score per dollar.
    assert (found.reference.code, found.best.code) == ("KK", "KK")
    assert headline(summary) == (
        "Plan and implement with kimi (KK) is the best value: no other pairing gives more score per dollar "
        "while keeping 90% of its 46.0/70; OO failed every cell."
    )


def test_headline_without_a_finished_same_model_pairing() -> None:
    spec = SPEC.model_copy(update={"issues": [12], "repeat": 1})
    cells = [
        judged(key) if key.plan != key.impl else CellResult(key=key, status="failed", reason="crash")
        for key in spec.cells()
    ]
    found = verdict(summarize(cells, spec))
    assert (found.reference.code, found.best.code) == ("KO", "OK")  # the top score; 57 ≥ 0.9 × 59


# --- reports ------------------------------------------------------------------------------------------------


def assert_golden(name: str, text: str) -> None:
    """Compare with `tests/data/golden/<name>`; `UPDATE_GOLDEN=1` rewrites it."""
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; rerun with UPDATE_GOLDEN=1 if that is intended"


def test_markdown_matches_the_golden_file() -> None:
    assert_golden("bench-report.md", bench_markdown(summarize(matrix(), SPEC)))


def test_markdown_lists_the_failed_cell_with_its_reason() -> None:
    text = bench_markdown(summarize(matrix(), SPEC))
    reason = "hung: no output for 600s, job killed"  # on one line
    assert f"### Failed cells\n\n- #15 · KO (plan kimi, implement opus) · repeat 2: {reason}\n" in text
    assert "| KO | kimi | opus | 58.0 ± 1.6 |" in text and "| 5/6 |" in text
    assert "| OK (★ best value) |" in text and "| OO (reference) |" in text
    assert "$" not in text  # GitHub reads `$…$` as math


POINT = re.compile(r"^    (?P<name>[A-Za-z0-9/._-]+): \[(?P<x>1|0|0\.\d+), (?P<y>1|0|0\.\d+)\]$")


def mermaid_points(block: str) -> dict[str, tuple[float, float]]:
    lines = block.splitlines()
    assert lines[0] == "```mermaid" and lines[1] == "quadrantChart" and lines[-1] == "```"
    body = lines[2:-1]
    keywords = ("title ", "x-axis ", "y-axis ", "quadrant-1 ", "quadrant-2 ", "quadrant-3 ", "quadrant-4 ")
    statements = [line.strip() for line in body if not POINT.match(line)]
    assert all(s.startswith(keywords) for s in statements), statements
    for statement in statements:  # no characters the quadrant lexer rejects
        assert not re.search(r"[:()\[\]{}\"%;]", statement.split(" ", 1)[1]), statement
    return {m["name"]: (float(m["x"]), float(m["y"])) for m in map(POINT.match, body) if m}


def test_mermaid_quadrant_chart_is_well_formed_and_normalised() -> None:
    summary = summarize(matrix(), SPEC)
    text = bench_markdown(summary)
    blocks = re.findall(r"```mermaid\n.*?\n```", text, re.DOTALL)
    assert len(blocks) == 1 and blocks[0] == mermaid_chart(summary)
    points = mermaid_points(blocks[0])
    assert set(points) == {"OO", "OK", "KO", "KK"}
    assert all(0 <= v <= 1 for xy in points.values() for v in xy)
    assert points["OO"] == (1.0, round(61 / 70, 3))  # the costliest mean sits at the right edge
    assert points["OK"] == (0.3, 0.8)  # 0.30 / 1.00, 56 / 70
    assert "x-axis Cost 0 USD --> 1.00 USD" in blocks[0]


def test_mermaid_chart_without_finished_cells_or_costs() -> None:
    failed = [CellResult(key=k, status="failed", reason="down") for k in SMALL.cells()]
    assert mermaid_chart(summarize(failed, SMALL)) is None
    assert "```mermaid" not in bench_markdown(summarize(failed, SMALL))
    free = mermaid_points(mermaid_chart(summarize(two_pairings([70], [0], costs=(0, 0)), SMALL)))
    assert free == {"OO": (0.0, 1.0), "OK": (0.0, 0.0)}


def test_png_is_written_valid_and_deterministic(tmp_path: Path) -> None:
    summary = summarize(matrix(), SPEC)
    first = quality_cost_png(summary, tmp_path / "a.png").read_bytes()
    second = quality_cost_png(summary, tmp_path / "b.png").read_bytes()
    assert first.startswith(b"\x89PNG\r\n\x1a\n") and len(first) > 10_000
    assert first == second
    assert b"Software" not in first


def test_png_without_finished_cells(tmp_path: Path) -> None:
    failed = [CellResult(key=k, status="failed", reason="down") for k in SMALL.cells()]
    png = quality_cost_png(summarize(failed, SMALL), tmp_path / "none.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_html_is_a_standalone_page_around_the_png() -> None:
    page = bench_html(summarize(matrix(), SPEC), "bench <1>.png")
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert '<img src="bench &lt;1&gt;.png"' in page
    assert page.count("<table>") == 6  # quality and cost, overall and per issue
    assert "<h2>Issue #15</h2>" in page and "hung: no output for 600s, job killed" in page
    assert "<td>OK (★ best value)</td>" in page


def test_json_round_trips_through_the_models() -> None:
    results = matrix()
    summary = summarize(results, SPEC)
    data = json.loads(json.dumps(bench_json(summary, results)))
    report = BenchReport.model_validate(data)
    assert report.summary == summary and report.cells == results
    assert (report.reference, report.best_value, report.within_noise) == ("OO", "OK", False)
    assert report.headline == headline(summary)
    assert data["summary"]["pairings"][2]["failures"][0]["reason"].startswith("hung")
