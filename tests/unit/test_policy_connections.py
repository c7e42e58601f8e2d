"""Adaptive connection limit: "too many connections" halves it, deliveries grow it back."""

from __future__ import annotations

from mailwarden.reputation.policy.aimd import AimdSettings
from mailwarden.reputation.policy.connections import ConnState, on_result

S = AimdSettings(cut_cooldown=30, increase_after=5)
TOO_MANY = "421 4.7.0 Too many concurrent SMTP connections from this IP"


def test_too_many_connections_cuts_once_per_cooldown_never_below_one() -> None:
    st, act = on_result(ConnState(8), "throttled", TOO_MANY, now=100, maximum=8, s=S)
    assert st.limit == 4 and act is not None and act.kind == "throttle"
    assert "8 -> 4" in act.reason
    st, act = on_result(st, "throttled", TOO_MANY, now=110, maximum=8, s=S)
    assert st.limit == 4 and act is None  # the same burst of refusals: one signal
    for t in (140, 180, 220, 260):
        st, _ = on_result(st, "throttled", TOO_MANY, now=t, maximum=8, s=S)
    assert st.limit == 1


def test_rate_throttles_do_not_touch_the_connection_limit() -> None:
    rate = "421 4.7.28 unusual rate of unsolicited mail"
    st, act = on_result(ConnState(5), "throttled", rate, now=1, maximum=5, s=S)
    assert st == ConnState(5) and act is None


def test_deliveries_grow_it_back_one_at_a_time_up_to_the_maximum() -> None:
    st = ConnState(2, 0, last_cut=0.0)
    steps = []
    for i in range(40):
        st, act = on_result(st, "delivered", "250 ok", now=1000 + i, maximum=4, s=S)
        if act is not None:
            steps.append(st.limit)
    assert steps == [3, 4] and st.limit == 4
