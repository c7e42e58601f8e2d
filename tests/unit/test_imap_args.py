"""Typed command arguments (args.py, listing.py), fed through the real CommandReader."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mailwarden.imap.wire.args import (
    CopyRequest,
    CreateRequest,
    QResync,
    SelectRequest,
    StatusRequest,
    parse_copy,
    parse_create,
    parse_enable,
    parse_getquota,
    parse_getquotaroot,
    parse_id,
    parse_select,
    parse_status,
)
from mailwarden.imap.wire.listing import ListRequest, parse_list, pattern_matches
from mailwarden.imap.wire.message_args import (
    AppendRequest,
    StoreRequest,
    parse_append,
    parse_date_time,
    parse_flag,
    parse_store,
)
from mailwarden.imap.wire.reader import CommandReader, NeedContinuation, RawCommand
from mailwarden.imap.wire.sequence import SequenceSet
from mailwarden.imap.wire.tokens import Atom, ImapSyntaxError, String


def cmd(line: bytes, *literals: bytes) -> RawCommand:
    """Feed a command line and (after each "+") its literals; return the command."""
    reader = CommandReader()
    events = reader.feed(line)
    for lit in literals:
        assert isinstance(events[-1], NeedContinuation), events
        events = reader.feed(lit)
    assert len(events) == 1, events
    ev = events[0]
    assert isinstance(ev, RawCommand), ev
    return ev


S = SequenceSet.parse


# -- STORE --


def test_store_thunderbird_silent_add() -> None:
    c = cmd(b"18 UID STORE 4:7 +FLAGS.SILENT (\\Seen)\r\n")
    assert parse_store(c.args[1:]) == StoreRequest(S("4:7"), "add", ("\\Seen",), silent=True)


def test_store_apple_mail_keywords_and_condstore() -> None:
    c = cmd(b"7.12 UID STORE 10 (UNCHANGEDSINCE 4711) FLAGS ($Junk \\flagged $MailFlagBit0)\r\n")
    req = parse_store(c.args[1:])
    assert req == StoreRequest(
        S("10"), "replace", ("$Junk", "\\Flagged", "$MailFlagBit0"), unchangedsince=4711
    )


def test_store_single_flags_without_list_and_empty_list() -> None:
    assert parse_store(cmd(b"a STORE 1 -flags \\Deleted \\Seen\r\n").args).flags == (
        "\\Deleted",
        "\\Seen",
    )
    req = parse_store(cmd(b"a STORE 1:* FLAGS ()\r\n").args)
    assert req.mode == "replace" and req.flags == ()
    assert parse_store(cmd(b"a STORE $ +FLAGS (\\Seen)\r\n").args).numbers.saved


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"a STORE 1\r\n", "needs a sequence set and flags"),
        (b"a STORE x FLAGS (\\Seen)\r\n", "invalid sequence set"),
        (b"a STORE 1 FLAGS\r\n", "needs a flag list"),
        (b"a STORE 1 FLAGS (\\Seen) (\\Draft)\r\n", "needs a flag list"),
        (b"a STORE 1 *FLAGS (\\Seen)\r\n", "FLAGS, \\+FLAGS or -FLAGS"),
        (b"a STORE 1 FLAGS.LOUD (\\Seen)\r\n", "FLAGS, \\+FLAGS or -FLAGS"),
        (b"a STORE 1 +FLAGS (\\Recent)\r\n", "\\\\Recent cannot be stored"),
        (b"a STORE 1 +FLAGS (\\Important)\r\n", "unknown system flag"),
        (b'a STORE 1 +FLAGS ("x")\r\n', "expected a flag"),
        (b"a STORE 1 +FLAGS (a]b)\r\n", "invalid keyword"),
        (b"a STORE 1 (UNCHANGEDSINCE) FLAGS (\\Seen)\r\n", "unknown STORE modifier"),
        (b"a STORE 1 (FOO 1) FLAGS (\\Seen)\r\n", "unknown STORE modifier"),
        (b"a STORE 1 (UNCHANGEDSINCE -1) FLAGS (\\Seen)\r\n", "invalid number"),
    ],
)
def test_store_errors(line: bytes, reason: str) -> None:
    with pytest.raises(ImapSyntaxError, match=reason):
        parse_store(cmd(line).args)


def test_parse_flag_canonical_case() -> None:
    assert parse_flag(Atom("\\SEEN")) == "\\Seen"
    assert parse_flag(Atom("NonJunk")) == "NonJunk"


# -- APPEND --


def test_append_thunderbird_with_flags_and_date() -> None:
    c = cmd(
        b'9 APPEND "Sent" (\\Seen) "21-Nov-2026 14:03:07 +0100" {5}\r\n',
        b"hello\r\n",
    )
    req = parse_append(c.args)
    when = datetime(2026, 11, 21, 14, 3, 7, tzinfo=timezone(timedelta(hours=1)))
    assert req == AppendRequest(b"Sent", b"hello", ("\\Seen",), when)
    assert req.internal_date is not None and req.internal_date.utcoffset() == timedelta(hours=1)


def test_append_minimal_nonsync_and_empty_flags() -> None:
    c = CommandReader().feed(b"a APPEND INBOX () {3+}\r\nabc\r\n")
    assert isinstance(c[0], RawCommand)
    assert parse_append(c[0].args) == AppendRequest(b"INBOX", b"abc")


def test_append_literal8_and_utf8() -> None:
    c = CommandReader().feed(b"a APPEND Drafts ~{2+}\r\n\x00x\r\n")
    assert isinstance(c[0], RawCommand)
    assert parse_append(c[0].args).binary
    c = CommandReader().feed(
        b'a APPEND INBOX (\\Draft) " 1-Jan-2020 00:00:00 -0530" UTF8 (~{4+}\r\nh\xc3\xa9!)\r\n'
    )
    assert isinstance(c[0], RawCommand)
    req = parse_append(c[0].args)
    assert req.utf8 and req.binary and req.message == "hé!".encode()
    assert req.internal_date == datetime(
        2020, 1, 1, tzinfo=timezone(-timedelta(hours=5, minutes=30))
    )


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"a APPEND INBOX\r\n", "needs a mailbox and a message"),
        (b'a APPEND INBOX "hello"\r\n', "invalid date-time"),
        (b"a APPEND INBOX hello\r\n", "as a literal"),
        (b"a APPEND INBOX (\\Recent) {1+}\r\nx\r\n", "cannot be stored"),
        (b"a APPEND INBOX UTF8 ({1+}\r\nx)\r\n", "as a literal"),
        (b"a APPEND INBOX {1+}\r\nx {1+}\r\ny\r\n", "as a literal"),
        (b"a APPEND (x) {1+}\r\nx\r\n", "expected an atom or string"),
    ],
)
def test_append_errors(line: bytes, reason: str) -> None:
    ev = CommandReader().feed(line)
    assert isinstance(ev[0], RawCommand), ev
    with pytest.raises(ImapSyntaxError, match=reason):
        parse_append(ev[0].args)


@pytest.mark.parametrize(
    "text",
    [
        "1-Jan-2020 00:00:00 +0000",  # date-day-fixed needs two characters
        "01-Jan-2020 00:00 +0000",
        "31-Feb-2020 00:00:00 +0000",
        "01-Jan-2020 24:00:00 +0000",
        "01-Jan-2020 00:00:00 +0060",
        "01-Foo-2020 00:00:00 +0000",
        " 0-Jan-2020 00:00:00 +0000",
    ],
)
def test_bad_date_times(text: str) -> None:
    with pytest.raises(ImapSyntaxError, match="invalid"):
        parse_date_time(String(text.encode()))


def test_date_time_must_be_quoted() -> None:
    with pytest.raises(ImapSyntaxError, match="quoted"):
        parse_date_time(Atom("x"))


# -- STATUS, SELECT, ENABLE, CREATE, COPY, ID, quota --


def test_status_items() -> None:
    c = cmd(b'a STATUS "INBOX" (UIDNEXT messages UNSEEN HIGHESTMODSEQ SIZE UNSEEN)\r\n')
    assert parse_status(c.args) == StatusRequest(
        b"INBOX", ("UIDNEXT", "MESSAGES", "UNSEEN", "HIGHESTMODSEQ", "SIZE")
    )
    with pytest.raises(ImapSyntaxError, match="unknown STATUS item"):
        parse_status(cmd(b"a STATUS INBOX (COLOUR)\r\n").args)
    with pytest.raises(ImapSyntaxError, match="empty STATUS"):
        parse_status(cmd(b"a STATUS INBOX ()\r\n").args)
    with pytest.raises(ImapSyntaxError, match="needs a mailbox"):
        parse_status(cmd(b"a STATUS INBOX\r\n").args)


def test_select_plain_condstore_qresync() -> None:
    assert parse_select(cmd(b"a SELECT INBOX\r\n").args) == SelectRequest(b"INBOX")
    assert parse_select(cmd(b"a EXAMINE Archive (CONDSTORE)\r\n").args).condstore
    c = cmd(b"A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n")
    assert parse_select(c.args).qresync == QResync(
        67890007, 20050715194045000, S("41,43:211,214:541")
    )
    c = cmd(
        b"B04 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 "
        b"(5000,7500,9000,9990:9999 15000,22500,27000,29970,29973,29976:29997)))\r\n"
    )
    q = parse_select(c.args).qresync
    assert q is not None and q.known_seqs == S("5000,7500,9000,9990:9999")
    assert q.known_seq_uids == S("15000,22500,27000,29970,29973,29976:29997")
    c = cmd(b"a SELECT INBOX (QRESYNC (1 2 (1:3 4:6)))\r\n")
    assert parse_select(c.args).qresync == QResync(1, 2, None, S("1:3"), S("4:6"))


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"a SELECT\r\n", "needs a mailbox"),
        (b"a SELECT INBOX (FOO)\r\n", "unknown SELECT parameter"),
        (b"a SELECT INBOX (CONDSTORE CONDSTORE)\r\n", "unknown SELECT parameter"),
        (b"a SELECT INBOX (QRESYNC)\r\n", "unknown SELECT parameter"),
        (b"a SELECT INBOX (QRESYNC (1))\r\n", "invalid QRESYNC"),
        (b"a SELECT INBOX (QRESYNC (0 1))\r\n", "out of range"),
        (b"a SELECT INBOX (QRESYNC (1 0))\r\n", "out of range"),
        (b"a SELECT INBOX (QRESYNC (1 2 $))\r\n", "not allowed"),
        (b"a SELECT INBOX (QRESYNC (1 2 1:5 (1:3)))\r\n", "sequence match"),
        (b"a SELECT INBOX CONDSTORE\r\n", "parenthesised list"),
    ],
)
def test_select_errors(line: bytes, reason: str) -> None:
    with pytest.raises(ImapSyntaxError, match=reason):
        parse_select(cmd(line).args)


def test_enable() -> None:
    assert parse_enable(cmd(b"a ENABLE QRESYNC condstore QRESYNC\r\n").args) == (
        "QRESYNC",
        "CONDSTORE",
    )
    with pytest.raises(ImapSyntaxError, match="needs a capability"):
        parse_enable([])
    with pytest.raises(ImapSyntaxError, match="capability names"):
        parse_enable(cmd(b'a ENABLE "UTF8=ACCEPT"\r\n').args)


def test_create() -> None:
    assert parse_create(cmd(b"a CREATE Work/Projects\r\n").args) == CreateRequest(b"Work/Projects")
    c = cmd(b'a CREATE "Sent Items" (USE (\\sent \\Archive \\Important))\r\n')
    assert parse_create(c.args) == CreateRequest(
        b"Sent Items", ("\\Sent", "\\Archive", "\\Important")
    )
    for line, reason in [
        (b"a CREATE\r\n", "needs a mailbox"),
        (b"a CREATE x (FOO (\\Sent))\r\n", "unknown CREATE parameter"),
        (b"a CREATE x (USE (Sent))\r\n", "invalid special-use"),
        (b"a CREATE x (USE \\Sent)\r\n", "parenthesised list"),
    ]:
        with pytest.raises(ImapSyntaxError, match=reason):
            parse_create(cmd(line).args)


def test_copy_move() -> None:
    c = cmd(b'a UID MOVE 42:44 "[Gmail]/Trash"\r\n')
    assert parse_copy(c.args[1:]) == CopyRequest(S("42:44"), b"[Gmail]/Trash")
    with pytest.raises(ImapSyntaxError, match="sequence set and a mailbox"):
        parse_copy(cmd(b"a COPY 1\r\n").args)
    with pytest.raises(ImapSyntaxError, match="expected a sequence set"):
        parse_copy(cmd(b'a COPY "1" x\r\n').args)
    with pytest.raises(ImapSyntaxError, match="expected a mailbox name"):
        parse_copy([Atom("1"), String(b"x", literal=True, binary=True)])


def test_id_clients() -> None:
    c = cmd(b'a ID ("name" "Thunderbird" "version" "115.3.1")\r\n')
    assert parse_id(c.args) == {"name": b"Thunderbird", "version": b"115.3.1"}
    c = cmd(b'a ID ("NAME" "K-9 Mail" "support-url" NIL)\r\n')
    assert parse_id(c.args) == {"name": b"K-9 Mail", "support-url": None}
    assert parse_id(cmd(b"a ID NIL\r\n").args) is None
    assert parse_id(cmd(b"a ID ()\r\n").args) == {}
    for line, reason in [
        (b'a ID ("name")\r\n', "pairs"),
        (b"a ID\r\n", "one argument"),
        (b'a ID ("' + b"k" * 31 + b'" "v")\r\n', "too long"),
        (b'a ID ("k" "' + b"v" * 1025 + b'")\r\n', "too long"),
        (b"a ID (" + b'"k" "v" ' * 31 + b")\r\n", "too many"),
        (b'a ID ("k" ("v"))\r\n', "string or NIL"),
    ]:
        with pytest.raises(ImapSyntaxError, match=reason):
            parse_id(cmd(line).args)


def test_quota() -> None:
    assert parse_getquotaroot(cmd(b"a GETQUOTAROOT INBOX\r\n").args) == b"INBOX"
    assert parse_getquota(cmd(b'a GETQUOTA ""\r\n').args) == b""
    with pytest.raises(ImapSyntaxError, match="takes a mailbox"):
        parse_getquotaroot([])
    with pytest.raises(ImapSyntaxError, match="takes a quota root"):
        parse_getquota(cmd(b"a GETQUOTA a b\r\n").args)


# -- LIST --


def test_list_classic_clients() -> None:
    assert parse_list(cmd(b'a LIST "" "*"\r\n').args) == ListRequest(b"", (b"*",))
    assert parse_list(cmd(b'a LIST "" %\r\n').args).patterns == (b"%",)
    c = cmd(b'a LIST "INBOX/" "%/[x]*"\r\n')
    assert parse_list(c.args) == ListRequest(b"INBOX/", (b"%/[x]*",))


def test_list_extended_apple_and_thunderbird() -> None:
    c = cmd(b'a LIST (SPECIAL-USE) "" "*" RETURN (SUBSCRIBED CHILDREN)\r\n')
    req = parse_list(c.args)
    assert req.select == {"SPECIAL-USE"} and req.returns == {"SUBSCRIBED", "CHILDREN"}
    assert req.extended
    c = cmd(b'a LIST "" "*" RETURN (SPECIAL-USE STATUS (MESSAGES UNSEEN UIDNEXT))\r\n')
    req = parse_list(c.args)
    assert req.returns == {"SPECIAL-USE", "STATUS"}
    assert req.status_items == ("MESSAGES", "UNSEEN", "UIDNEXT")
    c = cmd(b'a LIST (SUBSCRIBED RECURSIVEMATCH REMOTE) "" ("INBOX" "Work/%")\r\n')
    req = parse_list(c.args)
    assert req.patterns == (b"INBOX", b"Work/%")
    assert req.select == {"SUBSCRIBED", "RECURSIVEMATCH", "REMOTE"}
    assert parse_list(cmd(b'a LIST () "" x RETURN ()\r\n').args) == ListRequest(
        b"", (b"x",), extended=True
    )


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'a LIST ""\r\n', "needs a reference"),
        (b'a LIST (FOO) "" *\r\n', "unknown LIST selection option"),
        (b'a LIST (RECURSIVEMATCH) "" *\r\n', "RECURSIVEMATCH needs"),
        (b'a LIST "" ()\r\n', "empty LIST pattern"),
        (b'a LIST "" (a (b))\r\n', "expected a mailbox pattern"),
        (b'a LIST "" * EXTRA\r\n', "unexpected LIST arguments"),
        (b'a LIST "" * RETURN CHILDREN\r\n', "RETURN needs"),
        (b'a LIST "" * RETURN (FOO)\r\n', "unknown LIST return option"),
        (b'a LIST "" * RETURN (CHILDREN CHILDREN)\r\n', "unknown LIST return option"),
        (b'a LIST "" * RETURN (STATUS)\r\n', "STATUS needs"),
        (b'a LIST "" * RETURN (STATUS (FOO))\r\n', "unknown STATUS item"),
    ],
)
def test_list_errors(line: bytes, reason: str) -> None:
    with pytest.raises(ImapSyntaxError, match=reason):
        parse_list(cmd(line).args)


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("*", "a/b/c", True),
        ("%", "a", True),
        ("%", "a/b", False),
        ("a/%", "a/b", True),
        ("a/%", "a/b/c", False),
        ("a/*", "a/b/c", True),
        ("a*", "a", True),
        ("a%", "a/b", False),
        ("%/%", "a/b", True),
        ("*/c", "a/b/c", True),
        ("*/c", "a/b/d", False),
        ("INBOX", "INBOX", True),
        ("INBOX", "inbox", False),  # case folding of INBOX is the session's job
        ("", "", True),
        ("", "a", False),
        ("a%*%b", "a/x/b", True),
        ("a%%b", "a/b", False),
        ("%*", "x/y", True),
        ("a.b", "a.b", True),
        ("a.b", "axb", False),  # no regex semantics
        ("[x]", "[x]", True),
    ],
)
def test_pattern_matches(pattern: str, name: str, expected: bool) -> None:
    assert pattern_matches(pattern, name) is expected


def test_pattern_delimiter() -> None:
    assert pattern_matches("a.%", "a.b", delimiter=".")
    assert not pattern_matches("a.%", "a.b.c", delimiter=".")
    assert pattern_matches("a/%", "a/b/c", delimiter=".")


def test_pattern_matches_has_no_backtracking_blowup() -> None:
    pattern = "%a" * 2_000 + "b"
    name = "a" * 20_000
    assert not pattern_matches(pattern, name)
    assert not pattern_matches("*a" * 2_000 + "b", name)
