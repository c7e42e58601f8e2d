"""Circuit breaker per lane: stop sending when the receiver or the recipients say stop.

Phases: ``closed`` (sending) → ``open`` (paused for a backoff) → ``half_open`` (a few probe
messages) → ``closed`` when the probes are delivered, or ``open`` again with the next,
longer backoff when one fails. Pure; all numbers are in :class:`BreakerSettings`.

**Trips** (closed → open), by :func:`evaluate`, on the first threshold reached:

- complaints: ``complaint / delivered >= complaint_rate`` over 24 h, with at least
  ``complaint_min_sample`` deliveries (Gmail/Yahoo: stay below 0.1 %);
- hard bounces: ``hard_bounce / attempts >= bounce_rate`` over 1 h, with at least
  ``bounce_min_sample`` attempts (so 1 bounce in 3 sends trips nothing);
- blocks: at least ``block_count`` ``reputation_block`` replies in ``block_window``.

Backoff: the n-th trip in a row opens for ``backoffs[n-1]`` (the last value repeats). A
breaker that has stayed closed for ``forget_after`` since it last closed starts again at
the first backoff. An operator pause is :func:`trip` with its own reason.

**The counting contract (no re-trip on old events).** After a trip the bad events that
caused it stay in the rolling windows for up to 24 h. :func:`evaluate` therefore expects
``counts_1h`` / ``counts_24h`` to hold only events *after* :func:`counting_since`
(``closed_at``; 0 for a breaker that never tripped), e.g.::

    since = breaker.counting_since(st)
    st, act = breaker.evaluate(st, w.totals(k, "1h", now, since=since),
                               w.totals(k, "24h", now, since=since), now=now)

:meth:`Windows.totals` drops the partial bucket holding ``since``, so nothing from before
the close is counted (at the price of up to a minute / an hour of new events). Outside
``closed`` the counts are not looked at at all: while open or half-open only the probe
results (:func:`on_result`) decide.

**Probes.** In ``half_open`` :func:`admit` lets ``probes`` messages out one at a time
(``probes_out + probes_ok < probes``). :func:`on_result` must be given only the results of
those probes; a probe whose result never comes back is written off after
``probe_timeout`` by :func:`evaluate`, so the lane cannot hang half-open.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from mailwarden.reputation.policy.actions import Action, duration, iso, pct


class Phase(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


#: Probe results that re-open the breaker: the receiver still says no.
PROBE_FAILURES = frozenset(
    {
        "reputation_block",
        "throttled",
        "mailbox_unknown",
        "domain_unknown",
        "mailbox_disabled",
        "spam_content",
        "auth_failure",
    }
)


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    complaint_rate: float = 0.001
    complaint_min_sample: int = 1000  # delivered in 24h
    bounce_rate: float = 0.10
    bounce_min_sample: int = 50  # attempts in 1h (hard_bounce / attempts)
    block_count: int = 3
    block_window: str = "1h"  # reputation_block replies; "1h" or "24h"
    backoffs: tuple[float, ...] = (3600.0, 7200.0, 14400.0, 28800.0)  # the last repeats
    probes: int = 3  # successful probes needed in half-open to close
    forget_after: float = 86400.0  # closed this long → the next trip starts at backoffs[0]
    probe_timeout: float = 1800.0  # a probe unanswered this long is written off

    def __post_init__(self) -> None:
        if self.block_window not in ("1h", "24h"):
            raise ValueError(
                f"breaker.block_window must be '1h' or '24h', not {self.block_window!r}"
            )
        if not self.backoffs or min(self.backoffs) <= 0:
            raise ValueError("breaker.backoffs must be a non-empty list of positive seconds")
        if self.probes < 1 or self.block_count < 1:
            raise ValueError("breaker.probes and breaker.block_count must be at least 1")


@dataclass(frozen=True, slots=True)
class BreakerState:
    phase: Phase = Phase.CLOSED
    trips: int = 0  # trips in a row (reset after forget_after closed)
    opened_at: float = 0.0
    retry_at: float = 0.0  # when open → half-open
    probes_out: int = 0  # probes sent and not yet answered
    probes_ok: int = 0
    closed_at: float = 0.0  # 0 = never tripped
    probe_sent: float = 0.0  # when the last probe went out (for probe_timeout)


def counting_since(st: BreakerState) -> float:
    """The moment from which :func:`evaluate` wants its counts (see the module docstring)."""
    return st.closed_at


def trip(
    st: BreakerState,
    reason: str,
    inputs: Mapping[str, float | int | str],
    *,
    now: float,
    s: BreakerSettings = BreakerSettings(),
) -> tuple[BreakerState, Action]:
    """Open the breaker for the next backoff (from any phase); ``reason`` says why."""
    fresh = st.phase is Phase.CLOSED and st.closed_at > 0 and now - st.closed_at >= s.forget_after
    trips = 1 if fresh else st.trips + 1
    backoff = s.backoffs[min(trips, len(s.backoffs)) - 1]
    until = now + backoff
    new = BreakerState(Phase.OPEN, trips, now, until, 0, 0, st.closed_at, 0.0)
    return new, Action(
        "breaker_open",
        f"{reason}: paused for {duration(backoff)} until {iso(until)} (trip {trips})",
        {**inputs, "trips": trips, "backoff": backoff, "retry_at": until},
    )


def _rate_trip(
    name: str, bad: int, n: int, limit: float, min_sample: int, span: str
) -> tuple[str, dict[str, float | int | str]] | None:
    if n < min_sample or n <= 0 or bad / n < limit:
        return None
    of = "deliveries" if name == "complaint" else "attempts"
    reason = f"{name} rate {pct(bad / n)} ({bad}/{n} {of} in {span}) >= {pct(limit)}"
    return reason, {"trigger": name, name: bad, of: n, "rate": bad / n, "threshold": limit}


def check(
    counts_1h: Mapping[str, int], counts_24h: Mapping[str, int], s: BreakerSettings
) -> tuple[str, dict[str, float | int | str]] | None:
    """The first trip threshold these counts reach, as (reason, inputs), or None."""
    found = _rate_trip(
        "complaint",
        counts_24h.get("complaint", 0),
        counts_24h.get("delivered", 0),
        s.complaint_rate,
        s.complaint_min_sample,
        "24h",
    ) or _rate_trip(
        "hard-bounce",
        counts_1h.get("hard_bounce", 0),
        counts_1h.get("attempts", 0),
        s.bounce_rate,
        s.bounce_min_sample,
        "1h",
    )
    if found:
        return found
    blocks = (counts_1h if s.block_window == "1h" else counts_24h).get("reputation_block", 0)
    if blocks >= s.block_count:
        return (
            f"{blocks} reputation blocks in {s.block_window} (limit {s.block_count})",
            {"trigger": "reputation_block", "blocks": blocks, "threshold": s.block_count},
        )
    return None


def evaluate(
    st: BreakerState,
    counts_1h: Mapping[str, int],
    counts_24h: Mapping[str, int],
    *,
    now: float,
    s: BreakerSettings = BreakerSettings(),
) -> tuple[BreakerState, Action | None]:
    """Closed: trip on a threshold (counts since :func:`counting_since` only!). Open: move
    to half-open once ``retry_at`` has passed. Half-open: write off timed-out probes."""
    if st.phase is Phase.CLOSED:
        found = check(counts_1h, counts_24h, s)
        return trip(st, found[0], found[1], now=now, s=s) if found else (st, None)
    if st.phase is Phase.OPEN:
        if now < st.retry_at:
            return st, None
        new = replace(st, phase=Phase.HALF_OPEN, probes_out=0, probes_ok=0, probe_sent=0.0)
        return new, Action(
            "breaker_half_open",
            f"paused {duration(now - st.opened_at)}: sending {s.probes} probe messages",
            {"trips": st.trips, "opened_at": st.opened_at, "probes": s.probes},
        )
    if st.probes_out and now - st.probe_sent >= s.probe_timeout:
        return replace(st, probes_out=0), None
    return st, None


def admit(
    st: BreakerState, *, now: float, s: BreakerSettings = BreakerSettings()
) -> tuple[BreakerState, bool, str]:
    """May one message go out now? Half-open counts it as a probe. Never changes phase:
    run :func:`evaluate` first to move an expired ``open`` to ``half_open``."""
    if st.phase is Phase.CLOSED:
        return st, True, "closed"
    if st.phase is Phase.OPEN:
        return st, False, f"paused until {iso(st.retry_at)}"
    if st.probes_out + st.probes_ok < s.probes:
        n = st.probes_out + st.probes_ok + 1
        new = replace(st, probes_out=st.probes_out + 1, probe_sent=now)
        return new, True, f"probe {n} of {s.probes}"
    return st, False, "waiting for probe results"


def on_result(
    st: BreakerState, reply_class: str, *, now: float, s: BreakerSettings = BreakerSettings()
) -> tuple[BreakerState, Action | None]:
    """A probe's result (half-open only; other phases ignore results: in closed they are
    counted by the caller's windows and judged by :func:`evaluate`)."""
    if st.phase is not Phase.HALF_OPEN:
        return st, None
    out = max(0, st.probes_out - 1)
    if reply_class in PROBE_FAILURES:
        return trip(
            st,
            f"probe failed ({reply_class})",
            {"trigger": "probe", "reply_class": reply_class, "probes_ok": st.probes_ok},
            now=now,
            s=s,
        )
    if reply_class != "delivered":
        return replace(st, probes_out=out), None
    ok = st.probes_ok + 1
    if ok < s.probes:
        return replace(st, probes_out=out, probes_ok=ok), None
    closed = BreakerState(Phase.CLOSED, st.trips, st.opened_at, st.retry_at, 0, 0, now, 0.0)
    return closed, Action(
        "breaker_close",
        f"{ok} probes delivered after a pause of {duration(now - st.opened_at)}: sending again",
        {"probes_ok": ok, "trips": st.trips, "opened_at": st.opened_at},
    )
