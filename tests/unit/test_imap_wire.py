"""The sans-I/O IMAP command reader: tokens, literals, limits, hostile input, resync."""

from __future__ import annotations

import pytest

from mailwarden.imap.wire.fetch import Attr, BodySection, Partial, Section, parse_fetch
from mailwarden.imap.wire.reader import (
    CommandReader,
    Event,
    Malformed,
    NeedContinuation,
    RawCommand,
)
from mailwarden.imap.wire.sequence import SequenceSet
from mailwarden.imap.wire.tokens import (
    Atom,
    ImapSyntaxError,
    ParenList,
    String,
    astring,
    atom,
    is_nil,
    nstring,
    number,
)


def one(data: bytes, reader: CommandReader | None = None) -> Event:
    events = (reader or CommandReader()).feed(data)
    assert len(events) == 1, events
    return events[0]


def cmd(data: bytes, reader: CommandReader | None = None) -> RawCommand:
    ev = one(data, reader)
    assert isinstance(ev, RawCommand), ev
    return ev


def bad(data: bytes, reader: CommandReader | None = None) -> Malformed:
    ev = one(data, reader)
    assert isinstance(ev, Malformed), ev
    return ev


def assert_alive(reader: CommandReader) -> None:
    assert reader.feed(b"z9 NOOP\r\n") == [RawCommand("z9", "NOOP", [])]


# -- tokens --


def test_simple_command_upper_cases_name() -> None:
    assert cmd(b"a1 noop\r\n") == RawCommand("a1", "NOOP", [])


def test_atoms_quoted_nil_numbers_lists() -> None:
    c = cmd(b'A2 X atom "q s" NIL 42 (a (b c) ()) \\Seen\r\n')
    assert c.args == [
        Atom("atom"),
        String(b"q s"),
        Atom("NIL"),
        Atom("42"),
        ParenList((Atom("a"), ParenList((Atom("b"), Atom("c"))), ParenList(()))),
        Atom("\\Seen"),
    ]
    assert is_nil(c.args[2]) and not is_nil(c.args[0])
    assert number(c.args[3]) == 42
    assert astring(c.args[1]) == b"q s" and astring(c.args[0]) == b"atom"
    assert nstring(c.args[2]) is None and atom(c.args[0]) == "ATOM"


def test_quoted_escapes() -> None:
    # RFC 3501 §4.3: only \" and \\ are escapes.
    c = cmd(b'a LOGIN "a\\"b" "c\\\\d"\r\n')
    assert c.args == [String(b'a"b'), String(b"c\\d")]


def test_quoted_utf8_is_kept_as_bytes() -> None:
    c = cmd('a SELECT "Entwürfe"\r\n'.encode())
    assert c.args == [String("Entwürfe".encode())]


def test_bare_lf_is_accepted() -> None:
    assert cmd(b"a NOOP\n") == RawCommand("a", "NOOP", [])


def test_sequence_set_and_wildcards_are_atoms() -> None:
    c = cmd(b'a LIST "" %/*\r\n')
    assert c.args == [String(b""), Atom("%/*")]


def test_token_accessor_errors() -> None:
    with pytest.raises(ImapSyntaxError):
        number(Atom("4294967296"))
    with pytest.raises(ImapSyntaxError):
        number(Atom("١٢"))  # non-ASCII digits
    with pytest.raises(ImapSyntaxError):
        astring(ParenList(()))
    with pytest.raises(ImapSyntaxError):
        nstring(Atom("x"))


# -- literals --


def test_synchronizing_literal_asks_for_continuation() -> None:
    r = CommandReader()
    assert r.feed(b"a1 LOGIN {3}\r\n") == [NeedContinuation("a1", 3)]
    assert r.feed(b"bob {4}\r\n") == [NeedContinuation("a1", 4)]
    assert r.feed(b"s3cr\r\n") == [
        RawCommand("a1", "LOGIN", [String(b"bob", literal=True), String(b"s3cr", literal=True)])
    ]


def test_session_may_refuse_a_synchronizing_literal() -> None:
    r = CommandReader()
    assert r.feed(b"a APPEND NoSuchBox {310}\r\n") == [NeedContinuation("a", 310)]
    r.reject_literal()  # the session sent "a NO [TRYCREATE] ..." instead of "+"
    assert_alive(r)
    r.reject_literal()  # no literal pending: no effect
    assert_alive(r)


def test_literal_plus_needs_no_continuation() -> None:
    c = cmd(b"a1 LOGIN {3+}\r\nbob {2+}\r\npw\r\n")
    assert c.args == [String(b"bob", literal=True), String(b"pw", literal=True)]


def test_literal8_and_zero_length_literal() -> None:
    r = CommandReader()
    assert r.feed(b"a APPEND box ~{3}\r\n") == [NeedContinuation("a", 3)]
    assert r.feed(b"\x00\x01\x02 {0}\r\n") == [NeedContinuation("a", 0)]
    (ev,) = r.feed(b"\r\n")
    assert isinstance(ev, RawCommand)
    assert ev.args[1:] == [
        String(b"\x00\x01\x02", literal=True, binary=True),
        String(b"", literal=True),
    ]


def test_literal_inside_list() -> None:
    c = cmd(b"a X (a {2+}\r\n() b)\r\n")
    assert c.args == [ParenList((Atom("a"), String(b"()", literal=True), Atom("b")))]


def test_literal_split_byte_by_byte() -> None:
    data = b"a1 APPEND Sent (\\Seen) {12+}\r\nhello\r\nworld x {2+}\r\n\r\n\r\nb2 NOOP\r\n"
    r = CommandReader()
    events: list[Event] = []
    for i in range(len(data)):
        events += r.feed(data[i : i + 1])
    assert events == [
        RawCommand(
            "a1",
            "APPEND",
            [
                Atom("Sent"),
                ParenList((Atom("\\Seen"),)),
                String(b"hello\r\nworld", literal=True),
                Atom("x"),
                String(b"\r\n", literal=True),
            ],
        ),
        RawCommand("b2", "NOOP", []),
    ]


def test_big_literal_in_chunks() -> None:
    body = bytes(range(1, 256)) * 40_000  # ~10 MB, no NUL
    r = CommandReader()
    assert r.feed(b"a APPEND INBOX {%d}\r\n" % len(body)) == [NeedContinuation("a", len(body))]
    events: list[Event] = []
    for i in range(0, len(body), 65536):
        events += r.feed(body[i : i + 65536])
    assert events == []
    (c,) = r.feed(b"\r\n")
    assert isinstance(c, RawCommand) and c.args[1] == String(body, literal=True)


def test_long_line_byte_by_byte_is_not_quadratic() -> None:
    r = CommandReader()
    line = b"a X " + b"x" * 60_000 + b"\r\n"
    events: list[Event] = []
    for i in range(len(line)):
        events += r.feed(line[i : i + 1])
    assert events == [RawCommand("a", "X", [Atom("x" * 60_000)])]


def test_pipelined_commands_in_one_feed() -> None:
    r = CommandReader()
    evs = r.feed(b"a NOOP\r\nb CHECK\r\nc LOGOUT\r\nd NO")
    assert [e.tag for e in evs if isinstance(e, RawCommand)] == ["a", "b", "c"]
    assert r.feed(b"OP\r\n") == [RawCommand("d", "NOOP", [])]


def test_nul_in_plain_literal_is_refused_and_rest_skipped() -> None:
    r = CommandReader()
    assert r.feed(b"a APPEND x {3+}\r\na\x00b more {2+}\r\nzz\r\n") == [
        Malformed("a", "NUL in literal (use literal8 ~{n})")
    ]
    assert_alive(r)


# -- limits and hostile input --


def test_giant_sync_literal_refused_before_continuation() -> None:
    r = CommandReader()
    ev = bad(b"a APPEND x {99999999999}\r\n", r)
    assert ev.tag == "a" and "too big" in ev.reason and not ev.fatal
    assert_alive(r)  # the client never sends the literal


def test_absurd_literal_digits_do_not_crash() -> None:
    r = CommandReader()
    ev = bad(b"a X {" + b"9" * 5000 + b"}\r\n", r)
    assert "too big" in ev.reason
    assert_alive(r)


def test_literal_plus_too_big_is_skipped() -> None:
    r = CommandReader(max_literal=10, max_skip=100)
    assert r.feed(b"a APPEND x {50+}\r\n") == [Malformed("a", "literal too big (max 10 octets)")]
    # the 50 literal bytes look like commands: they must be swallowed, not parsed
    assert r.feed(b"b1 DELETE INBOX\r\n" * 2 + b"b1 DELETE I") == []
    assert r.feed(b"NBOX {3+}\r\nxyz tail\r\n") == []
    assert_alive(r)


def test_literal_plus_beyond_skip_limit_is_fatal() -> None:
    r = CommandReader(max_literal=10, max_skip=100)
    ev = bad(b"a APPEND x {99999999999+}\r\n", r)
    assert ev.fatal and ev.tag == "a"
    assert r.closed
    assert r.feed(b"b NOOP\r\n") == []


def test_total_literals_per_command_are_bounded() -> None:
    r = CommandReader(max_literal=10, max_command=15)
    assert r.feed(b"a APPEND x {10+}\r\n0123456789 {10}\r\n") == [
        Malformed("a", "literal too big (max 10 octets)")
    ]
    assert_alive(r)


def test_unterminated_literal_then_eof_keeps_waiting() -> None:
    r = CommandReader()
    assert r.feed(b"a APPEND x {1000}\r\n") == [NeedContinuation("a", 1000)]
    assert r.feed(b"x" * 999) == []  # EOF now: nothing happens, nothing crashes


def test_deep_parentheses_no_recursion() -> None:
    r = CommandReader()
    ev = bad(b"a X " + b"(" * 10_000 + b")" * 10_000 + b"\r\n", r)
    assert ev.tag == "a" and "nested" in ev.reason
    assert_alive(r)


def test_depth_limit_exact() -> None:
    r = CommandReader(max_depth=3)
    assert cmd(b"a X (((x)))\r\n", r).args
    assert "nested" in bad(b"a X ((((x))))\r\n", r).reason


def test_too_many_tokens() -> None:
    r = CommandReader(max_tokens=100)
    assert "too many" in bad(b"a X" + b" x" * 101 + b"\r\n", r).reason
    assert_alive(r)


def test_very_long_line_without_end() -> None:
    r = CommandReader(max_line=1000)
    evs = r.feed(b"t1 X " + b"a" * 600)
    assert evs == []
    assert r.feed(b"a" * 600) == [Malformed("t1", "command line too long")]
    assert r.feed(b"a" * 100_000) == []  # discarded, not buffered
    assert len(r._buf) == 0
    assert r.feed(b"aaa\r\n") == []
    assert_alive(r)


def test_long_line_in_one_feed() -> None:
    r = CommandReader(max_line=1000)
    ev = bad(b"t1 X " + b"a" * 2000 + b"\r\n", r)
    assert ev == Malformed("t1", "command line too long")
    assert_alive(r)


def test_long_line_ending_in_literal_plus_skips_it() -> None:
    r = CommandReader(max_line=100)
    assert r.feed(b"t X " + b"a" * 200 + b" {9+}\r\n") == [Malformed("t", "command line too long")]
    assert r.feed(b"b NOOP\r\n tail\r\n") == []  # 9 literal bytes, then the line rest
    assert_alive(r)


@pytest.mark.parametrize(
    ("line", "tag", "reason"),
    [
        (b"\r\n", None, "empty command line"),
        (b"NOOP\r\n", "NOOP", "missing command name"),
        (b"(x NOOP\r\n", None, "missing or invalid tag"),
        (b"a+ NOOP\r\n", None, "invalid tag"),
        (b"a (x\r\n", "a", "invalid command name"),
        (b'a LOGIN "bob\r\n', "a", "unterminated quoted string"),
        (b'a LOGIN "b\\ob"\r\n', "a", 'invalid escape in quoted string (only \\" and \\\\)'),
        (b'a LOGIN "b\x00b"\r\n', "a", "NUL in quoted string"),
        (b"a X a\rb\r\n", "a", "bare CR in command line"),
        (b"a X caf\xc3\xa9\r\n", "a", "8-bit character outside a quoted string or literal"),
        (b"a X a\x00b\r\n", "a", "NUL character in command"),
        (b"a X \x07\r\n", "a", "unexpected control character 0x07"),
        (b"a X (a\r\n", "a", "unclosed parenthesis"),
        (b"a X a)\r\n", "a", "unbalanced ')'"),
        (b'a X a"b"\r\n', "a", "missing space between arguments"),
        (b"a X {3} x\r\n", "a", "invalid literal (a literal must end the line)"),
        (b"a X x{3}\r\n", "a", "missing space before literal"),
    ],
)
def test_malformed_lines_then_resync(line: bytes, tag: str | None, reason: str) -> None:
    r = CommandReader()
    assert r.feed(line) == [Malformed(tag, reason)]
    assert_alive(r)


def test_garbage_and_nul_bytes() -> None:
    r = CommandReader()
    evs = r.feed(bytes(range(256)) * 4 + b"\r\n\x00\x00\r\n\xff\xfe\r\n")
    assert evs and all(isinstance(e, Malformed) and not e.fatal for e in evs)
    assert_alive(r)


def test_bad_command_does_not_disturb_next_in_same_feed() -> None:
    r = CommandReader()
    evs = r.feed(b'a X "oops\r\nb NOOP\r\nc X ((\r\nd CHECK\r\n')
    assert [type(e).__name__ for e in evs] == ["Malformed", "RawCommand", "Malformed", "RawCommand"]


# -- real client lines --


THUNDERBIRD = (
    b"5 UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc"
    b" Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To"
    b" Content-Type Reply-To)])\r\n"
)


def test_thunderbird_header_fetch() -> None:
    c = cmd(THUNDERBIRD)
    assert (c.tag, c.name, c.args[0]) == ("5", "UID", Atom("FETCH"))
    assert SequenceSet.parse(atom(c.args[1])).resolve(7).ranges == ((1, 7),)
    req = parse_fetch(c.args[2:])
    assert req.items[:3] == (Attr.UID, Attr.RFC822_SIZE, Attr.FLAGS)
    body = req.items[3]
    assert isinstance(body, BodySection) and body.peek and body.partial is None
    assert body.section.text == "HEADER.FIELDS"
    assert body.section.fields[0] == "From" and body.section.fields[-1] == "Reply-To"
    assert len(body.section.fields) == 14
    assert body.response_name.startswith("BODY[HEADER.FIELDS (From To Cc ")
    assert not req.sets_seen


def test_uid_store_silent() -> None:
    c = cmd(b"8 UID STORE 5 +FLAGS.SILENT (\\Seen)\r\n")
    assert c.args == [Atom("STORE"), Atom("5"), Atom("+FLAGS.SILENT"), ParenList((Atom("\\Seen"),))]


def test_append_sent_with_literal() -> None:
    msg = b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n"
    r = CommandReader()
    header = b'9 APPEND Sent (\\Seen) "21-Nov-2024 13:49:01 +0100" {%d}\r\n' % len(msg)
    assert r.feed(header) == [NeedContinuation("9", len(msg))]
    (c,) = r.feed(msg + b"\r\n")
    assert isinstance(c, RawCommand) and c.name == "APPEND"
    assert c.args == [
        Atom("Sent"),
        ParenList((Atom("\\Seen"),)),
        String(b"21-Nov-2024 13:49:01 +0100"),
        String(msg, literal=True),
    ]


def test_search_charset_with_literal_plus() -> None:
    c = cmd("10 SEARCH CHARSET UTF-8 TEXT {3+}\r\nüb\r\n".encode())
    assert c.args == [
        Atom("CHARSET"),
        Atom("UTF-8"),
        Atom("TEXT"),
        String("üb".encode(), literal=True),
    ]


def test_imapclient_select_condstore() -> None:
    c = cmd(b'BEFE3 SELECT "INBOX" (CONDSTORE)\r\n')
    assert c == RawCommand("BEFE3", "SELECT", [String(b"INBOX"), ParenList((Atom("CONDSTORE"),))])


def test_fetch_body_section_atoms_stay_split_for_fetch_parser() -> None:
    c = cmd(b"a FETCH 1 (BODY[1.2.HEADER.FIELDS.NOT (X-A)]<0.10> BODY[])\r\n")
    (lst,) = c.args[1:]
    assert isinstance(lst, ParenList)
    assert lst.items == (
        Atom("BODY[1.2.HEADER.FIELDS.NOT"),
        ParenList((Atom("X-A"),)),
        Atom("]<0.10>"),
        Atom("BODY[]"),
    )
    req = parse_fetch(c.args[1:])
    assert req.items == (
        BodySection(Section((1, 2), "HEADER.FIELDS.NOT", ("X-A",)), Partial(0, 10)),
        BodySection(Section()),
    )


def test_one_command_at_a_time_keeps_the_rest_buffered() -> None:
    r = CommandReader()
    events = r.feed(b"a IDLE\r\nDONE\r\nb NOOP\r\n", one_command=True)
    assert [e.name for e in events if isinstance(e, RawCommand)] == ["IDLE"]
    assert r.take_buffer() == b"DONE\r\nb NOOP\r\n"  # IDLE reads its DONE line itself
    r.unread(b"b NOOP\r\n")
    events = r.feed(b"", one_command=True)
    assert [e.name for e in events if isinstance(e, RawCommand)] == ["NOOP"]
    assert not r.mid_command


def test_mid_command_while_a_literal_is_pending() -> None:
    r = CommandReader()
    r.feed(b"a LOGIN {5}\r\n")
    assert r.mid_command
    r.feed(b"alice x\r\n")
    assert not r.mid_command


def test_discard_buffer_after_starttls() -> None:
    r = CommandReader()
    events = r.feed(b"a STARTTLS\r\nb LOGIN x y\r\n", one_command=True)
    assert len(events) == 1
    assert r.discard_buffer() == len(b"b LOGIN x y\r\n")
    assert r.feed(b"", one_command=True) == []
