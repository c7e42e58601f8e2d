"""Circuit breaker: trips, escalating backoff, probes, the no-re-trip contract; simulated time."""

from __future__ import annotations

import pytest

from mailwarden.reputation.policy import breaker
from mailwarden.reputation.policy.actions import Action
from mailwarden.reputation.policy.breaker import BreakerSettings, BreakerState, Phase
from mailwarden.reputation.windows import Windows, event_counters

T0 = 1_700_000_000.0
KEY = "lane:203.0.113.7:gmail"


def _send(w: Windows, at: float, outcome: str, cls: str, n: int = 1) -> None:
    perm = outcome in ("bounced", "async_bounce")
    for _ in range(n):
        w.add(KEY, at, event_counters(outcome, cls, perm))


def _evaluate(st: BreakerState, w: Windows, now: float) -> tuple[BreakerState, Action | None]:
    since = breaker.counting_since(st)
    return breaker.evaluate(
        st, w.totals(KEY, "1h", now, since=since), w.totals(KEY, "24h", now, since=since), now=now
    )


def test_a_week_of_escalating_backoff_then_recovery() -> None:
    w = Windows()
    st = BreakerState()
    _send(w, T0, "delivered", "delivered", 50)
    _send(w, T0 + 30, "bounced", "mailbox_unknown", 10)  # 10 / 60 attempts = 16.7 %
    log: list[tuple[float, Action]] = []
    failures_left = 4  # the first four half-open periods see their first probe blocked
    now = T0 + 60
    end = T0 + 7 * 86400
    while now < end:
        st, act = _evaluate(st, w, now)
        if act:
            log.append((now, act))
        st, ok, reason = breaker.admit(st, now=now)
        if ok and st.phase is Phase.HALF_OPEN:
            cls = "reputation_block" if failures_left else "delivered"
            _send(w, now, "bounced" if failures_left else "delivered", cls)
            st, act = breaker.on_result(st, cls, now=now + 1)
            if act:
                failures_left -= act.kind == "breaker_open"
                log.append((now + 1, act))
        elif ok:
            _send(w, now, "delivered", "delivered", 5)  # healthy traffic while closed
        else:
            assert reason.startswith(("paused until", "waiting for probe"))
        now += 60
    kinds = [a.kind for _, a in log]
    opens = [a.inputs["backoff"] for _, a in log if a.kind == "breaker_open"]
    assert opens == [3600, 7200, 14400, 28800, 28800]
    assert kinds == ["breaker_open", "breaker_half_open"] * 5 + ["breaker_close"]
    assert "hard-bounce rate 16.7% (10/60 attempts in 1h)" in log[0][1].reason
    assert st.phase is Phase.CLOSED
    assert st.trips == 5
    # each half-open came when its backoff ran out (to the tick)
    for (t_open, a), (t_half, b) in zip(log[0:10:2], log[1:10:2], strict=True):
        assert b.kind == "breaker_half_open"
        assert 0 <= t_half - (t_open + float(a.inputs["backoff"])) < 60 + 1


def test_no_re_trip_on_events_from_before_the_close() -> None:
    w = Windows()
    st = BreakerState()
    _send(w, T0, "delivered", "delivered", 2000)
    _send(w, T0 + 1, "complaint", "", 5)  # 0.25 % of 2000 deliveries
    st, act = _evaluate(st, w, T0 + 2)
    assert act is not None
    assert act.inputs["trigger"] == "complaint"
    assert "complaint rate 0.25% (5/2000 deliveries in 24h)" in act.reason
    st, act = _evaluate(st, w, T0 + 3602)
    assert st.phase is Phase.HALF_OPEN
    for i in range(3):
        st, ok, _ = breaker.admit(st, now=T0 + 3603 + i)
        assert ok
        st, act = breaker.on_result(st, "delivered", now=T0 + 3610 + i)
    assert st.phase is Phase.CLOSED
    assert act is not None
    assert act.kind == "breaker_close"
    # the five complaints are still in the 24 h window ...
    assert w.totals(KEY, "24h", T0 + 4000)["complaint"] == 5
    # ... and would re-trip if the caller ignored the contract
    raw = breaker.evaluate(
        st, w.totals(KEY, "1h", T0 + 4000), w.totals(KEY, "24h", T0 + 4000), now=T0 + 4000
    )
    assert raw[0].phase is Phase.OPEN
    # counted since the close, they do not
    st2, act = _evaluate(st, w, T0 + 4000)
    assert (st2, act) == (st, None)


def test_minimum_samples_are_respected() -> None:
    s = BreakerSettings()
    assert breaker.check({"attempts": 3, "hard_bounce": 1}, {}, s) is None
    assert breaker.check({"attempts": 49, "hard_bounce": 40}, {}, s) is None
    assert breaker.check({"attempts": 50, "hard_bounce": 4}, {}, s) is None
    found = breaker.check({"attempts": 50, "hard_bounce": 5}, {}, s)
    assert found is not None
    assert found[1]["trigger"] == "hard-bounce"
    assert breaker.check({}, {"delivered": 999, "complaint": 50}, s) is None
    assert breaker.check({}, {"delivered": 1000, "complaint": 1}, s) is not None


def test_three_blocks_in_an_hour_trip() -> None:
    w = Windows()
    st = BreakerState()
    for i in range(2):
        _send(w, T0 + 600 * i, "bounced", "reputation_block")
    st, act = _evaluate(st, w, T0 + 1300)
    assert act is None
    _send(w, T0 + 1300, "bounced", "reputation_block")
    st, act = _evaluate(st, w, T0 + 1301)
    assert act is not None
    assert act.inputs["trigger"] == "reputation_block"
    assert act.reason.startswith("3 reputation blocks in 1h")
    assert st.phase is Phase.OPEN
    assert st.retry_at == T0 + 1301 + 3600


def test_blocks_spread_over_more_than_an_hour_do_not_trip() -> None:
    w = Windows()
    for i in range(3):
        _send(w, T0 + 1900 * i, "bounced", "reputation_block")
    _, act = _evaluate(BreakerState(), w, T0 + 3800)
    assert act is None
    day = BreakerSettings(block_window="24h")
    _, act = breaker.evaluate(
        BreakerState(), {}, w.totals(KEY, "24h", T0 + 3800), now=T0 + 3800, s=day
    )
    assert act is not None


def test_admit_per_phase() -> None:
    st, act = breaker.trip(BreakerState(), "operator pause", {"by": "admin"}, now=T0)
    assert act.inputs["by"] == "admin"
    assert act.reason.startswith("operator pause: paused for 1h until 2023-11-14T23:13:20Z")
    st, ok, reason = breaker.admit(st, now=T0 + 10)
    assert not ok
    assert reason == "paused until 2023-11-14T23:13:20Z"
    st, ok, _ = breaker.admit(st, now=T0 + 4000)  # admit never moves the phase
    assert not ok
    st, act = breaker.evaluate(st, {}, {}, now=T0 + 4000)
    assert st.phase is Phase.HALF_OPEN
    oks = []
    for i in range(5):
        st, ok, reason = breaker.admit(st, now=T0 + 4001 + i)
        oks.append(ok)
    assert oks == [True, True, True, False, False]
    assert reason == "waiting for probe results"
    st, act = breaker.on_result(st, "greylisted", now=T0 + 4010)  # the probe comes back
    assert (st.probes_out, st.probes_ok, act) == (2, 0, None)
    st, ok, reason = breaker.admit(st, now=T0 + 4011)
    assert ok
    assert reason == "probe 3 of 3"


def test_lost_probes_are_written_off() -> None:
    st, _ = breaker.trip(BreakerState(), "x", {}, now=T0)
    st, _ = breaker.evaluate(st, {}, {}, now=T0 + 3600)
    for _ in range(3):
        st, _, _ = breaker.admit(st, now=T0 + 3600)
    assert breaker.admit(st, now=T0 + 3700)[1] is False
    st, _ = breaker.evaluate(st, {}, {}, now=T0 + 3600 + 1800)
    assert st.probes_out == 0
    assert breaker.admit(st, now=T0 + 5401)[1] is True


@pytest.mark.parametrize(
    "cls", ["throttled", "mailbox_unknown", "domain_unknown", "spam_content", "auth_failure"]
)
def test_failed_probe_reopens_with_the_next_backoff(cls: str) -> None:
    st, _ = breaker.trip(BreakerState(), "x", {}, now=T0)
    st, _ = breaker.evaluate(st, {}, {}, now=T0 + 3600)
    st, _, _ = breaker.admit(st, now=T0 + 3600)
    st, act = breaker.on_result(st, cls, now=T0 + 3601)
    assert st.phase is Phase.OPEN
    assert act is not None
    assert act.inputs["backoff"] == 7200
    assert cls in act.reason


def test_results_outside_half_open_are_ignored() -> None:
    st = BreakerState()
    assert breaker.on_result(st, "reputation_block", now=T0) == (st, None)
    opened, _ = breaker.trip(st, "x", {}, now=T0)
    assert breaker.on_result(opened, "delivered", now=T0 + 1) == (opened, None)


def test_escalation_is_forgotten_after_a_quiet_day() -> None:
    s = BreakerSettings(probes=1)
    st, _ = breaker.trip(BreakerState(), "x", {}, now=T0, s=s)
    st, _ = breaker.evaluate(st, {}, {}, now=T0 + 3600, s=s)
    st, _, _ = breaker.admit(st, now=T0 + 3600, s=s)
    st, _ = breaker.on_result(st, "delivered", now=T0 + 3601, s=s)
    assert st.phase is Phase.CLOSED
    _, act = breaker.trip(st, "again", {}, now=T0 + 7200, s=s)
    assert act.inputs["backoff"] == 7200  # closed only an hour: escalate
    later, act = breaker.trip(st, "again", {}, now=T0 + 3601 + 86400, s=s)
    assert act.inputs["backoff"] == 3600  # closed a day: start over
    assert later.trips == 1


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="block_window"):
        BreakerSettings(block_window="2h")
    with pytest.raises(ValueError, match="backoffs"):
        BreakerSettings(backoffs=())
