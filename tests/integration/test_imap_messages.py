"""IMAP messages: delivery over SMTP then FETCH, flags, COPY/MOVE, EXPUNGE, APPEND,
SEARCH/SORT/THREAD, CONDSTORE/QRESYNC — with imapclient and imaplib, on SQLite and
PostgreSQL where storage matters."""

from __future__ import annotations

import imaplib
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from imapclient import IMAPClient
from imapfix import append, client, connect, deliver, imap_server, message, ok

from mwserver import ServerThread, postgres_database

MakeServer = Callable[..., ServerThread]


@pytest.fixture
def srv(make_server: MakeServer) -> ServerThread:
    return imap_server(make_server)


@pytest.fixture(params=["sqlite", "postgresql"])
def both(request: pytest.FixtureRequest, make_server: MakeServer) -> Iterator[ServerThread]:
    if request.param == "sqlite":
        yield imap_server(make_server)
        return
    with postgres_database() as url:
        srv = imap_server(make_server, url=url)
        yield srv
        srv.stop()


def test_delivered_mail_is_read_over_imap(both: ServerThread) -> None:
    raw = message("Delivered over SMTP")
    deliver(both, raw)
    c = client(both)
    info = c.select_folder("INBOX")
    assert info[b"EXISTS"] == 1 and info[b"RECENT"] == 1
    data = c.fetch([1], ["UID", "FLAGS", "RFC822.SIZE", "ENVELOPE", "BODY.PEEK[]"])
    msg = data[1]
    assert msg[b"ENVELOPE"].subject == b"Delivered over SMTP"
    body = msg[b"BODY[]"]
    assert body.endswith(raw) and body.startswith(b"Received:")  # trace header on top
    assert msg[b"RFC822.SIZE"] == len(body)
    assert b"\\Seen" not in msg[b"FLAGS"]
    c.fetch([1], ["BODY[TEXT]"])  # not PEEK: sets \Seen
    assert b"\\Seen" in c.get_flags([1])[1]
    c.logout()


def test_flags_store_and_keywords(both: ServerThread) -> None:
    m = connect(both)
    for i in range(3):
        append(m, message(f"m{i}"))
    ok(m.select("INBOX"))
    typ, data = m.store("1:2", "+FLAGS", "(\\Flagged $Important)")
    assert typ == "OK" and len(data) == 2 and b"$Important" in data[0]
    typ, data = m.store("2", "-FLAGS.SILENT", "(\\Flagged)")
    assert typ == "OK" and data == [None]
    typ, data = m.fetch("1:3", "(FLAGS)")
    flags = [re.search(rb"FLAGS \(([^)]*)\)", d).group(1) for d in data]  # type: ignore[union-attr]
    assert b"\\Flagged" in flags[0] and b"\\Flagged" not in flags[1] and b"$Important" in flags[1]
    typ, data = m.store("3", "FLAGS", "(\\Answered)")
    assert b"\\Answered" in data[0]
    with pytest.raises(imaplib.IMAP4.error, match="Recent"):
        m.store("1", "+FLAGS", "(\\Recent)")
    m.logout()


def test_copy_move_expunge_with_uidplus(both: ServerThread) -> None:
    m = connect(both)
    uids = [append(m, message(f"m{i}")) for i in range(4)]
    ok(m.create("Archive/2026"))
    ok(m.select("INBOX"))
    typ, data = m.uid("COPY", f"{uids[0]}:{uids[1]}", "Archive/2026")
    assert typ == "OK"
    copyuid = m.untagged_responses.pop("COPYUID")[0]  # imaplib keeps response codes here
    assert re.fullmatch(rb"\d+ 1:2 1:2", copyuid)
    typ, data = m.uid("MOVE", str(uids[2]), "Trash")
    assert typ == "OK"
    assert m.untagged_responses.pop("EXPUNGE") == [b"3"]
    assert re.fullmatch(rb"\d+ 3 1", m.untagged_responses.pop("COPYUID")[0])
    typ, data = m.copy("1", "Nowhere")
    assert typ == "NO" and b"TRYCREATE" in data[0]
    ok(m.store("1", "+FLAGS", "(\\Deleted)"))
    typ, data = m.expunge()
    assert data == [b"1"]
    assert ok(m.select("INBOX"))[0] == b"2"
    assert ok(m.select("Trash"))[0] == b"1"
    assert ok(m.select("Archive/2026"))[0] == b"2"
    m.logout()


def test_uid_expunge_only_touches_the_given_uids(srv: ServerThread) -> None:
    m = connect(srv)
    uids = [append(m, message(f"m{i}"), flags="(\\Deleted)") for i in range(3)]
    ok(m.select("INBOX"))
    typ, data = m.uid("EXPUNGE", str(uids[1]))
    assert typ == "OK" and m.untagged_responses.pop("EXPUNGE") == [b"2"]
    typ, data = m.uid("SEARCH", "ALL")
    assert data[0].split() == [str(uids[0]).encode(), str(uids[2]).encode()]
    m.logout()


def test_uids_are_never_reused(both: ServerThread) -> None:
    m = connect(both)
    first = append(m, message("first"), flags="(\\Deleted)")
    ok(m.select("INBOX"))
    ok(m.expunge())
    second = append(m, message("second"))
    assert second > first
    m.logout()


def test_append_keeps_flags_and_internal_date(srv: ServerThread) -> None:
    c = client(srv)
    when = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    result = c.append("Drafts", message("draft"), flags=[b"\\Draft", b"\\Seen"], msg_time=when)
    assert b"APPENDUID" in result
    c.select_folder("Drafts")
    data = c.fetch([1], ["FLAGS", "INTERNALDATE"])[1]
    assert set(data[b"FLAGS"]) == {b"\\Draft", b"\\Seen", b"\\Recent"}
    assert data[b"INTERNALDATE"].replace(tzinfo=None) == when.replace(tzinfo=None)
    with pytest.raises(IMAPClient.Error, match="TRYCREATE"):
        c.append("Missing", message("x"))
    c.logout()


def test_examine_is_read_only_and_close_expunges(srv: ServerThread) -> None:
    m = connect(srv)
    append(m, message("keep"))
    append(m, message("drop"), flags="(\\Deleted)")
    ok(m.select("INBOX", readonly=True))
    typ, _ = m.store("1", "+FLAGS", "(\\Seen)")
    assert typ == "NO"
    ok(m.fetch("1", "(BODY[])"))  # a read-only FETCH does not set \Seen
    ok(m.select("INBOX"))
    assert b"\\Seen" not in m.fetch("1", "(FLAGS)")[1][0]
    ok(m.close())
    assert ok(m.select("INBOX"))[0] == b"1"
    m.logout()


def test_search_keys(both: ServerThread) -> None:
    m = connect(both)
    append(m, message("Invoice 42", body="Please pay the amount.\r\n"), flags="(\\Seen)")
    append(m, message("Lunch?", body="Grüße aus Köln\r\n", Cc="dave@example.org"))
    append(m, message("Re: Invoice 42", body="Paid.\r\n"), flags="(\\Flagged)")
    ok(m.select("INBOX"))

    def search(*criteria: str) -> list[int]:
        typ, data = (
            m.search("CHARSET", "UTF-8", *criteria)
            if any(not c.isascii() for c in criteria)
            else m.search(None, *criteria)
        )
        assert typ == "OK", data
        return [int(n) for n in data[0].split()]

    assert search("ALL") == [1, 2, 3]
    assert search("SUBJECT", '"invoice"') == [1, 3]
    assert search("UNSEEN") == [2, 3]
    assert search("FLAGGED") == [3]
    assert search("NOT", "FLAGGED", "UNSEEN") == [2]
    assert search("OR", "SEEN", "FLAGGED") == [1, 3]
    assert search("BODY", '"pay the"') == [1]
    assert search("TEXT", '"dave@example"') == [2]
    assert search("CC", "dave") == [2]
    assert search("HEADER", "Cc", '""') == [2]
    assert search("FROM", "carol") == [1, 2, 3]
    assert search("LARGER", "100", "SMALLER", "100000") == [1, 2, 3]
    assert search("SENTON", "1-Dec-2026") == [1, 2, 3]
    assert search("SINCE", "1-Jan-2100") == []
    assert search("2:*") == [2, 3]
    typ, data = m.search(None, "UID", "2")
    assert data == [b"2"]
    typ, data = m.search("KOI8-X", "ALL")
    assert typ == "NO" and b"BADCHARSET" in data[0]
    with pytest.raises(imaplib.IMAP4.error):
        m.search(None, "FOO")
    m.logout()
    c = client(both)
    c.select_folder("INBOX")
    assert c.search(["BODY", "Köln"], charset="UTF-8") == [2]  # sent as a UTF-8 literal
    assert c.search(["TEXT", "AUS KÖLN"], charset="UTF-8") == [2]  # case-insensitive
    assert c.search(["SUBJECT", "LUNCH"], charset="UTF-8") == [2]
    c.logout()


def test_esearch_and_searchres(srv: ServerThread) -> None:
    m = connect(srv)
    for i in range(5):
        append(m, message(f"note {i}"), flags="(\\Seen)" if i % 2 else "")
    ok(m.select("INBOX"))
    typ, _ = m._simple_command("UID", "SEARCH", "RETURN", "(MIN MAX COUNT ALL)", "UNSEEN")
    line = m.untagged_responses.pop("ESEARCH")[0]
    assert re.search(rb"UID MIN 1 MAX 5 COUNT 3 ALL 1,3,5", line)
    typ, _ = m._simple_command("SEARCH", "RETURN", "(SAVE)", "SEEN")
    assert typ == "OK"
    typ, data = m.fetch("$", "(UID)")
    assert [re.search(rb"UID (\d+)", d).group(1) for d in data] == [b"2", b"4"]  # type: ignore[union-attr]
    m.logout()


def test_sort_and_thread(srv: ServerThread) -> None:
    m = connect(srv)
    append(m, message("banana", Message_ID="<b@x>"))
    append(m, message("apple", Message_ID="<a@x>"))
    append(m, message("Re: apple", In_Reply_To="<a@x>", References="<a@x>"))
    ok(m.select("INBOX"))
    _, data = m.sort("(SUBJECT)", "UTF-8", "ALL")
    assert data == [b"2 3 1"]
    _, data = m.sort("(REVERSE ARRIVAL)", "UTF-8", "ALL")
    assert data == [b"3 2 1"]
    _, data = m.thread("REFERENCES", "UTF-8", "ALL")
    assert data == [b"(1)(2 3)"]
    _, data = m.uid("THREAD", "ORDEREDSUBJECT", "UTF-8", "ALL")
    assert data == [b"(1 2 3)"] or data == [b"(1)(2 3)"]
    m.logout()


def test_condstore_fetch_changedsince_and_unchangedsince(both: ServerThread) -> None:
    c = client(both)
    for i in range(3):
        c.append("INBOX", message(f"c{i}"))
    info = c.select_folder("INBOX")
    assert b"HIGHESTMODSEQ" in info
    before = info[b"HIGHESTMODSEQ"]
    c.add_flags([2], [b"\\Flagged"])
    changed = c.fetch([1, 2, 3], ["FLAGS"], modifiers=[f"CHANGEDSINCE {before}"])
    assert list(changed) == [2] and changed[2][b"MODSEQ"][0] > before
    m = connect(both)
    ok(m.select("INBOX"))
    typ, data = m._simple_command(
        "STORE", "1:3", f"(UNCHANGEDSINCE {before})", "+FLAGS", "(\\Seen)"
    )
    assert typ == "OK" and b"[MODIFIED 2]" in data[0]
    m.logout()
    c.logout()


def test_qresync_reports_vanished_and_changed_since(srv: ServerThread) -> None:
    m = connect(srv)
    for i in range(4):
        append(m, message(f"q{i}"))
    status = ok(m.status("INBOX", "(UIDVALIDITY HIGHESTMODSEQ)"))[0].decode()
    validity = re.search(r"UIDVALIDITY (\d+)", status).group(1)  # type: ignore[union-attr]
    modseq = re.search(r"HIGHESTMODSEQ (\d+)", status).group(1)  # type: ignore[union-attr]
    ok(m.select("INBOX"))
    ok(m.store("2", "+FLAGS", "(\\Deleted)"))
    ok(m.expunge())
    ok(m.store("3", "+FLAGS", "(\\Flagged)"))  # was UID 4
    m.logout()
    m = connect(srv)
    ok(m._simple_command("ENABLE", "QRESYNC"))
    typ, _ = m._simple_command("SELECT", "INBOX", f"(QRESYNC ({validity} {modseq}))")
    assert typ == "OK"
    assert m.untagged_responses.pop("VANISHED") == [b"(EARLIER) 2"]
    fetches = m.untagged_responses.pop("FETCH")
    assert any(b"UID 4" in f and b"\\Flagged" in f for f in fetches)
    m.logout()


def test_binary_fetch_decodes_base64(srv: ServerThread) -> None:
    raw = (
        b"From: a@b.test\r\nSubject: bin\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nAAECAwQ=\r\n--b--\r\n"
    )
    m = connect(srv)
    append(m, raw)
    ok(m.select("INBOX"))
    typ, data = m.fetch("1", "(BINARY.PEEK[2] BINARY.SIZE[2])")
    assert typ == "OK"
    assert data[0][1] == b"\x00\x01\x02\x03\x04" and b"BINARY.SIZE[2] 5" in data[1]
    m.logout()
