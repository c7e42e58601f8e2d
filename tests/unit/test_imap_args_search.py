"""SEARCH / SORT / THREAD argument parsing (search.py), fed through the real CommandReader."""

from __future__ import annotations

from datetime import date

import pytest

from mailwarden.imap.wire.reader import CommandReader, Malformed, NeedContinuation, RawCommand
from mailwarden.imap.wire.search import (
    MAX_SEARCH_DEPTH,
    All,
    And,
    BodyKey,
    DateKey,
    FlagKey,
    HeaderKey,
    ModSeqKey,
    Not,
    Or,
    SetKey,
    SizeKey,
    parse_date,
    parse_search,
    parse_search_keys,
)
from mailwarden.imap.wire.sequence import SequenceSet
from mailwarden.imap.wire.sort import SortCriterion, parse_sort, parse_thread
from mailwarden.imap.wire.tokens import Atom, ImapSyntaxError, ParenList, String


def cmd(line: bytes, reader: CommandReader | None = None) -> RawCommand:
    events = (reader or CommandReader()).feed(line)
    assert len(events) == 1, events
    ev = events[0]
    assert isinstance(ev, RawCommand), ev
    return ev


# -- real client lines --


def test_thunderbird_uid_search_undeleted_since() -> None:
    # Thunderbird's "Get messages since" / offline sync.
    c = cmd(b"7 UID SEARCH SINCE 1-Nov-2026 UNDELETED\r\n")
    req = parse_search(c.args[1:])
    assert req.query == And((DateKey("since", date(2026, 11, 1)), FlagKey("\\Deleted", False)))
    assert req.charset is None and req.returns is None


def test_thunderbird_quick_filter_or_chain() -> None:
    c = cmd(b'12 UID SEARCH UNDELETED OR OR FROM "bob" TO "bob" SUBJECT "bob"\r\n')
    q = parse_search(c.args[1:]).query
    assert q == And(
        (
            FlagKey("\\Deleted", False),
            Or(
                Or(HeaderKey("From", b"bob"), HeaderKey("To", b"bob")), HeaderKey("Subject", b"bob")
            ),
        )
    )


def test_apple_mail_charset_and_literal() -> None:
    r = CommandReader()
    assert r.feed(b"5.40 UID SEARCH CHARSET UTF-8 BODY {6}\r\n") == [NeedContinuation("5.40", 6)]
    events = r.feed("grüß UNDELETED\r\n".encode())
    assert isinstance(events[0], RawCommand)
    req = parse_search(events[0].args[1:])
    assert req.charset == "UTF-8"
    assert req.query == And((BodyKey("grüß".encode()), FlagKey("\\Deleted", False)))


def test_k9_uid_search_header_message_id() -> None:
    c = cmd(b'8 UID SEARCH HEADER MESSAGE-ID "<abc@example.org>"\r\n')
    assert parse_search(c.args[1:]).query == HeaderKey("MESSAGE-ID", b"<abc@example.org>")


def test_mutt_search_text_not_deleted() -> None:
    c = cmd(b'a0010 SEARCH CHARSET us-ascii (TEXT "hello" NOT DELETED)\r\n')
    req = parse_search(c.args)
    assert req.charset == "US-ASCII"
    assert req.query == And((BodyKey(b"hello", text=True), Not(FlagKey("\\Deleted"))))


def test_imapclient_esearch_return_and_modseq() -> None:
    c = cmd(b"A1 UID SEARCH RETURN (MIN MAX COUNT) MODSEQ 620162338\r\n")
    req = parse_search(c.args[1:])
    assert req.returns == frozenset({"MIN", "MAX", "COUNT"})
    assert req.query == ModSeqKey(620162338)


def test_empty_return_means_all_and_save() -> None:
    assert parse_search(cmd(b"a SEARCH RETURN () ALL\r\n").args).returns == {"ALL"}
    req = parse_search(cmd(b"a SEARCH RETURN (SAVE) SEEN\r\n").args)
    assert req.returns == {"SAVE"}


def test_all_rfc3501_keys() -> None:
    line = (
        b"a SEARCH 1:5,7 ALL ANSWERED BCC b BEFORE 1-Jan-2020 BODY x CC c DELETED DRAFT "
        b"FLAGGED FROM f HEADER X-Y v KEYWORD $Junk LARGER 10 NEW NOT SEEN OLD "
        b'ON "02-Feb-2021" OR SEEN UNSEEN RECENT SEEN SENTBEFORE 3-Mar-2022 '
        b"SENTON 4-Apr-2023 SENTSINCE 5-May-2024 SINCE 6-Jun-2025 SMALLER 20 SUBJECT s "
        b"TEXT t TO o UID 1:* UNANSWERED UNDELETED UNDRAFT UNFLAGGED UNKEYWORD work UNSEEN $\r\n"
    )
    q = parse_search(cmd(line).args).query
    assert isinstance(q, And)
    assert q.keys == (
        SetKey(SequenceSet.parse("1:5,7")),
        All(),
        FlagKey("\\Answered"),
        HeaderKey("Bcc", b"b"),
        DateKey("before", date(2020, 1, 1)),
        BodyKey(b"x"),
        HeaderKey("Cc", b"c"),
        FlagKey("\\Deleted"),
        FlagKey("\\Draft"),
        FlagKey("\\Flagged"),
        HeaderKey("From", b"f"),
        HeaderKey("X-Y", b"v"),
        FlagKey("$Junk"),
        SizeKey("larger", 10),
        And((FlagKey("\\Recent"), FlagKey("\\Seen", False))),
        Not(FlagKey("\\Seen")),
        FlagKey("\\Recent", False),
        DateKey("on", date(2021, 2, 2)),
        Or(FlagKey("\\Seen"), FlagKey("\\Seen", False)),
        FlagKey("\\Recent"),
        FlagKey("\\Seen"),
        DateKey("before", date(2022, 3, 3), sent=True),
        DateKey("on", date(2023, 4, 4), sent=True),
        DateKey("since", date(2024, 5, 5), sent=True),
        DateKey("since", date(2025, 6, 6)),
        SizeKey("smaller", 20),
        HeaderKey("Subject", b"s"),
        BodyKey(b"t", text=True),
        HeaderKey("To", b"o"),
        SetKey(SequenceSet.parse("1:*"), uid=True),
        FlagKey("\\Answered", False),
        FlagKey("\\Deleted", False),
        FlagKey("\\Draft", False),
        FlagKey("\\Flagged", False),
        FlagKey("work", False),
        FlagKey("\\Seen", False),
        SetKey(SequenceSet(saved=True)),
    )


def test_keys_are_case_insensitive_and_groups_nest() -> None:
    q = parse_search(cmd(b"a search (seen (from x)) or (deleted) (draft flagged)\r\n").args).query
    assert q == And(
        (
            And((FlagKey("\\Seen"), HeaderKey("From", b"x"))),
            Or(FlagKey("\\Deleted"), And((FlagKey("\\Draft"), FlagKey("\\Flagged")))),
        )
    )


def test_modseq_with_entry() -> None:
    c = cmd(b'a SEARCH MODSEQ "/flags/\\\\draft" all 620162338\r\n')
    assert parse_search(c.args).query == ModSeqKey(620162338, b"/flags/\\draft", "all")


def test_dates() -> None:
    assert parse_date(Atom("1-feb-1994")) == date(1994, 2, 1)
    assert parse_date(String(b"29-Feb-2024")) == date(2024, 2, 29)
    for bad in ("29-Feb-2023", "1-Foo-2020", "1-Jan-20", "001-Jan-2020", "1 Jan 2020"):
        with pytest.raises(ImapSyntaxError, match="invalid date"):
            parse_date(Atom(bad))
    with pytest.raises(ImapSyntaxError, match="expected a date"):
        parse_date(ParenList(()))


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"a SEARCH\r\n", "missing search keys"),
        (b"a SEARCH CHARSET\r\n", "CHARSET needs a name"),
        (b"a SEARCH CHARSET UTF-8\r\n", "missing search keys"),
        (b"a SEARCH RETURN\r\n", "RETURN needs"),
        (b"a SEARCH RETURN (FOO) ALL\r\n", "unknown RETURN option"),
        (b"a SEARCH RETURN ALL ALL\r\n", "parenthesised list"),
        (b"a SEARCH FROG\r\n", "unknown search key FROG"),
        (b'a SEARCH "ALL"\r\n', "expected a search key"),
        (b"a SEARCH FROM\r\n", "FROM needs an argument"),
        (b"a SEARCH HEADER X\r\n", "HEADER needs an argument"),
        (b'a SEARCH HEADER "a:b" x\r\n', "invalid header field name"),
        (b"a SEARCH NOT\r\n", "NOT needs more search keys"),
        (b"a SEARCH OR SEEN\r\n", "OR needs more search keys"),
        (b"a SEARCH (SEEN OR DELETED) DRAFT\r\n", "OR needs more search keys"),
        (b"a SEARCH ()\r\n", "empty search key list"),
        (b"a SEARCH LARGER x\r\n", "invalid number"),
        (b"a SEARCH LARGER 4294967296\r\n", "out of range"),
        (b"a SEARCH BEFORE 1-Jan\r\n", "invalid date"),
        (b"a SEARCH 1:x\r\n", "invalid sequence set"),
        (b"a SEARCH 0\r\n", "invalid sequence set"),
        (b"a SEARCH UID (1)\r\n", "expected a sequence set"),
        (b"a SEARCH KEYWORD \\Seen\r\n", "invalid keyword"),
        (b"a SEARCH KEYWORD a%b\r\n", "invalid keyword"),
        (b'a SEARCH MODSEQ "/x" all 1\r\n', "invalid MODSEQ entry name"),
        (b'a SEARCH MODSEQ "/flags/\\\\seen" both 1\r\n', "invalid MODSEQ entry type"),
        (b"a SEARCH MODSEQ 9223372036854775808\r\n", "out of range"),
    ],
)
def test_search_errors(line: bytes, reason: str) -> None:
    with pytest.raises(ImapSyntaxError, match=reason):
        parse_search(cmd(line).args)


# -- hostile input --


def test_ten_thousand_nots_is_a_syntax_error_not_recursion() -> None:
    toks = [Atom("NOT")] * 10_000 + [Atom("SEEN")]
    with pytest.raises(ImapSyntaxError, match="nested too deeply"):
        parse_search_keys(toks)


def test_deep_or_chain_is_bounded() -> None:
    toks = [Atom("OR"), Atom("SEEN")] * 100_000 + [Atom("SEEN")]
    with pytest.raises(ImapSyntaxError, match="nested too deeply"):
        parse_search_keys(toks)


def test_deep_parentheses_built_directly_are_bounded() -> None:
    tok: ParenList = ParenList((Atom("SEEN"),))
    for _ in range(5_000):
        tok = ParenList((tok,))
    with pytest.raises(ImapSyntaxError, match="nested too deeply"):
        parse_search_keys([tok])


def test_nesting_at_the_limit_is_fine() -> None:
    depth = MAX_SEARCH_DEPTH - 1
    q = parse_search_keys([Atom("NOT")] * depth + [Atom("SEEN")])
    for _ in range(depth):
        assert isinstance(q, Not)
        q = q.key
    assert q == FlagKey("\\Seen")


def test_deep_parentheses_via_reader_are_refused_by_the_reader() -> None:
    ev = CommandReader().feed(b"a SEARCH " + b"(" * 100 + b"SEEN" + b")" * 100 + b"\r\n")
    assert isinstance(ev[0], Malformed)


def test_wire_nots_within_token_limit() -> None:
    line = b"a SEARCH " + b"NOT " * 9_000 + b"SEEN\r\n"
    c = cmd(line, CommandReader(max_line=1 << 20))
    with pytest.raises(ImapSyntaxError, match="nested too deeply"):
        parse_search(c.args)


def test_hundred_thousand_keys_bounded_by_reader_token_limit() -> None:
    line = b"a SEARCH " + b"SEEN " * 100_000 + b"ALL\r\n"
    ev = CommandReader(max_line=1 << 20).feed(line)
    assert ev == [Malformed("a", "too many arguments")]
    # Just under the limit is parsed flat, without recursion.
    c = cmd(b"a SEARCH " + b"SEEN " * 9_000 + b"ALL\r\n", CommandReader(max_line=1 << 20))
    q = parse_search(c.args).query
    assert isinstance(q, And) and len(q.keys) == 9_001


# -- SORT / THREAD --


def test_sort_thunderbird_and_reverse() -> None:
    c = cmd(b"9 UID SORT (REVERSE DATE SUBJECT) UTF-8 UNDELETED\r\n")
    req = parse_sort(c.args[1:])
    assert req.criteria == (SortCriterion("DATE", True), SortCriterion("SUBJECT"))
    assert req.charset == "UTF-8"
    assert req.query == FlagKey("\\Deleted", False)
    assert req.returns is None


def test_sort_display_and_esort_return() -> None:
    c = cmd(b"a SORT RETURN (MIN COUNT) (DISPLAYFROM reverse arrival) us-ascii ALL\r\n")
    req = parse_sort(c.args)
    assert req.criteria == (SortCriterion("DISPLAYFROM"), SortCriterion("ARRIVAL", True))
    assert req.returns == {"MIN", "COUNT"}


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"a SORT (DATE) UTF-8\r\n", "SORT needs criteria"),
        (b"a SORT () UTF-8 ALL\r\n", "non-empty list"),
        (b"a SORT DATE UTF-8 ALL\r\n", "non-empty list"),
        (b"a SORT (SPEED) UTF-8 ALL\r\n", "invalid SORT criterion"),
        (b"a SORT (REVERSE REVERSE DATE) UTF-8 ALL\r\n", "invalid SORT criterion"),
        (b"a SORT (DATE REVERSE) UTF-8 ALL\r\n", "REVERSE must be followed"),
        (b"a SORT (DATE) () ALL\r\n", "expected an atom or string"),
        (b"a SORT RETURN (SAVE) (DATE) UTF-8 ALL\r\n", "unknown RETURN option"),
    ],
)
def test_sort_errors(line: bytes, reason: str) -> None:
    with pytest.raises(ImapSyntaxError, match=reason):
        parse_sort(cmd(line).args)


def test_thread() -> None:
    req = parse_thread(cmd(b"a UID THREAD references UTF-8 SINCE 5-MAR-2000\r\n").args[1:])
    assert req.algorithm == "REFERENCES"
    assert req.query == DateKey("since", date(2000, 3, 5))
    assert parse_thread(cmd(b"a THREAD ORDEREDSUBJECT US-ASCII ALL\r\n").args).algorithm == (
        "ORDEREDSUBJECT"
    )
    with pytest.raises(ImapSyntaxError, match="unknown THREAD algorithm"):
        parse_thread(cmd(b"a THREAD MAGIC UTF-8 ALL\r\n").args)
    with pytest.raises(ImapSyntaxError, match="THREAD needs"):
        parse_thread(cmd(b"a THREAD REFERENCES UTF-8\r\n").args)
