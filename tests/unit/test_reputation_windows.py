"""Rolling window counters: counter names per event, bucket resolution, since, prune."""

from __future__ import annotations

import random

import pytest

from mailwarden.reputation.windows import SPANS, Windows, event_counters

HB = "hard_bounce"
T0 = 1_700_000_000.0  # a Tuesday in November 2023; any epoch works


@pytest.mark.parametrize(
    ("outcome", "cls", "permanent", "expected"),
    [
        ("delivered", "delivered", False, ("attempts", "delivered")),
        ("deferred", "throttled", False, ("attempts", "deferred", "throttled")),
        ("deferred", "mailbox_unknown", False, ("attempts", "deferred", "mailbox_unknown")),
        (
            "bounced",
            "mailbox_unknown",
            True,
            ("attempts", "bounced", "mailbox_unknown", "hard_bounce"),
        ),
        (
            "bounced",
            "domain_unknown",
            True,
            ("attempts", "bounced", "domain_unknown", "hard_bounce"),
        ),
        ("bounced", "spam_content", True, ("attempts", "bounced", "spam_content")),
        (
            "async_bounce",
            "mailbox_disabled",
            True,
            ("async_bounce", "mailbox_disabled", "hard_bounce"),
        ),
        (
            "async_bounce",
            "mailbox_unknown",
            False,
            ("async_bounce", "mailbox_unknown", "hard_bounce"),
        ),
        ("async_bounce", "mailbox_full", True, ("async_bounce", "mailbox_full")),
        ("complaint", "", False, ("complaint",)),
        ("complaint", "unknown", True, ("complaint",)),
    ],
)
def test_event_counters(outcome: str, cls: str, permanent: bool, expected: tuple[str, ...]) -> None:
    assert event_counters(outcome, cls, permanent) == expected


def test_event_counters_unknown_outcome() -> None:
    with pytest.raises(ValueError, match="unknown outcome"):
        event_counters("exploded", "unknown", False)


def test_totals_per_span_and_key() -> None:
    w = Windows()
    w.add("ip:1", T0, ("attempts", "delivered"))
    w.add("ip:1", T0 + 10, ["attempts", "bounced", "hard_bounce"])
    w.add("ip:2", T0, iter(("attempts",)), n=5)
    assert w.totals("ip:1", "1h", T0 + 20) == {
        "attempts": 2,
        "delivered": 1,
        "bounced": 1,
        "hard_bounce": 1,
    }
    assert w.totals("ip:2", "30d", T0 + 20) == {"attempts": 5}
    assert w.totals("nobody", "1h", T0) == {}
    assert sorted(w.keys()) == ["ip:1", "ip:2"]
    with pytest.raises(KeyError):
        w.totals("ip:1", "2h", T0)


def test_hour_span_accurate_to_a_minute() -> None:
    w = Windows()
    at = 60 * 28_333_333 + 40.0  # 40 s into a minute
    w.add("k", at, ("x",))
    minute_end = at - 40 + 60
    assert w.totals("k", "1h", at + 3599) == {"x": 1}  # inside the span
    assert w.totals("k", "1h", minute_end + 3600 - 0.001) == {"x": 1}  # its minute still overlaps
    assert w.totals("k", "1h", minute_end + 3600) == {}  # minute fully out of the span
    assert w.totals("k", "24h", minute_end + 3600) == {"x": 1}


def test_long_spans_accurate_to_an_hour() -> None:
    w = Windows()
    at = 3600 * 472_222 + 1800.0  # half past an hour
    w.add("k", at, ("x",))
    hour_end = at + 1800
    assert w.totals("k", "24h", at + 86399) == {"x": 1}
    assert w.totals("k", "24h", hour_end + 86400 - 1) == {"x": 1}
    assert w.totals("k", "24h", hour_end + 86400) == {}
    assert w.totals("k", "7d", hour_end + 86400) == {"x": 1}
    assert w.totals("k", "30d", hour_end + 2_592_000) == {}


def test_never_misses_and_overcounts_at_most_one_bucket() -> None:
    rng = random.Random(7)
    times = sorted(T0 + rng.uniform(0, 3 * 86400) for _ in range(3000))
    for now in (T0 + 5000.5, T0 + 90_000.25, T0 + 200_000.0, T0 + 260_000.0):
        w = Windows()
        for t in times:
            if t <= now:  # windows are read at the present: no events from the future
                w.add("k", t, ("e",))
        for span, res in (("1h", 60), ("24h", 3600)):
            width = SPANS[span]
            exact = sum(1 for t in times if now - width < t <= now)
            wide = sum(1 for t in times if now - width - res < t <= now)
            got = w.totals("k", span, now).get("e", 0)
            assert exact <= got <= wide


def test_since_drops_the_partial_bucket() -> None:
    w = Windows()
    base = 60 * 28_333_333.0
    w.add("k", base + 10, ("hard_bounce",))  # before the close, same minute
    w.add("k", base + 50, ("hard_bounce",))  # after the close, same minute: dropped too
    w.add("k", base + 70, ("hard_bounce",))  # next minute
    assert w.totals("k", "1h", base + 100) == {"hard_bounce": 3}
    assert w.totals("k", "1h", base + 100, since=base + 30) == {"hard_bounce": 1}
    assert w.totals("k", "1h", base + 100, since=base) == {"hard_bounce": 3}  # exact boundary
    assert w.totals("k", "24h", base + 100, since=base + 30) == {}  # hour bucket straddles


def test_prune_drops_old_buckets_and_empty_keys() -> None:
    w = Windows()
    w.add("old", T0, ("x",))
    w.add("new", T0 + 40 * 86400, ("x",))
    w.prune(T0 + 40 * 86400)
    assert w.keys() == ["new"]
    assert w.totals("new", "1h", T0 + 40 * 86400) == {"x": 1}
    w.prune(T0 + 40 * 86400 + 7200)  # minute buckets gone, hour buckets stay
    assert w.totals("new", "1h", T0 + 40 * 86400 + 7200) == {}
    assert w.totals("new", "24h", T0 + 40 * 86400 + 7200) == {"x": 1}


def test_custom_spans_validated() -> None:
    w = Windows({"5m": 300, "2d": 172_800})
    w.add("k", T0, ("x",))
    assert w.totals("k", "5m", T0 + 1) == {"x": 1}
    with pytest.raises(ValueError, match="multiple of 3600"):
        Windows({"90m": 5400 + 1})
    with pytest.raises(ValueError):
        Windows({})
