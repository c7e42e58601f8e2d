"""Rolling counters per key (tenant, sending domain, IP, provider, ...) over 1 h, 24 h, 7 d, 30 d.

In-memory and pure: time comes in as ``at`` / ``now`` (epoch seconds); nothing here reads
a clock or a database. The engine rebuilds a :class:`Windows` from stored events at start.

Resolution. Counts are kept in buckets: **one-minute buckets** for spans up to one hour
(the 1 h span) and **one-hour buckets** for longer spans (24 h, 7 d, 30 d). A total for a
span adds every bucket that overlaps ``(now - span, now]``, so it never misses an event in
the span but may include events up to one bucket older than the span: the 1 h figure is
accurate to a minute, the 24 h / 7 d / 30 d figures to an hour. For safety signals
(bounces, blocks, complaints) erring towards "still counted" is the cautious side.

``since``. :meth:`Windows.totals` can also be limited to buckets that start at or after a
moment (for a breaker that just closed: count only what happened afterwards). That limit
errs the other way: it drops the partial bucket that contains ``since``, so no event from
before ``since`` is ever counted.

Memory: a key costs one small dict per active minute of the last hour and per active hour
of the last 30 days (at most 60 + 720 buckets); call :meth:`Windows.prune` from time to
time (every few minutes) to drop buckets older than the longest span.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache

SPANS: dict[str, int] = {"1h": 3600, "24h": 86400, "7d": 604800, "30d": 2592000}

MINUTE = 60
HOUR = 3600

OUTCOMES = frozenset({"delivered", "deferred", "bounced", "complaint", "async_bounce"})
#: Delivery outcomes: each is one attempt (one recipient of one transaction).
ATTEMPT_OUTCOMES = frozenset({"delivered", "deferred", "bounced"})
#: Reply classes that mean the address does not (or no longer) exist: a hard bounce when final.
HARD_CLASSES = frozenset({"mailbox_unknown", "domain_unknown", "mailbox_disabled"})


@lru_cache(maxsize=4096)
def event_counters(outcome: str, reply_class: str, permanent: bool) -> tuple[str, ...]:
    """The counter names one event increments.

    - delivery outcomes (``delivered``, ``deferred``, ``bounced``): ``attempts``, the outcome,
      the reply class (once: ``delivered`` is not repeated), and ``hard_bounce`` when the
      failure is permanent and the class says the address is gone;
    - ``async_bounce`` (a DSN after we handed the message over; its attempt was counted
      then): the outcome, the class, and ``hard_bounce`` for those classes (a bounce report
      is final by nature, so ``permanent`` is not needed);
    - ``complaint``: only ``complaint``.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}; expected one of {sorted(OUTCOMES)}")
    if outcome == "complaint":
        return ("complaint",)
    names: list[str] = ["attempts"] if outcome in ATTEMPT_OUTCOMES else []
    names.append(outcome)
    if reply_class and reply_class not in names:
        names.append(reply_class)
    hard = reply_class in HARD_CLASSES and (permanent or outcome == "async_bounce")
    if hard and outcome != "delivered":
        names.append("hard_bounce")
    return tuple(names)


def resolution(span: int) -> int:
    """Bucket width for a span: one minute up to an hour, one hour beyond."""
    return MINUTE if span <= HOUR else HOUR


_Buckets = dict[int, dict[str, int]]


class Windows:
    """Bucketed event counters per key; see the module docstring for the resolution."""

    __slots__ = ("_data", "_keep", "_res", "_spans")

    def __init__(self, spans: Mapping[str, int] = SPANS) -> None:
        if not spans:
            raise ValueError("Windows needs at least one span")
        for name, span in spans.items():
            if span <= 0 or span % resolution(span):
                raise ValueError(
                    f"span {name!r}={span}: must be a positive multiple of {resolution(span)} s"
                )
        self._spans = dict(spans)
        self._res: tuple[int, ...] = tuple(sorted({resolution(v) for v in spans.values()}))
        self._keep = {r: max(v for v in spans.values() if resolution(v) == r) for r in self._res}
        self._data: dict[str, tuple[_Buckets, ...]] = {}

    def add(self, key: str, at: float, counters: Iterable[str], n: int = 1) -> None:
        """Count ``n`` for each name in ``counters`` against ``key`` at time ``at``."""
        series = self._data.get(key)
        if series is None:
            series = self._data[key] = tuple({} for _ in self._res)
        names = counters if isinstance(counters, tuple | list) else tuple(counters)
        for res, buckets in zip(self._res, series, strict=True):
            b = int(at // res)
            bucket = buckets.get(b)
            if bucket is None:
                bucket = buckets[b] = {}
            for c in names:
                bucket[c] = bucket.get(c, 0) + n

    def totals(self, key: str, span: str, now: float, *, since: float = 0.0) -> dict[str, int]:
        """Counts for ``key`` in ``(now - span, now]`` (to a bucket), optionally from ``since``.

        Buckets overlapping the span are added; with ``since`` only buckets that start at or
        after it. Unknown keys give ``{}``; an unknown span name is a ``KeyError``.
        """
        width = self._spans[span]
        res = resolution(width)
        series = self._data.get(key)
        if series is None:
            return {}
        buckets = series[self._res.index(res)]
        cur = int(now // res)
        lo = cur - width // res  # the bucket that straddles now - span still overlaps it
        if since > 0.0:
            lo = max(lo, -int(-since // res))  # first bucket starting at or after since
        out: dict[str, int] = {}
        if cur - lo + 1 < len(buckets):
            picked = (buckets.get(b) for b in range(lo, cur + 1))
            chosen = [x for x in picked if x is not None]
        else:
            chosen = [v for b, v in buckets.items() if lo <= b <= cur]
        for bucket in chosen:
            for c, v in bucket.items():
                out[c] = out.get(c, 0) + v
        return out

    def keys(self) -> list[str]:
        return list(self._data)

    def prune(self, now: float) -> None:
        """Drop buckets that no span can reach any more, and keys left empty."""
        empty: list[str] = []
        for key, series in self._data.items():
            for res, buckets in zip(self._res, series, strict=True):
                lo = int(now // res) - self._keep[res] // res
                for b in [b for b in buckets if b < lo]:
                    del buckets[b]
            if not any(series):
                empty.append(key)
        for key in empty:
            del self._data[key]
