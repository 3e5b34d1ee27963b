"""The front door's pure pieces that were made cheaper for speed: each still gives what the slower,
obvious version gives (hypothesis compares them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rq.utils import utcformat

from bot.payloads import depth
from bot.rq_template import now_stamp, stamp_of
from bot.triggers import TriggerError, parse_label, request_from_labels

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=3), children, max_size=4)
    ),
    max_leaves=40,
)


def _reference_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_reference_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_reference_depth(v) for v in value), default=0)
    return 0


@given(json_values, st.integers(min_value=0, max_value=8))
def test_depth_is_the_nesting_counted_no_further_than_one_past_the_limit(value: Any, limit: int) -> None:
    assert depth(value, limit) == min(_reference_depth(value), limit + 1)


@given(st.integers(min_value=0, max_value=(2**33) * 10**9))
def test_stamps_are_what_rq_writes(ns: int) -> None:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
    assert stamp_of(ns) == utcformat(moment)


def test_now_stamp_is_now() -> None:
    before = utcformat(datetime.now(UTC))
    stamp = now_stamp()
    assert before <= stamp <= utcformat(datetime.now(UTC)) and stamp.endswith("Z")


def test_a_cached_label_is_the_same_request_and_a_refused_one_raises_every_time() -> None:
    assert parse_label("archon:plan-opus impl-kimi") is parse_label("archon:plan-opus impl-kimi")
    for _ in range(2):
        with pytest.raises(TriggerError):
            parse_label("archon:")
    request = request_from_labels("archon:plan-opus", ["archon:plan-opus", "archon:impl-kimi"])
    assert {role.value: alias for role, alias in request.models.items()} == {"plan": "opus", "impl": "kimi"}
    assert parse_label("archon:plan-opus").models == {"plan": "opus"}  # the cached one is left as it was
