"""The reputation score: prior smoothing, contributions, monotonicity."""

from __future__ import annotations

import pytest

from mailwarden.reputation.score import INPUTS, Score, ScoreSettings, compute_score


def _check_sum(sc: Score) -> None:
    assert all(v >= 0 for v in sc.contributions.values())
    assert sc.value + sum(sc.contributions.values()) == pytest.approx(100.0)
    assert 0.0 <= sc.value <= 100.0
    assert set(sc.rates) == set(sc.contributions) == set(INPUTS)


def test_no_events_is_spotless() -> None:
    sc = compute_score({})
    _check_sum(sc)
    assert sc.value == 100.0
    assert sc.sample == 0


def test_three_sends_one_bounce_is_near_neutral() -> None:
    sc = compute_score({"attempts": 3, "delivered": 2, "bounced": 1, "hard_bounce": 1})
    _check_sum(sc)
    assert sc.value >= 95.0
    assert sc.rates["hard_bounce"] == pytest.approx((1 + 100 * 0.005) / 103)
    assert sc.sample == 3


def test_many_events_with_20_percent_bounces_scores_low() -> None:
    sc = compute_score(
        {"attempts": 10_000, "delivered": 8000, "bounced": 2000, "hard_bounce": 2000}
    )
    _check_sum(sc)
    assert sc.value <= 50.0
    assert sc.contributions["hard_bounce"] == max(sc.contributions.values())


def test_complaints_over_three_per_mille_are_severe() -> None:
    sc = compute_score({"attempts": 100_000, "delivered": 100_000, "complaint": 400})
    _check_sum(sc)
    assert sc.value <= 30.0
    one_complaint = compute_score({"attempts": 10, "delivered": 10, "complaint": 1})
    assert one_complaint.value >= 90.0  # one complaint in ten is noise, not a verdict


def test_everything_bad_saturates_at_zero_and_still_sums() -> None:
    sc = compute_score(
        {
            "attempts": 10_000,
            "delivered": 5000,
            "hard_bounce": 3000,
            "complaint": 500,
            "throttled": 3000,
            "deferred": 4000,
            "auth_failure": 1000,
        }
    )
    _check_sum(sc)
    assert sc.value == pytest.approx(0.0)


@pytest.mark.parametrize(
    "counter", ["hard_bounce", "complaint", "throttled", "deferred", "auth_failure"]
)
def test_monotone_in_every_bad_count(counter: str) -> None:
    base = {"attempts": 5000, "delivered": 4500}
    last = 101.0
    for bad in (0, 10, 50, 100, 200, 500, 1000, 2000, 4000):
        sc = compute_score({**base, counter: bad})
        _check_sum(sc)
        assert sc.value <= last
        last = sc.value
    assert last < 100.0


def test_more_good_evidence_never_lowers_the_score() -> None:
    last = -1.0
    for delivered in (0, 10, 100, 1000, 10_000):
        sc = compute_score({"attempts": 20 + delivered, "delivered": delivered, "hard_bounce": 20})
        assert sc.value >= last
        last = sc.value


def test_settings_are_overridable_and_validated() -> None:
    strict = ScoreSettings(hard_bounce_start=0.001, hard_bounce_full=0.01, prior_events=0.0)
    sc = compute_score({"attempts": 100, "hard_bounce": 1}, strict)
    assert sc.contributions["hard_bounce"] > 0
    with pytest.raises(ValueError, match="start"):
        ScoreSettings(complaint_start=0.01, complaint_full=0.001)
    with pytest.raises(ValueError, match="negative"):
        ScoreSettings(prior_events=-1)
    with pytest.raises(ValueError, match="at most 100"):
        ScoreSettings(deferral_weight=150)
