"""Several live sessions on one mailbox: flags, expunges and new mail reach the others
(NOOP and IDLE), delivered over SMTP, appended over IMAP, or changed by another
process (the change notifier's poll)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

import pytest
from imapfix import append, client, connect, deliver, imap_server, message, ok

from mwserver import ServerThread

MakeServer = Callable[..., ServerThread]


@pytest.fixture
def srv(make_server: MakeServer) -> ServerThread:
    return imap_server(make_server)


def test_two_sessions_see_each_others_flags_expunges_and_new_mail(srv: ServerThread) -> None:
    a, b = connect(srv), connect(srv)
    for i in range(3):
        append(a, message(f"m{i}"))
    ok(a.select("INBOX"))
    ok(b.select("INBOX"))
    b.untagged_responses.clear()  # imaplib keeps SELECT's EXISTS and RECENT
    ok(a.store("2", "+FLAGS", "(\\Flagged)"))
    ok(b.noop())
    fetches = b.untagged_responses.pop("FETCH")
    assert any(re.match(rb"2 \(.*FLAGS \([^)]*\\Flagged", f) for f in fetches), fetches
    ok(a.store("1", "+FLAGS", "(\\Deleted)"))
    ok(a.expunge())
    ok(b.noop())
    assert b.untagged_responses.pop("EXPUNGE") == [b"1"]
    deliver(srv, message("new one"))
    ok(b.noop())
    assert b.untagged_responses.pop("EXISTS") == [b"3"]
    a.logout()
    b.logout()


def test_expunge_is_not_reported_during_fetch_but_at_the_next_command(srv: ServerThread) -> None:
    a, b = connect(srv), connect(srv)
    for i in range(3):
        append(a, message(f"m{i}"))
    ok(a.select("INBOX"))
    ok(b.select("INBOX"))
    ok(a.store("1", "+FLAGS", "(\\Deleted)"))
    ok(a.expunge())
    typ, data = b.fetch("3", "(UID)")  # sequence numbers stay valid during FETCH
    assert typ == "OK" and b"UID 3" in data[0]
    assert "EXPUNGE" not in b.untagged_responses
    ok(b.noop())
    assert b.untagged_responses.pop("EXPUNGE") == [b"1"]
    a.logout()
    b.logout()


def _idle_until(
    c: object, predicate: Callable[[list[object]], bool], timeout: float
) -> list[object]:
    from imapclient import IMAPClient

    assert isinstance(c, IMAPClient)
    got: list[object] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got += c.idle_check(timeout=max(0.05, deadline - time.monotonic()))
        if predicate(got):
            break
    return got


def test_idle_sees_smtp_delivery(srv: ServerThread) -> None:
    c = client(srv)
    c.select_folder("INBOX")
    c.idle()
    deliver(srv, message("wake up"))
    # How fast is bench/imap.py's business ("IDLE: delivery acknowledged -> * n EXISTS");
    # here: the EXISTS comes while the client is still in the same IDLE.
    got = _idle_until(c, lambda r: (1, b"EXISTS") in r, 30)
    c.idle_done()
    assert (1, b"EXISTS") in got
    c.logout()


def test_idle_sees_flag_changes_and_expunges_from_another_session(srv: ServerThread) -> None:
    m = connect(srv)
    append(m, message("one"))
    append(m, message("two"))
    c = client(srv)
    c.select_folder("INBOX")
    c.idle()
    ok(m.select("INBOX"))
    ok(m.store("2", "+FLAGS", "(\\Seen)"))
    got = _idle_until(c, lambda r: any(x[1] == b"FETCH" for x in r if isinstance(x, tuple)), 5)
    assert any(x[0] == 2 and x[1] == b"FETCH" for x in got if isinstance(x, tuple))
    ok(m.store("1", "+FLAGS", "(\\Deleted)"))
    ok(m.expunge())
    got = _idle_until(c, lambda r: (1, b"EXPUNGE") in r, 5)
    assert (1, b"EXPUNGE") in got
    c.idle_done()
    assert c.select_folder("INBOX")[b"EXISTS"] == 1
    c.logout()
    m.logout()


def test_changes_from_another_process_reach_idle(srv: ServerThread) -> None:
    """A change committed without this process's notifier (as the CLI or another worker
    process would make it) is found by the notifier's poll of HIGHESTMODSEQ."""
    c = client(srv)
    c.select_folder("INBOX")
    c.idle()
    services = srv.services
    inbox = srv.call(
        services.folders.get(srv.call(services.accounts.get_user("alice@example.test")).id, "INBOX")
    )
    from mailwarden.store.messages_sql import MessageStore
    from mailwarden.store.records import HeaderSummary, NewMessage

    key = srv.call(services.blobs.put(message("behind your back")))
    raw_store = MessageStore(services.db)  # no notifier: like another process
    user = srv.call(services.accounts.get_user("alice@example.test"))
    new = NewMessage(key, 100, services.clock.now(), HeaderSummary(subject="x"))
    srv.call(raw_store.append(user.id, inbox.id, new))
    got = _idle_until(c, lambda r: (1, b"EXISTS") in r, 5)
    c.idle_done()
    assert (1, b"EXISTS") in got
    c.logout()


def test_many_sessions_and_concurrent_appends_lose_nothing(srv: ServerThread) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            m = connect(srv)
            for i in range(10):
                append(m, message(f"w{n}-{i}"))
            m.logout()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    m = connect(srv)
    assert ok(m.select("INBOX"))[0] == b"50"
    _, data = m.uid("SEARCH", "ALL")
    assert [int(u) for u in data[0].split()] == list(range(1, 51))
    m.logout()
