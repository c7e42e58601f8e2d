"""IMAP folders: LIST (special-use, extended, status), CREATE, RENAME, DELETE,
subscriptions, STATUS, QUOTA — with imapclient and imaplib against the real server."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from imapclient import IMAPClient
from imapfix import ALICE, BOB, append, client, connect, imap_server, message, ok

from mwserver import ServerThread

MakeServer = Callable[..., ServerThread]


@pytest.fixture
def srv(make_server: MakeServer) -> ServerThread:
    return imap_server(make_server)


def names(c: IMAPClient) -> dict[str, tuple[bytes, ...]]:
    return {name: flags for flags, _delim, name in c.list_folders()}


def test_default_folders_with_special_use(srv: ServerThread) -> None:
    c = client(srv)
    folders = names(c)
    assert set(folders) == {"INBOX", "Sent", "Drafts", "Junk", "Trash", "Archive"}
    assert b"\\Sent" in folders["Sent"] and b"\\Junk" in folders["Junk"]
    assert b"\\Trash" in folders["Trash"] and b"\\Archive" in folders["Archive"]
    assert b"\\HasNoChildren" in folders["INBOX"]
    assert c.find_special_folder(b"\\Sent") == "Sent"
    c.logout()


def test_create_rename_delete_with_hierarchy(srv: ServerThread) -> None:
    c = client(srv)
    c.create_folder("Projects/2026/Q4")  # parents are created too
    folders = names(c)
    assert {"Projects", "Projects/2026", "Projects/2026/Q4"} <= set(folders)
    assert b"\\HasChildren" in folders["Projects"]
    with pytest.raises(IMAPClient.Error, match="ALREADYEXISTS"):
        c.create_folder("Projects")
    c.rename_folder("Projects", "Work")
    folders = names(c)
    assert "Projects/2026/Q4" not in folders and "Work/2026/Q4" in folders
    with pytest.raises(IMAPClient.Error, match="children"):
        c.delete_folder("Work")
    c.delete_folder("Work/2026/Q4")
    c.delete_folder("Work/2026")
    c.delete_folder("Work")
    assert "Work" not in names(c)
    with pytest.raises(IMAPClient.Error, match="NONEXISTENT"):
        c.delete_folder("Work")
    with pytest.raises(IMAPClient.Error):
        c.delete_folder("INBOX")
    with pytest.raises(IMAPClient.Error, match="CANNOT"):
        c.create_folder("a//b")
    c.logout()


def test_international_names_round_trip_in_modified_utf7(srv: ServerThread) -> None:
    c = client(srv)
    c.create_folder("Entwürfe/Ελληνικά & more")
    assert "Entwürfe/Ελληνικά & more" in names(c)
    m = connect(srv)
    _, data = m.list()
    assert any(b"Entw&APw-rfe/&A5UDuwO7A7cDvQO5A7oDrA- &- more" in d for d in data)
    m.logout()
    c.logout()


def test_delete_and_recreate_gets_a_new_uidvalidity(srv: ServerThread) -> None:
    c = client(srv)
    c.create_folder("Tmp")
    first = c.folder_status("Tmp", ["UIDVALIDITY"])[b"UIDVALIDITY"]
    c.delete_folder("Tmp")
    c.create_folder("Tmp")
    assert c.folder_status("Tmp", ["UIDVALIDITY"])[b"UIDVALIDITY"] > first
    c.logout()


def test_rename_inbox_moves_its_messages(srv: ServerThread) -> None:
    m = connect(srv)
    append(m, message("one"))
    append(m, message("two"))
    ok(m.rename("INBOX", '"Old Inbox"'))
    assert ok(m.select('"Old Inbox"'))[0] == b"2"
    assert ok(m.select("INBOX"))[0] == b"0"
    m.logout()


def test_create_special_use_and_list_extended(srv: ServerThread) -> None:
    m = connect(srv)
    ok(m._simple_command("CREATE", "Receipts", "(USE (\\Archive))"))
    typ, data = m._simple_command("CREATE", "Bad", "(USE (\\Nonsense))")
    assert typ == "NO" and b"USEATTR" in data[0]
    typ, data = m._simple_command("LIST", "(SPECIAL-USE)", '""', '"*"')
    lines = m.untagged_responses.pop("LIST")
    assert typ == "OK"
    assert any(b"Receipts" in line and b"\\Archive" in line for line in lines)
    assert not any(b"INBOX" in line for line in lines)
    m.logout()


def test_subscriptions_outlive_their_mailbox(srv: ServerThread) -> None:
    c = client(srv)
    c.create_folder("Lists")
    c.subscribe_folder("Lists")
    assert "Lists" in [n for _f, _d, n in c.list_sub_folders()]
    c.delete_folder("Lists")
    # RFC 3501 §6.3.6: the subscription stays; LIST (SUBSCRIBED) shows it as \NonExistent
    assert "Lists" in [n for _f, _d, n in c.list_sub_folders()]
    m = connect(srv)
    m._simple_command("LIST", "(SUBSCRIBED)", '""', '"*"')
    lines = m.untagged_responses.pop("LIST")
    assert any(b"\\NonExistent" in line and b"Lists" in line for line in lines)
    m.logout()
    c.unsubscribe_folder("Lists")
    assert "Lists" not in [n for _f, _d, n in c.list_sub_folders()]
    c.logout()


def test_status_and_list_status(srv: ServerThread) -> None:
    m = connect(srv)
    append(m, message("a"), flags="(\\Seen)")
    append(m, message("b"))
    typ, data = m.status("INBOX", "(MESSAGES UNSEEN UIDNEXT UIDVALIDITY RECENT SIZE HIGHESTMODSEQ)")
    text = data[0].decode()
    assert "MESSAGES 2" in text and "UNSEEN 1" in text and "UIDNEXT 3" in text
    assert "RECENT 2" in text and "HIGHESTMODSEQ" in text
    typ, _ = m._simple_command("LIST", '""', '"*"', "RETURN", "(STATUS (MESSAGES UNSEEN))")
    assert typ == "OK"
    statuses = m.untagged_responses.pop("STATUS")
    assert any(b"INBOX (MESSAGES 2 UNSEEN 1)" in line for line in statuses)
    m.logout()


def test_list_patterns_and_delimiter(srv: ServerThread) -> None:
    c = client(srv)
    c.create_folder("A/B/C")
    assert [n for _f, _d, n in c.list_folders(pattern="A/%")] == ["A/B"]
    assert sorted(n for _f, _d, n in c.list_folders(pattern="A/*")) == ["A/B", "A/B/C"]
    assert [n for _f, _d, n in c.list_folders(pattern="inbox")] == ["INBOX"]
    m = connect(srv)
    _, data = m.list('""', '""')
    assert data == [b'(\\Noselect) "/" ""']
    m.logout()
    c.logout()


def test_quota_follows_usage(srv: ServerThread) -> None:
    m = connect(srv, BOB)  # bob has a 20,000-byte quota
    typ, data = m.getquotaroot("INBOX")
    assert typ == "OK"
    assert data[0] == [b'INBOX ""'] and data[1] == [b'"" (STORAGE 0 19)']
    append(m, message("q", body="x" * 5000 + "\r\n"), mailbox="INBOX")
    typ, data = m.getquota('""')
    assert data[0].startswith(b'"" (STORAGE 6 19)')
    typ, data = m.append("INBOX", None, None, message("big", body="x" * 30000 + "\r\n"))
    assert typ == "NO" and b"OVERQUOTA" in data[0]
    m.logout()
    alice = connect(srv, ALICE)  # no quota: no quota root
    typ, data = alice.getquotaroot("INBOX")
    assert data[0] == [b"INBOX"]
    alice.logout()
