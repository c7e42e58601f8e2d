"""mailwarden.imap.search_eval: every search key over a fake mailbox, NOT/OR nesting,
sequence sets (``*``, ``$``, out of range), charsets, and the cost of the common paths.

Queries go through the real command reader and SEARCH parser; the fake source indexes its
messages with :func:`mailwarden.imap.searchtext.extract`, as the search index does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Literal, overload

import pytest

from mailwarden.imap.search_eval import (
    SUPPORTED_CHARSETS,
    BadCharset,
    MessageFields,
    SearchSource,
    evaluate,
    result_numbers,
    result_uids,
    search_codec,
)
from mailwarden.imap.searchtext import extract, header_values
from mailwarden.imap.wire.reader import CommandReader, RawCommand
from mailwarden.imap.wire.search import FlagKey, HeaderKey, Not, SearchKey, parse_search

EST = timezone(timedelta(hours=-5))


@dataclass
class Message:
    uid: int
    raw: bytes
    flags: tuple[str, ...] = ()
    modseq: int = 1
    internal: datetime = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
    sent: datetime | None = datetime(2024, 3, 9, 12, 0, tzinfo=UTC)


@dataclass
class FakeSource:
    """A mailbox in memory; text matching as the SQL index does it (case-insensitive
    substring of the headers / body text, field values through header_values)."""

    messages: list[Message]
    saved: list[int] | None = None
    calls: list[tuple[str | None, str, str]] = field(default_factory=list)
    field_calls: int = 0
    field_order: Literal["same", "reversed", "partial"] = "same"

    def __post_init__(self) -> None:
        self.uids = [m.uid for m in self.messages]
        self.flags = [m.flags for m in self.messages]
        self.modseqs = [m.modseq for m in self.messages]
        self.texts = {m.uid: extract(m.raw) for m in self.messages}

    async def text_uids(
        self, field: str | None, needle: str, where: Literal["headers", "body"]
    ) -> set[int]:
        self.calls.append((field, needle, where))
        low = needle.lower()
        found = set()
        for uid, (headers, body) in self.texts.items():
            if where == "body":
                hay = [body]
            else:
                hay = [headers] if field is None else header_values(headers, field)
            if any(low in h.lower() for h in hay):
                found.add(uid)
        return found

    async def fields(self) -> list[MessageFields]:
        self.field_calls += 1
        rows = [MessageFields(m.uid, len(m.raw), m.internal, m.sent) for m in self.messages]
        if self.field_order == "reversed":
            rows.reverse()
        elif self.field_order == "partial":  # one message expunged meanwhile, one unknown
            rows = [*rows[1:], MessageFields(999, 1, rows[0].internal_date, None)]
        return rows


def _raw(headers: str, body: str = "body\n") -> bytes:
    return (headers.rstrip("\n") + "\n\n" + body).replace("\n", "\r\n").encode()


def mailbox() -> FakeSource:
    return FakeSource(
        [
            Message(
                3,
                _raw("From: Alice <alice@example.com>\nTo: bob@example.org\nSubject: Lunch"),
                ("\\Seen",),
                modseq=5,
                internal=datetime(2024, 3, 1, 23, 30, tzinfo=EST),  # 2 March in UTC
            ),
            Message(
                5,
                _raw(
                    "From: Bob <bob@example.org>\nCc: carol@example.net\n"
                    "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= aus Köln\nX-Priority: 1",
                    "Grüße, see the invoice\n",
                ),
                ("\\SEEN", "\\Flagged", "$Label1"),
                modseq=9,
                sent=None,  # no valid Date: INTERNALDATE is the sent date
            ),
            Message(
                8,
                _raw("From: carol@example.net\nBcc: dave@example.com\nSubject: invoice 42"),
                ("\\Answered", "\\Recent"),
                modseq=12,
                internal=datetime(2024, 3, 2, 1, 0, tzinfo=UTC),
                sent=datetime(2024, 3, 2, 0, 0, tzinfo=UTC),
            ),
            Message(
                10,
                _raw("From: dave@example.com\nSubject: Привет", "Как дела?\n" + "x" * 500),
                ("\\Deleted", "\\Draft", "$label1"),
                modseq=12,
                internal=datetime(2024, 3, 3, 0, 0, tzinfo=UTC),
                sent=datetime(2024, 3, 4, 0, 0, tzinfo=UTC),
            ),
            Message(
                20,
                _raw("From: eve@example.com\nSubject: nothing", "lunch menu\n"),
                ("\\Recent", "\\Seen"),
                modseq=20,
                internal=datetime(2024, 3, 4, 0, 0, tzinfo=UTC),
                sent=datetime(2024, 3, 4, 23, 59, tzinfo=UTC),
            ),
        ]
    )


def _query(args: str | bytes) -> tuple[SearchKey, str | None]:
    data = args.encode() if isinstance(args, str) else args
    events = CommandReader().feed(b"1 UID SEARCH " + data + b"\r\n")
    assert len(events) == 1 and isinstance(events[0], RawCommand), events
    request = parse_search(events[0].args[1:])
    return request.query, request.charset


async def uids(source: FakeSource, args: str | bytes) -> list[int]:
    query, charset = _query(args)
    return result_uids(await evaluate(query, source, charset), source.uids)


# -- keys --


async def test_all_and_flags() -> None:
    box = mailbox()
    assert await uids(box, "ALL") == [3, 5, 8, 10, 20]
    assert await uids(box, "SEEN") == [3, 5, 20]  # "\SEEN" matches case-insensitively
    assert await uids(box, "UNSEEN") == [8, 10]
    assert await uids(box, "ANSWERED") == [8]
    assert await uids(box, "UNANSWERED") == [3, 5, 10, 20]
    assert await uids(box, "DELETED") == [10]
    assert await uids(box, "UNDELETED") == [3, 5, 8, 20]
    assert await uids(box, "DRAFT") == [10]
    assert await uids(box, "UNDRAFT") == [3, 5, 8, 20]
    assert await uids(box, "FLAGGED") == [5]
    assert await uids(box, "UNFLAGGED") == [3, 8, 10, 20]
    assert await uids(box, "RECENT") == [8, 20]
    assert await uids(box, "OLD") == [3, 5, 10]  # §6.4.4 OLD = NOT RECENT
    assert await uids(box, "NEW") == [8]  # NEW = RECENT UNSEEN
    assert await uids(box, "KEYWORD $LABEL1") == [5, 10]
    assert await uids(box, "UNKEYWORD $label1") == [3, 8, 20]
    assert await uids(box, "KEYWORD $Nothing") == []
    assert box.calls == [] and box.field_calls == 0


async def test_header_keys() -> None:
    box = mailbox()
    assert await uids(box, "FROM alice") == [3]
    assert await uids(box, "FROM EXAMPLE.ORG") == [5]
    assert await uids(box, "TO bob") == [3]
    assert await uids(box, "CC carol") == [5]
    assert await uids(box, "BCC dave") == [8]
    assert await uids(box, "SUBJECT invoice") == [8]  # not 5: "invoice" is in its body
    assert await uids(box, 'SUBJECT "grüße aus"') == [5]  # RFC 2047 decoded, any case
    assert await uids(box, "HEADER X-Priority 1") == [5]
    assert await uids(box, 'HEADER x-priority ""') == [5]  # §6.4.4: has the field
    assert await uids(box, 'HEADER Bcc ""') == [8]
    assert await uids(box, 'HEADER X-Missing ""') == []
    assert await uids(box, "HEADER Subject lunch") == [3]
    assert box.calls[-1] == ("Subject", "lunch", "headers")
    assert ("x-priority", "", "headers") in box.calls


async def test_body_and_text() -> None:
    box = mailbox()
    assert await uids(box, "BODY invoice") == [5]
    assert await uids(box, "BODY lunch") == [20]
    assert await uids(box, "TEXT lunch") == [3, 20]  # §6.4.4 TEXT: header or body
    assert await uids(box, "TEXT invoice") == [5, 8]
    assert await uids(box, "BODY nowhere") == []
    box.calls.clear()
    assert await uids(box, 'BODY ""') == [3, 5, 8, 10, 20]
    assert await uids(box, 'TEXT ""') == [3, 5, 8, 10, 20]
    assert box.calls == []  # every message contains the empty string


async def test_internal_dates_compare_calendar_days_in_their_own_zone() -> None:
    box = mailbox()
    # uid 3 arrived 1 March 23:30 -05:00 (2 March in UTC): its day is 1 March
    assert await uids(box, "ON 1-Mar-2024") == [3]
    assert await uids(box, "ON 2-Mar-2024") == [8]
    assert await uids(box, "BEFORE 2-Mar-2024") == [3]
    assert await uids(box, "BEFORE 1-Mar-2024") == []
    assert await uids(box, "SINCE 3-Mar-2024") == [5, 10, 20]
    assert await uids(box, "SINCE 2-Mar-2024 BEFORE 4-Mar-2024") == [8, 10]
    assert box.field_calls == 6  # once per search


async def test_sent_dates() -> None:
    box = mailbox()
    assert await uids(box, "SENTON 9-Mar-2024") == [3]
    assert await uids(box, "SENTON 4-Mar-2024") == [10, 20]  # 23:59 UTC is still the 4th
    assert await uids(box, "SENTBEFORE 3-Mar-2024") == [8]
    assert await uids(box, "SENTSINCE 5-Mar-2024") == [3, 5]
    # no valid Date: header -> the INTERNALDATE (RFC 5256 §2.2), 10 March
    assert await uids(box, "SENTON 10-Mar-2024") == [5]


async def test_size_and_modseq() -> None:
    box = mailbox()
    sizes = {m.uid: len(m.raw) for m in box.messages}
    big = sizes[10]
    assert await uids(box, f"LARGER {big - 1}") == [10]
    assert await uids(box, f"LARGER {big}") == []  # size > n
    assert await uids(box, f"SMALLER {sizes[3]}") == sorted(
        u for u, s in sizes.items() if s < sizes[3]
    )
    assert await uids(box, "SMALLER 1") == []
    assert await uids(box, "MODSEQ 12") == [8, 10, 20]  # RFC 7162: >= n
    assert await uids(box, 'MODSEQ "/flags/\\\\draft" all 10') == [8, 10, 20]
    assert await uids(box, "MODSEQ 21") == []


async def test_fields_matched_by_uid() -> None:
    box = mailbox()
    box.field_order = "reversed"
    assert await uids(box, "SINCE 1-Jan-2000") == [3, 5, 8, 10, 20]
    box.field_order = "partial"  # uid 3 has no row, an unknown UID has one
    assert await uids(box, "SINCE 1-Jan-2000") == [5, 8, 10, 20]


# -- sequence sets --


async def test_sequence_numbers() -> None:
    box = mailbox()
    assert await uids(box, "2:4") == [5, 8, 10]
    assert await uids(box, "*") == [20]
    assert await uids(box, "4:*") == [10, 20]
    assert await uids(box, "*:4") == [10, 20]
    assert await uids(box, "9:*") == [20]  # "n:*" with n beyond the end still has the last
    assert await uids(box, "6") == []  # beyond the message count: nothing
    assert await uids(box, "1,3,100:200") == [3, 8]
    assert await uids(box, "1:4294967295") == [3, 5, 8, 10, 20]


async def test_uid_sets() -> None:
    box = mailbox()
    assert await uids(box, "UID 5:10") == [5, 8, 10]
    assert await uids(box, "UID *") == [20]
    assert await uids(box, "UID 25:*") == [20]  # §6.4.8: includes the highest UID
    assert await uids(box, "UID 4,6,7") == []
    assert await uids(box, "UID 1000") == []
    assert await uids(box, "UID 1:*") == [3, 5, 8, 10, 20]


async def test_saved_result() -> None:
    box = mailbox()
    assert await uids(box, "$") == []  # RFC 5182: nothing saved is the empty set
    assert await uids(box, "UID $") == []
    box.saved = [5, 10, 11, 20]  # 11 was expunged since
    assert await uids(box, "$") == [5, 10, 20]
    assert await uids(box, "UID $") == [5, 10, 20]
    assert await uids(box, "NOT $") == [3, 8]
    assert await uids(box, "$ SEEN") == [5, 20]


async def test_empty_mailbox() -> None:
    box = FakeSource([])
    for args in (
        "ALL",
        "*",
        "UID *",
        "1:*",
        "NOT ALL",
        "NOT SEEN",
        "SUBJECT x",
        "$",
        "ON 1-Jan-2024",
    ):
        assert await uids(box, args) == [], args


# -- NOT / OR / AND --


async def test_not_or_nesting() -> None:
    box = mailbox()
    assert await uids(box, "NOT SEEN") == [8, 10]
    assert await uids(box, "NOT NOT SEEN") == [3, 5, 20]
    assert await uids(box, "NOT (SEEN FLAGGED)") == [3, 8, 10, 20]
    assert await uids(box, "OR SEEN FLAGGED") == [3, 5, 20]
    assert await uids(box, "OR ANSWERED DELETED") == [8, 10]
    assert await uids(box, "NOT OR SEEN DELETED") == [8]
    assert await uids(box, "OR (NOT SEEN) (NOT FLAGGED)") == [3, 8, 10, 20]
    assert await uids(box, "OR OR FROM alice FROM bob SUBJECT invoice") == [3, 5, 8]
    assert await uids(box, "UNDELETED OR OR FROM dave TO bob SUBJECT invoice") == [3, 8]
    assert await uids(box, "(SEEN (NOT FLAGGED (NOT 1)))") == [20]
    assert await uids(box, "NOT BODY lunch") == [3, 5, 8, 10]
    assert await uids(box, "OR ALL SUBJECT lunch") == [3, 5, 8, 10, 20]
    deep = "NOT " * 40 + "SEEN"
    assert await uids(box, deep) == [3, 5, 20]


async def test_and_evaluates_cheap_keys_first_and_stops_when_empty() -> None:
    box = mailbox()
    assert await uids(box, "SUBJECT lunch UID 1000") == []
    assert await uids(box, "BEFORE 1-Jan-2024 BODY x SEEN") == []
    assert box.calls == []  # no text query for an already empty result
    assert await uids(box, "SUBJECT lunch SEEN") == [3]
    assert box.calls == [("Subject", "lunch", "headers")]
    assert await uids(box, "SINCE 1-Jan-2024 LARGER 1 SENTBEFORE 1-Jan-2030") == [3, 5, 8, 10, 20]
    assert box.field_calls == 2  # at most once per search


# -- charsets --


async def test_charsets() -> None:
    box = mailbox()
    assert search_codec(None) == "utf-8"
    assert search_codec("US-ASCII") == "utf-8"
    assert search_codec("UTF-8") == "utf-8"
    assert search_codec("ISO-8859-1") == "iso8859-1"
    assert SUPPORTED_CHARSETS == ("US-ASCII", "UTF-8")
    assert await uids(box, 'CHARSET UTF-8 SUBJECT "köln"') == [5]
    assert await uids(box, b'CHARSET ISO-8859-1 SUBJECT "k\xf6ln"') == [5]
    query = HeaderKey("Subject", "привет".encode("koi8-r"))
    assert result_uids(await evaluate(query, box, "KOI8-R"), box.uids) == [10]
    utf8 = HeaderKey("Subject", "köln".encode())
    assert result_uids(await evaluate(utf8, box, "US-ASCII"), box.uids) == [5]
    assert result_uids(await evaluate(utf8, box), box.uids) == [5]


async def test_bad_charset() -> None:
    box = mailbox()
    for name in ("X-BOGUS", "BASE64", "IDNA", "ZLIB"):
        with pytest.raises(BadCharset) as info:
            await uids(box, f"CHARSET {name} ALL")
        assert info.value.charset == name
    assert box.calls == []


async def test_undecodable_and_nul_needles() -> None:
    box = mailbox()
    await evaluate(HeaderKey("Subject", b"a\xffb\x00c"), box)
    assert box.calls == [("Subject", "a\ufffdb\ufffdc", "headers")]


def test_result_helpers() -> None:
    assert result_uids([0, 2], [4, 7, 9]) == [4, 9]
    assert result_numbers([0, 2]) == [1, 3]


# -- cost --


class CountingUids(Sequence[int]):
    """Ascending UIDs that count element reads, to check that a text search is O(hits)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.reads = 0

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, i: int) -> int: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[int]: ...
    def __getitem__(self, i: int | slice) -> int | Sequence[int]:
        if isinstance(i, slice):
            raise AssertionError("no slicing")
        self.reads += 1
        if not -self.n <= i < self.n:
            raise IndexError(i)
        return 3 * (i % self.n) + 1

    def __iter__(self) -> Iterator[int]:
        raise AssertionError("a text search must not walk the mailbox")


@dataclass
class HitSource:
    uids: CountingUids
    hits: set[int]

    @property
    def flags(self) -> Sequence[tuple[str, ...]]:
        raise AssertionError("flags are not needed")

    @property
    def modseqs(self) -> Sequence[int]:
        raise AssertionError("mod-sequences are not needed")

    @property
    def saved(self) -> Sequence[int] | None:
        raise AssertionError("no saved result is needed")

    async def text_uids(
        self, field: str | None, needle: str, where: Literal["headers", "body"]
    ) -> set[int]:
        return self.hits

    async def fields(self) -> Sequence[MessageFields]:
        raise AssertionError("fields are not needed")


async def test_single_text_key_costs_only_its_hits() -> None:
    n = 10_000
    all_uids = CountingUids(n)
    hits = {3 * i + 1 for i in range(0, n, 107)}  # 94 messages
    source: SearchSource = HitSource(all_uids, hits | {2, 30_002})  # two unknown UIDs
    found = await evaluate(HeaderKey("Subject", b"x"), source)
    assert found == list(range(0, n, 107))
    assert all_uids.reads <= len(hits) * 16  # binary search per hit: ~log2(10000) reads


async def test_flag_keys_on_ten_thousand_messages() -> None:
    pool = [("\\Seen",), ("\\Seen", "\\Flagged"), (), ("\\Answered", "\\SEEN", "$x"), ("\\Recent",)]
    messages = [Message(i + 1, b"", pool[i % len(pool)]) for i in range(10_000)]
    box = FakeSource(messages)
    unseen = await evaluate(Not(FlagKey("\\Seen")), box)
    assert unseen == [i for i in range(10_000) if i % 5 in (2, 4)]
    assert await evaluate(FlagKey("\\Seen", present=False), box) == unseen
