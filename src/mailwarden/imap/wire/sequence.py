"""Sequence sets (RFC 3501 §9 ``sequence-set``, RFC 5182 ``$``) and compact formatting.

:class:`SequenceSet` is what the client wrote (``*`` still unresolved); resolving it
against the mailbox gives a :class:`NumberSet`: sorted, merged, inclusive ranges that
iterate lazily, so ``1:4294967295`` costs one tuple, not four billion ints.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from mailwarden.imap.wire.tokens import MAX_NUMBER, ImapSyntaxError

# §9: seq-number = nz-number / "*"; seq-range = seq-number ":" seq-number;
# sequence-set = (seq-number / seq-range) ["," sequence-set]. nz-number has no
# leading zero; ten digits are checked against 2^32-1 after the match.
_NUM = rb"(?:[1-9][0-9]{0,9}|\*)"
_SET = re.compile(rb"" + _NUM + rb"(?::" + _NUM + rb")?(?:," + _NUM + rb"(?::" + _NUM + rb")?)*")
_STAR = 0  # internal marker for "*" while parsing (0 is never a valid seq-number)


@dataclass(frozen=True, slots=True)
class NumberSet:
    """Concrete numbers as sorted, disjoint, non-adjacent inclusive ``(lo, hi)`` ranges."""

    ranges: tuple[tuple[int, int], ...] = ()

    @classmethod
    def from_ranges(cls, ranges: Iterable[tuple[int, int]]) -> NumberSet:
        """Normalise ranges given in any order and orientation (§9: ``4:2`` is ``2:4``)."""
        merged: list[tuple[int, int]] = []
        for lo, hi in sorted((a, b) if a <= b else (b, a) for a, b in ranges):
            if merged and lo <= merged[-1][1] + 1:
                if hi > merged[-1][1]:
                    merged[-1] = (merged[-1][0], hi)
            else:
                merged.append((lo, hi))
        return cls(tuple(merged))

    @classmethod
    def from_numbers(cls, numbers: Iterable[int]) -> NumberSet:
        return cls(tuple(_runs(sorted(set(numbers)))))

    def __iter__(self) -> Iterator[int]:
        for lo, hi in self.ranges:
            yield from range(lo, hi + 1)

    def __len__(self) -> int:
        return sum(hi - lo + 1 for lo, hi in self.ranges)

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def __contains__(self, n: object) -> bool:
        if not isinstance(n, int):
            return False
        i = bisect_right(self.ranges, n, key=_lo) - 1
        return i >= 0 and n <= self.ranges[i][1]

    @property
    def min(self) -> int | None:
        return self.ranges[0][0] if self.ranges else None

    @property
    def max(self) -> int | None:
        return self.ranges[-1][1] if self.ranges else None

    def indexes(self, values: Sequence[int]) -> Iterator[int]:
        """Positions in the ascending ``values`` (e.g. UIDs) whose value is in the set."""
        start = 0
        for lo, hi in self.ranges:
            i = bisect_left(values, lo, start)
            j = bisect_right(values, hi, i)
            yield from range(i, j)
            start = j

    def select(self, values: Sequence[int]) -> Iterator[int]:
        """The members of the ascending ``values`` that are in the set."""
        for i in self.indexes(values):
            yield values[i]

    def __str__(self) -> str:
        return _format_runs(self.ranges)


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """A parsed ``sequence-set``: fixed ranges plus the ``*``-anchored part, or ``$``."""

    fixed: NumberSet = NumberSet()
    star: bool = False  # "*" occurs somewhere
    star_span: tuple[int, int] | None = None  # min and max n over the "n:*" ranges
    saved: bool = False  # RFC 5182 "$": the session substitutes its saved result

    @classmethod
    def parse(cls, text: str) -> SequenceSet:
        """Parse and normalise; raises :class:`ImapSyntaxError` (the BAD text)."""
        if text == "$":
            return cls(saved=True)
        raw = text.encode("ascii", "replace")
        if _SET.fullmatch(raw) is None:
            raise ImapSyntaxError(f"invalid sequence set: {text[:40]!r}")
        fixed: list[tuple[int, int]] = []
        anchors: list[int] = []
        star = False
        for item in text.split(","):
            a, _, b = item.partition(":")
            lo = _seq_number(a)
            hi = _seq_number(b) if b else lo
            if _STAR in (lo, hi):
                star = True
                if lo != hi:  # "n:*" or "*:n": both mean n..largest, either orientation
                    anchors.append(lo or hi)
            else:
                fixed.append((lo, hi))
        span = (min(anchors), max(anchors)) if anchors else None
        return cls(NumberSet.from_ranges(fixed), star, span)

    def resolve(self, largest: int) -> NumberSet:
        """Substitute ``*`` = ``largest`` (message count, or highest UID; §6.4.8, §9).

        With ``largest == 0`` (empty mailbox) the ``*`` parts select nothing. Numbers
        beyond ``largest`` are kept: for sequence numbers the caller answers BAD when
        ``result.max > count``; for UIDs :meth:`NumberSet.select` ignores them.
        """
        if self.saved:
            raise ValueError("'$' must be replaced by the saved search result")
        if not self.star or largest == 0:
            return self.fixed
        lo = hi = largest
        if self.star_span is not None:
            # §6.4.8: "559:*" includes the last UID even if 559 is above it.
            lo, hi = min(self.star_span[0], largest), max(self.star_span[1], largest)
        return NumberSet.from_ranges((*self.fixed.ranges, (lo, hi)))

    def select_uids(self, uids: Sequence[int]) -> Iterator[int]:
        """Ascending ``uids`` in the set (``*`` = the highest UID)."""
        return self.resolve(uids[-1] if uids else 0).select(uids)

    def __str__(self) -> str:
        if self.saved:
            return "$"
        parts = [str(self.fixed)] if self.fixed else []
        if self.star_span is not None:
            lo, hi = self.star_span
            parts.append(f"{lo}:*" if lo == hi else f"{lo}:*,{hi}:*")
        elif self.star:
            parts.append("*")
        return ",".join(parts)


def format_numbers(numbers: Iterable[int], *, sort: bool = True) -> str:
    """Compact ``sequence-set`` text (``1:3,7``) for COPYUID/APPENDUID, ESEARCH, VANISHED.

    ``sort=False`` keeps the given order and only merges ascending runs, as RFC 4315
    §3 COPYUID needs source and destination sets in corresponding order.
    Empty input gives ``""`` (the grammar has no empty set: omit the item).
    """
    values = sorted(set(numbers)) if sort else list(numbers)
    return _format_runs(_runs(values))


def _runs(values: Iterable[int]) -> Iterator[tuple[int, int]]:
    """Consecutive ascending runs as (lo, hi)."""
    lo = hi = -1
    for n in values:
        if n == hi + 1 and hi >= 0:
            hi = n
            continue
        if hi >= 0:
            yield lo, hi
        lo = hi = n
    if hi >= 0:
        yield lo, hi


def _format_runs(ranges: Iterable[tuple[int, int]]) -> str:
    return ",".join(str(lo) if lo == hi else f"{lo}:{hi}" for lo, hi in ranges)


def _seq_number(text: str) -> int:
    if text == "*":
        return _STAR
    n = int(text)
    if n > MAX_NUMBER:  # §9 nz-number: (0 < n < 4,294,967,296)
        raise ImapSyntaxError(f"number out of range: {text}")
    return n


def _lo(r: tuple[int, int]) -> int:
    return r[0]
