"""Warm-up schedules and the daily cap, with simulated days."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailwarden.reputation.policy import warmup
from mailwarden.reputation.policy.actions import Action
from mailwarden.reputation.policy.warmup import Schedule, WarmupSettings, WarmupState

T0 = 1_700_000_000.0
DAY = 86400.0
SCHEDULES = warmup.load_schedules()
MODERATE = SCHEDULES["moderate"]


def _send_day(
    st: WarmupState, sched: Schedule, start: float, *, bounce_every: int = 0, chunk: int = 100
) -> tuple[WarmupState, int]:
    """Send in chunks until refused; every chunk is delivered (or partly hard-bounced)."""
    sent = 0
    t = start
    while True:
        st, ok, _, _ = warmup.admit(st, sched, now=t, n=chunk)
        if not ok or sent > 200_000:
            return st, sent
        sent += chunk
        for i in range(chunk):
            bad = bounce_every and i % bounce_every == 0
            st = warmup.record(
                st, "mailbox_unknown" if bad else "delivered", "bounced" if bad else "delivered"
            )
        t += 1.0


def test_packaged_schedules() -> None:
    assert MODERATE.caps == (
        100,
        200,
        500,
        1000,
        2000,
        5000,
        10000,
        20000,
        30000,
        40000,
        50000,
        60000,
        70000,
        80000,
    )
    assert 25 <= len(SCHEDULES["conservative"].caps) <= 35
    assert 7 <= len(SCHEDULES["aggressive"].caps) <= 10
    for sched in SCHEDULES.values():
        assert list(sched.caps) == sorted(sched.caps)


def test_fourteen_healthy_days_warm_up_then_no_cap() -> None:
    st = WarmupState()
    steps: list[Action] = []
    for d in range(14):
        day_start = T0 + d * DAY + 3600  # the engine's tick rolls an hour into the day
        st, act = warmup.roll(st, MODERATE, now=day_start)
        if act:
            steps.append(act)
        assert warmup.cap(st, MODERATE) == MODERATE.caps[d]
        st, sent = _send_day(st, MODERATE, day_start)
        assert sent == MODERATE.caps[d]
    st, act = warmup.roll(st, MODERATE, now=T0 + 14 * DAY + 3600)
    assert act is not None
    steps.append(act)
    assert st.day == 14
    assert warmup.cap(st, MODERATE) is None
    assert [a.kind for a in steps] == ["warmup_step"] * 14
    assert steps[-1].reason.startswith("warm-up day 14 done (80000/80000 sent")
    assert steps[-1].reason.endswith("warmed up, no cap")
    st, ok, reason, wait = warmup.admit(st, MODERATE, now=T0 + 14 * DAY + 3601, n=500_000)
    assert (ok, reason, wait) == (True, "warmed up", 0.0)


def test_day_grid_does_not_drift() -> None:
    st, _, _, _ = warmup.admit(WarmupState(), MODERATE, now=T0)
    assert st.day_start == T0
    st, _ = warmup.roll(st, MODERATE, now=T0 + DAY + 5000)
    assert st.day_start == T0 + DAY
    st, _ = warmup.roll(st, MODERATE, now=T0 + 5 * DAY + 1)
    assert st.day_start == T0 + 5 * DAY


def test_a_bad_day_holds() -> None:
    st, _, _, _ = warmup.admit(WarmupState(day=2), MODERATE, now=T0, n=0)
    st, sent = _send_day(st, MODERATE, T0, bounce_every=10)  # 10 % hard bounces
    assert sent == 500
    st, act = warmup.roll(st, MODERATE, now=T0 + DAY)
    assert st.day == 2
    assert act is not None
    assert act.kind == "warmup_hold"
    assert "50 hard bounces" in act.reason
    assert (st.sent, st.bounced, st.attempts) == (0, 0, 0)


def test_one_bounce_on_a_tiny_day_holds_but_a_clean_small_sample_is_fine() -> None:
    s = WarmupSettings(min_fill=0.0)
    st = WarmupState(day=0, day_start=T0, sent=10, attempts=10, bounced=1)
    assert warmup.roll(st, MODERATE, now=T0 + DAY, s=s)[1].kind == "warmup_hold"  # type: ignore[union-attr]
    st = WarmupState(day=0, day_start=T0, sent=10, attempts=10)
    assert warmup.roll(st, MODERATE, now=T0 + DAY, s=s)[0].day == 1


def test_a_breaker_trip_steps_back() -> None:
    st = WarmupState(day=5, day_start=T0, sent=3000)
    st, act = warmup.step_back(st, now=T0 + 100)
    assert st.day == 4
    assert st.sent == 3000
    assert act.kind == "warmup_back"
    assert act.reason == "breaker tripped: warm-up back from day 6 to day 5"
    st0, _ = warmup.step_back(WarmupState(), now=T0)
    assert st0.day == 0
    # a warmed-up lane gets the last cap back
    done = warmup.roll(WarmupState(day=99, day_start=T0), MODERATE, now=T0 + 1)[0]
    back, _ = warmup.step_back(done, now=T0 + 2)
    assert warmup.cap(back, MODERATE) == 80000


def test_over_the_cap_is_refused_with_the_wait_until_the_next_day() -> None:
    st, ok, _, _ = warmup.admit(WarmupState(), MODERATE, now=T0, n=90)
    assert ok
    st, ok, reason, wait = warmup.admit(st, MODERATE, now=T0 + 600, n=20)
    assert not ok
    assert wait == DAY - 600
    assert st.sent == 90
    assert reason == "warm-up day 1 of 14: cap 100 reached (90 sent); next day in 23h 50m"
    st, ok, _, _ = warmup.admit(st, MODERATE, now=T0 + 600, n=10)
    assert ok
    st, ok, _, wait = warmup.admit(st, MODERATE, now=T0 + DAY - 1, n=1)
    assert (ok, wait) == (False, 1.0)
    st, ok, _, _ = warmup.admit(st, MODERATE, now=T0 + DAY, n=1)  # rolled: day 2
    assert ok
    assert (st.day, st.sent) == (1, 1)


def test_a_message_larger_than_the_cap_goes_on_an_empty_day() -> None:
    st, ok, _, _ = warmup.admit(WarmupState(), MODERATE, now=T0, n=150)
    assert ok
    assert warmup.admit(st, MODERATE, now=T0 + 1, n=1)[1] is False


def test_idle_days_neither_advance_nor_hold() -> None:
    st, _, _, _ = warmup.admit(WarmupState(), MODERATE, now=T0, n=100)
    st, act = warmup.roll(st, MODERATE, now=T0 + DAY)
    assert st.day == 1
    assert act is not None
    for d in range(2, 6):  # four idle days
        st, act = warmup.roll(st, MODERATE, now=T0 + d * DAY)
        assert act is None
        assert st.day == 1
    st, act = warmup.roll(st, MODERATE, now=T0 + 30 * DAY)  # a long silence at once
    assert (st.day, act) == (1, None)


def test_a_barely_used_day_does_not_advance() -> None:
    st, _, _, _ = warmup.admit(WarmupState(day=3), MODERATE, now=T0, n=100)  # 100 of 1000
    st, act = warmup.roll(st, MODERATE, now=T0 + DAY)
    assert (st.day, act) == (3, None)


def test_record_counts_health() -> None:
    st = WarmupState()
    st = warmup.record(st, "delivered", "delivered")
    st = warmup.record(st, "mailbox_unknown", "bounced")
    st = warmup.record(st, "mailbox_unknown", "deferred")
    st = warmup.record(st, "domain_unknown", "async_bounce")
    st = warmup.record(st, "", "complaint")
    assert (st.attempts, st.bounced, st.complaints) == (3, 2, 1)


def test_set_day() -> None:
    st = warmup.set_day(WarmupState(), 6, now=T0)
    assert (st.day, st.day_start) == (6, T0)
    assert warmup.cap(st, MODERATE) == 10000
    with pytest.raises(ValueError):
        warmup.set_day(st, -1, now=T0)


def test_custom_schedules_and_validation(tmp_path: Path) -> None:
    got = warmup.load_schedules(custom={"tiny": [10, 20], "moderate": [5]})
    assert got["tiny"].caps == (10, 20)
    assert got["moderate"].caps == (5,)
    assert "conservative" in got
    with pytest.raises(ValueError, match=r"'bad': caps must not decrease \(day 3: 5 after 20\)"):
        warmup.load_schedules(custom={"bad": [10, 20, 5]})
    with pytest.raises(ValueError, match="day 1 cap must be a positive"):
        warmup.load_schedules(custom={"zero": [0, 10]})
    with pytest.raises(ValueError, match="non-empty list"):
        warmup.load_schedules(custom={"empty": []})
    f = tmp_path / "w.yaml"
    f.write_text("only: [1, 2, 3]\n")
    assert list(warmup.load_schedules(f)) == ["only"]
    f.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        warmup.load_schedules(f)
