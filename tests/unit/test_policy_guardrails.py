"""Tenant guardrails: ceilings defer, anomalies pause, and the no-baseline case."""

from __future__ import annotations

from typing import Any

import pytest

from mailwarden.reputation.policy.guardrails import GuardrailSettings, check_tenant

QUIET: dict[str, Any] = {
    "last_hour": 40,
    "last_day": 400,
    "baseline_per_hour": 30.0,
    "history_hours": 24 * 30,
    "new_recipients_hour": 5,
    "recipients_hour": 40,
}


def _check(**kw: Any) -> Any:
    return check_tenant(**{**QUIET, **kw})


def test_ordinary_traffic_is_allowed() -> None:
    v = _check()
    assert (v.action, v.reason, v.retry_after) == ("allow", "within limits", 0.0)
    assert v.as_action() is None
    assert v.inputs["last_hour"] == 40


def test_hourly_ceiling_defers_with_the_message_included() -> None:
    assert _check(last_hour=4999, adding=1, baseline_per_hour=1000.0).action == "allow"
    v = _check(last_hour=4999, adding=2, baseline_per_hour=1000.0)
    assert v.action == "defer"
    assert v.inputs["trigger"] == "hourly"
    assert v.reason.startswith("hourly limit 5000 reached (4999 sent)")
    assert 60.0 <= v.retry_after <= 3600.0
    act = v.as_action()
    assert act is not None
    assert act.kind == "guardrail_defer"


def test_retry_after_estimates_when_room_frees() -> None:
    v = _check(last_hour=5000, adding=500, baseline_per_hour=1000.0)
    assert v.retry_after == pytest.approx(500 * 3600 / 5000)


def test_daily_ceiling_defers() -> None:
    v = _check(last_day=50_000, last_hour=100, baseline_per_hour=2000.0)
    assert v.action == "defer"
    assert v.inputs["trigger"] == "daily"
    assert v.retry_after >= 60.0


def test_a_message_bigger_than_the_limit_says_so() -> None:
    v = _check(adding=6000, baseline_per_hour=1000.0, last_hour=0)
    assert v.action == "defer"
    assert "6000 recipients, more than the hourly limit of 5000" in v.reason


def test_ceilings_can_be_turned_off() -> None:
    s = GuardrailSettings(hourly_limit=0, daily_limit=0)
    assert (
        _check(last_hour=90_000, last_day=10**6, baseline_per_hour=20_000.0, s=s).action == "allow"
    )


def test_spike_against_the_baseline_pauses() -> None:
    v = _check(last_hour=600, baseline_per_hour=30.0)
    assert v.action == "pause"
    assert v.inputs["trigger"] == "spike"
    assert "over 10x the usual 30.0/h" in v.reason
    assert v.retry_after == 0.0  # until an operator resumes
    act = v.as_action()
    assert act is not None
    assert act.kind == "guardrail_pause"


def test_a_spike_needs_spike_min_too() -> None:
    assert _check(last_hour=400, baseline_per_hour=2.0).action == "allow"  # 200x, but small
    assert _check(last_hour=499, baseline_per_hour=2.0, adding=1).action == "pause"


def test_no_baseline_uses_a_higher_absolute_threshold() -> None:
    fresh = {"baseline_per_hour": None, "history_hours": 3}
    assert _check(last_hour=800, **fresh).action == "allow"
    v = _check(last_hour=999, **fresh)
    assert v.action == "pause"
    assert "no baseline yet; limit 1000" in v.reason
    assert v.inputs["baseline_per_hour"] == "none"
    # a baseline from too little history does not count either
    assert _check(last_hour=800, baseline_per_hour=10.0, history_hours=10).action == "allow"


def test_mostly_new_recipients_pause() -> None:
    v = _check(new_recipients_hour=300, recipients_hour=320, last_hour=320, baseline_per_hour=100.0)
    assert v.action == "pause"
    assert v.inputs["trigger"] == "new_recipients"
    assert "300 first-time recipients" in v.reason
    # many new recipients, but a normal share of the hour: a newsletter to a known list
    assert (
        _check(
            new_recipients_hour=300, recipients_hour=1000, last_hour=1000, baseline_per_hour=200.0
        ).action
        == "allow"
    )
    # a high share but few: someone writing to new people
    assert _check(new_recipients_hour=20, recipients_hour=20).action == "allow"


def test_timed_pause_setting() -> None:
    v = _check(last_hour=600, s=GuardrailSettings(pause_seconds=7200.0))
    assert (v.action, v.retry_after) == ("pause", 7200.0)
