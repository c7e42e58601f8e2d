"""IMAP wire values: sequence sets, FETCH attribute parsing, response encoding, mUTF-7."""

from __future__ import annotations

import pytest

from mailwarden.imap.wire.encode import (
    Binary,
    Code,
    Value,
    continuation,
    decode_mailbox,
    decode_mutf7,
    encode_astring,
    encode_mailbox,
    encode_mutf7,
    encode_nstring,
    encode_string,
    encode_value,
    fetch_response,
    status,
    untagged,
)
from mailwarden.imap.wire.fetch import (
    Attr,
    BinarySection,
    BinarySize,
    BodySection,
    FetchRequest,
    Partial,
    Section,
    parse_fetch,
)
from mailwarden.imap.wire.reader import CommandReader, RawCommand
from mailwarden.imap.wire.sequence import NumberSet, SequenceSet, format_numbers
from mailwarden.imap.wire.tokens import Atom, ImapSyntaxError, Token

# -- sequence sets --


@pytest.mark.parametrize(
    ("text", "largest", "ranges"),
    [
        ("1:*", 7, ((1, 7),)),
        ("2,4:7,9", 100, ((2, 2), (4, 7), (9, 9))),
        ("*:4", 10, ((4, 10),)),
        ("*:4", 2, ((2, 4),)),  # §9: "*:4" with 2 messages is 2:4
        ("1:3,3:5", 9, ((1, 5),)),
        ("7:5,1,2,3", 9, ((1, 3), (5, 7))),
        ("*", 5, ((5, 5),)),
        ("1:*", 0, ()),  # empty mailbox: "*" selects nothing
        ("3,1:*", 0, ((3, 3),)),
    ],
)
def test_sequence_resolve(text: str, largest: int, ranges: tuple[tuple[int, int], ...]) -> None:
    assert SequenceSet.parse(text).resolve(largest).ranges == ranges


@pytest.mark.parametrize(
    "text", ["0", "0:3", "1:0", "4294967296", "01", "", "1,,2", "1:", ":1", "1:*:2", "a", "1 2"]
)
def test_sequence_rejects(text: str) -> None:
    with pytest.raises(ImapSyntaxError):
        SequenceSet.parse(text)


def test_sequence_max_value_and_huge_range_is_lazy() -> None:
    ns = SequenceSet.parse("1:4294967295").resolve(3)
    assert ns.ranges == ((1, 4294967295),)
    assert len(ns) == 4294967295
    assert 4294967295 in ns and 0 not in ns and "x" not in ns
    it = iter(ns)
    assert [next(it) for _ in range(3)] == [1, 2, 3]
    assert ns.min == 1 and ns.max == 4294967295


def test_uid_sets_against_uid_list() -> None:
    uids = [3, 5, 100, 500, 501]
    assert list(SequenceSet.parse("1:*").select_uids(uids)) == uids
    # RFC 3501 §6.4.8: 559:* includes the highest UID even when 559 is above it
    assert list(SequenceSet.parse("559:*").select_uids(uids)) == [501]
    assert list(SequenceSet.parse("4:99,501,600").select_uids(uids)) == [5, 501]
    assert list(SequenceSet.parse("1:4294967295").resolve(501).indexes(uids)) == [0, 1, 2, 3, 4]
    assert list(SequenceSet.parse("1:*").select_uids([])) == []


def test_saved_result_marker() -> None:
    s = SequenceSet.parse("$")  # RFC 5182 SEARCHRES
    assert s.saved and str(s) == "$"
    with pytest.raises(ValueError, match="saved"):
        s.resolve(3)
    with pytest.raises(ImapSyntaxError):
        SequenceSet.parse("1,$")


def test_sequence_str_round_trip() -> None:
    for text in ["1:3,5", "5:*", "2,4:*,9:*", "*"]:
        assert str(SequenceSet.parse(str(SequenceSet.parse(text)))) == str(SequenceSet.parse(text))
    assert str(SequenceSet.parse("3,2,1,9:*")) == "1:3,9:*"


def test_format_numbers() -> None:
    assert format_numbers([9, 1, 2, 3, 5, 3]) == "1:3,5,9"
    assert format_numbers([]) == ""
    assert format_numbers([3955]) == "3955"
    # COPYUID (RFC 4315 §3) keeps source order
    assert format_numbers([7, 8, 1, 2], sort=False) == "7:8,1:2"
    assert str(NumberSet.from_numbers(range(1, 100_001))) == "1:100000"


def test_numberset_from_ranges_merges_adjacent() -> None:
    assert NumberSet.from_ranges([(5, 3), (6, 6), (10, 12), (1, 1)]).ranges == (
        (1, 1),
        (3, 6),
        (10, 12),
    )


# -- FETCH --


def fetch_args(line: bytes) -> list[Token]:
    (ev,) = CommandReader().feed(b"a FETCH 1 " + line + b"\r\n")
    assert isinstance(ev, RawCommand), ev
    return ev.args[1:]


def fetch(line: bytes) -> FetchRequest:
    return parse_fetch(fetch_args(line))


def test_fetch_macros() -> None:
    assert fetch(b"ALL").items == (Attr.FLAGS, Attr.INTERNALDATE, Attr.RFC822_SIZE, Attr.ENVELOPE)
    assert fetch(b"fast").items == (Attr.FLAGS, Attr.INTERNALDATE, Attr.RFC822_SIZE)
    assert fetch(b"FULL").items[-1] is Attr.BODY
    with pytest.raises(ImapSyntaxError):
        fetch(b"(ALL)")  # macros are not fetch-att


def test_fetch_simple_attributes() -> None:
    line = (
        b"(ENVELOPE FLAGS INTERNALDATE RFC822 RFC822.HEADER RFC822.SIZE RFC822.TEXT"
        b" BODY BODYSTRUCTURE UID MODSEQ)"
    )
    assert fetch(line).items == tuple(Attr)
    assert fetch(b"uid").items == (Attr.UID,)


@pytest.mark.parametrize(
    ("line", "item", "name"),
    [
        (b"BODY[]", BodySection(Section()), "BODY[]"),
        (b"BODY.PEEK[]<0.2048>", BodySection(Section(), Partial(0, 2048), True), "BODY[]<0>"),
        (b"BODY[HEADER]", BodySection(Section(text="HEADER")), "BODY[HEADER]"),
        (b"BODY[TEXT]<10.5>", BodySection(Section(text="TEXT"), Partial(10, 5)), "BODY[TEXT]<10>"),
        (b"BODY[1.2.3]", BodySection(Section((1, 2, 3))), "BODY[1.2.3]"),
        (b"body[2.mime]", BodySection(Section((2,), "MIME")), "BODY[2.MIME]"),
        (b"BODY[1.TEXT]", BodySection(Section((1,), "TEXT")), "BODY[1.TEXT]"),
        (
            b'BODY.PEEK[2.HEADER.FIELDS ("Subject" from)]',
            BodySection(Section((2,), "HEADER.FIELDS", ("Subject", "from")), peek=True),
            "BODY[2.HEADER.FIELDS (Subject from)]",
        ),
        (
            b"BODY[HEADER.FIELDS.NOT (Received)]<0.1>",
            BodySection(Section((), "HEADER.FIELDS.NOT", ("Received",)), Partial(0, 1)),
            "BODY[HEADER.FIELDS.NOT (Received)]<0>",
        ),
        (b"BINARY[1]", BinarySection((1,)), "BINARY[1]"),
        (b"BINARY.PEEK[]<4.4>", BinarySection((), Partial(4, 4), True), "BINARY[]<4>"),
        (b"BINARY.SIZE[1.2]", BinarySize((1, 2)), "BINARY.SIZE[1.2]"),
    ],
)
def test_fetch_sections(line: bytes, item: object, name: str) -> None:
    for form in (line, b"(FLAGS " + line + b")"):
        req = fetch(form)
        got = req.items[-1]
        assert got == item
        assert isinstance(got, BodySection | BinarySection | BinarySize)
        assert got.response_name == name


@pytest.mark.parametrize(
    "line",
    [
        b"BODY[MIME]",  # MIME needs a part
        b"BODY[0]",
        b"BODY[1.0]",
        b"BODY[HEADER.FIELDS]",
        b"BODY[HEADER.FIELDS ()]",
        b"BODY[HEADER (A)]",
        b"BODY[TEXT]<0.0>",
        b"BODY[TEXT]<1>",
        b"BODY[TEXT]<4294967296.1>",
        b"BODY[99999999999]",
        b"BODY.PEEK",
        b"BINARY[HEADER]",
        b"BINARY.SIZE[1]<0.1>",
        b"FOO[1]",
        b"XYZZY",
        b"()",
        b'("FLAGS")',
        b"(BODY[HEADER.FIELDS (A))",
        b"(BODY[HEADER.FIELDS (A) x)",
        b'BODY[HEADER.FIELDS ("A:B")]',
        b"FLAGS (CHANGEDSINCE x)",
        b"FLAGS (VANISHED)",
        b"FLAGS (CHANGEDSINCE 1 CHANGEDSINCE 2)",
        b"FLAGS (FOO)",
        b"FLAGS (CHANGEDSINCE 1) extra",
    ],
)
def test_fetch_rejects(line: bytes) -> None:
    with pytest.raises(ImapSyntaxError):
        fetch(line)


def test_fetch_rejects_empty_args() -> None:
    with pytest.raises(ImapSyntaxError):
        parse_fetch([])
    with pytest.raises(ImapSyntaxError):
        parse_fetch([Atom("BODY[HEADER.FIELDS")])


def test_fetch_modifiers_condstore_qresync() -> None:
    req = fetch(b"(FLAGS) (CHANGEDSINCE 12345 VANISHED)")
    assert (req.changedsince, req.vanished, req.wants_modseq) == (12345, True, True)
    req = fetch(b"FLAGS (changedsince 9223372036854775807)")
    assert req.changedsince == 2**63 - 1 and not req.vanished
    assert not fetch(b"FLAGS").wants_modseq


def test_fetch_sets_seen() -> None:
    assert fetch(b"BODY[]").sets_seen
    assert fetch(b"RFC822").sets_seen
    assert fetch(b"BINARY[1]").sets_seen
    assert not fetch(b"(BODY.PEEK[] BINARY.PEEK[1] RFC822.HEADER BINARY.SIZE[1])").sets_seen


# -- encoding --


def test_strings_quoted_or_literal() -> None:
    assert encode_string("hello") == b'"hello"'
    assert encode_string('a"b\\c') == b'"a\\"b\\\\c"'
    assert encode_string("") == b'""'
    assert encode_string("a\r\nb") == b"{4}\r\na\r\nb"
    assert encode_string("é") == b"{2}\r\n\xc3\xa9"
    assert encode_string("é", utf8=True) == b'"\xc3\xa9"'
    assert encode_string(b"\xff", utf8=True) == b"{1}\r\n\xff"  # not UTF-8
    assert encode_string("x" * 5000).startswith(b"{5000}\r\nxxx")
    assert encode_nstring(None) == b"NIL" and encode_nstring(b"x") == b'"x"'
    assert encode_astring("INBOX") == b"INBOX"
    assert encode_astring("a b") == b'"a b"'
    assert encode_astring("") == b'""'


def test_values() -> None:
    value: list[Value] = [None, 0, 7, "s", b"b", Atom("\\Seen"), [Atom("A"), []], Binary(b"\x00")]
    assert encode_value(value) == b'(NIL 0 7 "s" "b" \\Seen (A ()) ~{1}\r\n\x00)'
    with pytest.raises(ValueError):
        encode_value(-1)
    with pytest.raises(TypeError):
        encode_value(True)


def test_status_lines_and_codes() -> None:
    assert status("a1", "OK", "done", Code("APPENDUID", 38505, "3955")) == (
        b"a1 OK [APPENDUID 38505 3955] done\r\n"
    )
    assert status(None, "OK", "next", Code("UIDNEXT", 5)) == b"* OK [UIDNEXT 5] next\r\n"
    assert status("x", "OK", "sel", Code("READ-WRITE")) == b"x OK [READ-WRITE] sel\r\n"
    caps = Code("CAPABILITY", "IMAP4rev1", "LITERAL+", "UIDPLUS")
    assert status(None, "OK", "hi", caps) == b"* OK [CAPABILITY IMAP4rev1 LITERAL+ UIDPLUS] hi\r\n"
    perm = Code("PERMANENTFLAGS", ["\\Seen", "\\*"])
    assert status(None, "OK", "f", perm) == b"* OK [PERMANENTFLAGS (\\Seen \\*)] f\r\n"
    assert status("t", "BAD", "evil\r\n* OK injected") == b"t BAD evil  * OK injected\r\n"
    assert status("t", "NO", "") == b"t NO done\r\n"
    assert status(None, "BYE", "bye") == b"* BYE bye\r\n"
    with pytest.raises(ValueError):
        status("t", "MAYBE", "x")
    with pytest.raises(ValueError):
        Code("BAD]CODE").encode()


def test_untagged_continuation_fetch() -> None:
    assert untagged(b"3", b"EXISTS") == b"* 3 EXISTS\r\n"
    assert continuation() == b"+ Ready for literal data\r\n"
    line = fetch_response(
        12, [("UID", 5), ("FLAGS", [Atom("\\Seen")]), ("BODY[]<0>", b"ab\r\n"), ("MODSEQ", [9])]
    )
    assert line == b"* 12 FETCH (UID 5 FLAGS (\\Seen) BODY[]<0> {4}\r\nab\r\n MODSEQ (9))\r\n"


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("INBOX", "INBOX"),
        ("Entwürfe", "Entw&APw-rfe"),
        ("A & B", "A &- B"),
        ("台北", "&U,BTFw-"),
        ("~peter/mail/日本語/台北", "~peter/mail/&ZeVnLIqe-/&U,BTFw-"),
        ("😀", "&2D3eAA-"),  # surrogate pair
    ],
)
def test_mutf7_round_trip(name: str, wire: str) -> None:
    assert encode_mutf7(name) == wire
    assert decode_mutf7(wire) == name


@pytest.mark.parametrize(
    "wire", ["&AGE-", "&", "&U,BTFw-&ZeVnLIqe-", "&Jjo", "a\x00", "é", "&2D0-"]
)
def test_mutf7_rejects_non_canonical(wire: str) -> None:
    with pytest.raises(ValueError):
        decode_mutf7(wire)


def test_mailbox_encode_decode() -> None:
    assert encode_mailbox("Entwürfe") == b"Entw&APw-rfe"
    assert encode_mailbox("My Drafts") == b'"My Drafts"'
    assert encode_mailbox("Entwürfe", utf8=True) == b'"Entw\xc3\xbcrfe"'  # RFC 6855
    assert decode_mailbox(b"Entw&APw-rfe") == "Entwürfe"
    assert decode_mailbox("Entwürfe".encode(), utf8=True) == "Entwürfe"
    with pytest.raises(ValueError):
        decode_mailbox("Entwürfe".encode())
