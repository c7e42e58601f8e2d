"""AIMD lane rate with an injected clock: cuts, cooldown, floor, climb, cap, Retry-After, score."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mailwarden.reputation.policy import aimd, tokens
from mailwarden.reputation.policy.actions import Action
from mailwarden.reputation.policy.aimd import AimdSettings, RateState, score_factor
from mailwarden.reputation.policy.limits import LimitsTable, ProviderLimits

LIM = ProviderLimits(
    messages_per_hour=3600,
    connections=3,
    messages_per_connection=50,
    floor_per_hour=225,
    cap_per_hour=7200,
)
T0 = 1_700_000_000.0


def _feed(
    st: RateState, cls: str, times: list[float], **kw: object
) -> tuple[RateState, list[Action]]:
    actions: list[Action] = []
    for t in times:
        st, act = aimd.on_result(st, cls, now=t, limits=LIM, **kw)  # type: ignore[arg-type]
        if act:
            actions.append(act)
    return st, actions


def test_initial_rate_is_the_base() -> None:
    st = aimd.initial(LIM)
    assert st == RateState(3600.0, 0, 0.0, 0.0)


def test_a_burst_of_throttles_in_one_second_cuts_once() -> None:
    st, actions = _feed(
        aimd.initial(LIM), "throttled", [T0 + i / 20 for i in range(20)], reply="421 4.7.28"
    )
    assert st.rate == 1800.0
    assert st.last_cut == T0
    assert len(actions) == 1
    assert actions[0].kind == "throttle"
    assert actions[0].reason == "421 4.7.28 throttled: rate 3600 -> 1800 msg/h"
    assert actions[0].inputs["rate_before"] == 3600.0


def test_repeated_throttles_halve_down_to_the_floor_and_no_lower() -> None:
    st, actions = _feed(aimd.initial(LIM), "throttled", [T0 + 61.0 * i for i in range(10)])
    assert st.rate == 225.0
    assert [a.inputs["rate"] for a in actions] == [1800.0, 900.0, 450.0, 225.0]
    assert st.successes == 0


def test_reputation_block_also_cuts() -> None:
    st, act = aimd.on_result(aimd.initial(LIM), "reputation_block", now=T0, limits=LIM)
    assert st.rate == 1800.0
    assert act is not None


def test_successes_climb_back_to_base_and_never_exceed_the_cap() -> None:
    st, _ = _feed(aimd.initial(LIM), "throttled", [T0])
    t = T0 + 120.0
    rates = []
    for i in range(1000):
        st, _ = aimd.on_result(st, "delivered", now=t + i, limits=LIM)
        rates.append(st.rate)
    assert st.rate >= LIM.messages_per_hour  # 20 steps of 180 msg/h from 1800
    assert rates == sorted(rates)
    for i in range(20_000):
        st, _ = aimd.on_result(st, "delivered", now=t + 1000 + i, limits=LIM)
        assert st.rate <= LIM.cap_per_hour
    assert st.rate == LIM.cap_per_hour


def test_one_step_per_run_with_its_action() -> None:
    st = aimd.initial(LIM)
    st, _ = _feed(st, "throttled", [T0])
    st, actions = _feed(st, "delivered", [T0 + 100 + i for i in range(50)])
    assert st.rate == 1800.0 + 180.0
    assert st.successes == 0
    assert [a.kind for a in actions] == ["ramp"]
    assert "50 deliveries in a row" in actions[0].reason


def test_no_step_within_the_cooldown_after_a_cut() -> None:
    st, _ = _feed(aimd.initial(LIM), "throttled", [T0])
    st, actions = _feed(st, "delivered", [T0 + 0.01 * i for i in range(1, 200)])
    assert st.rate == 1800.0
    assert not actions
    st, actions = _feed(st, "delivered", [T0 + 61])
    assert st.rate == 1980.0  # the first delivery after the cooldown steps once
    assert len(actions) == 1


def test_neutral_replies_neither_cut_nor_count_nor_reset() -> None:
    st, _ = _feed(aimd.initial(LIM), "delivered", [T0 + i for i in range(10)])
    for cls in ("greylisted", "mailbox_unknown", "network", "spam_content", "temporary_server"):
        nst, act = aimd.on_result(st, cls, now=T0 + 20, limits=LIM)
        assert nst == st
        assert act is None


def test_a_throttle_within_cooldown_still_breaks_the_run() -> None:
    st, _ = _feed(aimd.initial(LIM), "throttled", [T0])
    st, _ = _feed(st, "delivered", [T0 + 1 + i for i in range(30)])
    assert st.successes == 30
    st, act = aimd.on_result(st, "throttled", now=T0 + 40, limits=LIM)
    assert (st.rate, st.successes, st.last_cut) == (1800.0, 0, T0)  # no second cut
    assert act is None


def test_retry_after_is_honoured_and_capped() -> None:
    st, act = aimd.on_result(aimd.initial(LIM), "throttled", now=T0, limits=LIM, retry_after=600.0)
    assert st.not_before == T0 + 600
    assert act is not None
    assert act.kind == "throttle"  # both happened; the cut is the headline
    assert act.inputs["not_before"] == T0 + 600
    assert "no sends before" in act.reason
    st, act = aimd.on_result(st, "greylisted", now=T0 + 1, limits=LIM, retry_after=99_999.0)
    assert st.not_before == T0 + 1 + 3600  # max_retry_after
    assert act is not None
    assert act.kind == "retry_after"
    st2, act = aimd.on_result(st, "greylisted", now=T0 + 2, limits=LIM, retry_after=10.0)
    assert st2.not_before == st.not_before  # never shortened
    assert act is None


def test_score_factor_curve() -> None:
    assert score_factor(None) == 1.0
    assert score_factor(100) == 1.0
    assert score_factor(80) == 1.0
    assert score_factor(50) == pytest.approx(0.55)
    assert score_factor(20) == pytest.approx(0.1)
    assert score_factor(0) == pytest.approx(0.1)
    values = [score_factor(float(x)) for x in range(0, 101)]
    assert values == sorted(values)


def test_low_score_scales_base_and_cap() -> None:
    st = aimd.initial(LIM, score=50)
    assert st.rate == pytest.approx(3600 * 0.55)
    for i in range(20_000):
        st, _ = aimd.on_result(st, "delivered", now=T0 + i, limits=LIM, score=50)
    assert st.rate == pytest.approx(7200 * 0.55)
    assert aimd.initial(LIM, score=0).rate == pytest.approx(360.0)  # 0.1 x base, above floor


def test_a_falling_score_clamps_the_rate_with_a_reason() -> None:
    st = aimd.initial(LIM)
    st, act = aimd.on_result(st, "greylisted", now=T0, limits=LIM, score=20)
    assert st.rate == pytest.approx(720.0)  # the scaled cap: 7200 x 0.1
    assert act is not None
    assert act.kind == "throttle"
    assert "score 20" in act.reason


def test_settings_override_and_validation() -> None:
    s = AimdSettings(decrease=0.8, cut_cooldown=0.0)
    st, _ = aimd.on_result(aimd.initial(LIM), "throttled", now=T0, limits=LIM, s=s)
    st, _ = aimd.on_result(st, "throttled", now=T0, limits=LIM, s=s)
    assert st.rate == pytest.approx(3600 * 0.8 * 0.8)
    with pytest.raises(ValueError):
        AimdSettings(decrease=1.5)
    with pytest.raises(ValueError):
        AimdSettings(increase_after=0)


# --- the inputs of the rate: provider limits (rules/limits.yaml) and the token bucket ---


def test_packaged_limits_table() -> None:
    table = LimitsTable.load()
    for p in ("gmail", "microsoft", "yahoo", "apple", "default"):
        lim = table.for_provider(p)
        assert lim.floor_per_hour <= lim.messages_per_hour <= lim.cap_per_hour
        assert 2 <= lim.connections <= 10
        assert 20 <= lim.messages_per_connection <= 100
    assert table.for_provider("example-isp") == table.for_provider("default")
    assert table.for_provider("microsoft").connections <= table.for_provider("gmail").connections


def test_limits_overrides_and_errors(tmp_path: Path) -> None:
    table = LimitsTable.load(
        overrides={"gmail": {"connections": 8}, "fastmail": {"messages_per_hour": 2000}}
    )
    assert table.for_provider("gmail").connections == 8
    assert table.for_provider("fastmail").messages_per_hour == 2000.0
    assert table.for_provider("fastmail").connections == table.for_provider("default").connections
    with pytest.raises(ValueError, match=r"limits\.gmail\.conections: unknown field"):
        LimitsTable.load(overrides={"gmail": {"conections": 8}})
    with pytest.raises(ValueError, match=r"limits\.yahoo\.connections: must be a whole number"):
        LimitsTable.load(overrides={"yahoo": {"connections": 2.5}})
    with pytest.raises(ValueError, match=r"limits\.apple\.floor_per_hour: must be a positive"):
        LimitsTable.load(overrides={"apple": {"floor_per_hour": -1}})
    with pytest.raises(ValueError, match=r"limits\.default: need floor_per_hour <="):
        LimitsTable.load(overrides={"default": {"cap_per_hour": 10}})
    f = tmp_path / "limits.yaml"
    f.write_text("gmail: {messages_per_hour: 10}\n")
    with pytest.raises(ValueError, match="'default' entry is required"):
        LimitsTable.load(f)
    f.write_text(
        "default: {messages_per_hour: 100, connections: 1, messages_per_connection: 5,"
        " floor_per_hour: 10, cap_per_hour: 200}\nx: {connections: true}\n"
    )
    with pytest.raises(ValueError, match=r"limits\.x\.connections: expected a number"):
        LimitsTable.load(f)


def test_token_bucket() -> None:
    b = tokens.full(2.0, T0)
    b, wait = tokens.take(b, 3600.0, 2.0, T0)
    assert wait == 0.0
    b, wait = tokens.take(b, 3600.0, 2.0, T0)
    assert wait == 0.0
    b, wait = tokens.take(b, 3600.0, 2.0, T0 + 0.25)  # 1 token per second
    assert wait == pytest.approx(0.75)
    assert b.tokens == pytest.approx(0.25)  # nothing taken, refill kept
    b, wait = tokens.take(b, 3600.0, 2.0, T0 + 1.0)
    assert wait == 0.0
    b, _ = tokens.take(b, 3600.0, 2.0, T0 + 100.0)
    assert b.tokens == pytest.approx(1.0)  # refill capped at burst, then one taken
    assert tokens.take(tokens.Bucket(0.0, T0), 0.0, 2.0, T0 + 5)[1] == math.inf


def test_token_bucket_request_larger_than_burst_goes_into_debt() -> None:
    b = tokens.full(2.0, T0)
    b, wait = tokens.take(b, 3600.0, 2.0, T0, n=5)
    assert wait == 0.0
    assert b.tokens == pytest.approx(-3.0)
    b, wait = tokens.take(b, 3600.0, 2.0, T0 + 1, n=1)
    assert wait == pytest.approx(3.0)  # from -2 to 1 token
