"""The selected-mailbox view: what a session tells its client when the mailbox changes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mailwarden.imap.selected import Selected
from mailwarden.imap.wire.sequence import SequenceSet
from mailwarden.imap.wire.tokens import ImapSyntaxError
from mailwarden.services.notify import LocalNotifier
from mailwarden.store.records import MailboxChanges, MailboxRecord, MailboxView, MessageMeta

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def meta(uid: int, modseq: int = 1, *flags: str) -> MessageMeta:
    return MessageMeta(uid, modseq, tuple(flags), 100)


def view(*metas: MessageMeta, recent: tuple[int, int] = (0, 0)) -> Selected:
    record = MailboxRecord(7, 1, "INBOX", None, 1234, 10, 5)
    watch = LocalNotifier().watch(7)
    box = MailboxView(
        record,
        [m.uid for m in metas],
        [m.modseq for m in metas],
        [m.flags for m in metas],
        [m.size for m in metas],
        recent,
    )
    return Selected(box, read_only=False, watch=watch)


def changes(
    changed: list[MessageMeta] | None = None, expunged: list[int] | None = None
) -> MailboxChanges:
    return MailboxChanges(9, 20, changed or [], expunged or [])


def test_resolve_numbers_and_uids() -> None:
    sel = view(meta(3), meta(5), meta(9))
    assert sel.resolve(SequenceSet.parse("2:*"), uid=False) == [1, 2]
    assert sel.resolve(SequenceSet.parse("4:*"), uid=True) == [1, 2]
    assert sel.resolve(SequenceSet.parse("100:*"), uid=True) == [2]  # §6.4.8: * is in
    assert sel.resolve(SequenceSet.parse("6:8"), uid=True) == []
    with pytest.raises(ImapSyntaxError):
        sel.resolve(SequenceSet.parse("4"), uid=False)
    sel.saved = [5, 9]
    assert sel.resolve(SequenceSet.parse("$"), uid=False) == [1, 2]


def test_new_messages_give_exists_and_recent() -> None:
    sel = view(meta(1), meta(2))
    out = sel.apply(
        MailboxChanges(5, 4, [meta(3, 5)], [], recent=(3, 4)),
        expunge=True,
        qresync=False,
        condstore=False,
    )
    assert out == [b"* 3 EXISTS\r\n", b"* 1 RECENT\r\n"]
    assert sel.flags_of(2) == ("\\Recent",)


def test_expunges_wait_while_fetch_store_search_run() -> None:
    sel = view(meta(1), meta(2), meta(3))
    out = sel.apply(changes(expunged=[1, 3]), expunge=False, qresync=False, condstore=False)
    assert out == [] and sel.count == 3  # numbers stay valid (RFC 3501 §7.4.1)
    out = sel.apply(changes(), expunge=True, qresync=False, condstore=False)
    assert out == [b"* 3 EXPUNGE\r\n", b"* 1 EXPUNGE\r\n"]
    assert sel.uids == [2]


def test_qresync_reports_vanished_instead_of_expunge() -> None:
    sel = view(meta(1), meta(2), meta(3), meta(4))
    out = sel.apply(changes(expunged=[2, 3]), expunge=True, qresync=True, condstore=True)
    assert out == [b"* VANISHED 2:3\r\n"]


def test_flag_changes_by_others_are_reported_but_own_are_not() -> None:
    sel = view(meta(1), meta(2))
    sel.update([meta(1, 4, "\\Seen")])  # our own STORE, already answered
    out = sel.apply(
        changes([meta(1, 4, "\\Seen"), meta(2, 5, "\\Flagged")]),
        expunge=True,
        qresync=False,
        condstore=True,
    )
    assert len(out) == 1 and out[0].startswith(b"* 2 FETCH (") and b"\\Flagged" in out[0]
    assert b"MODSEQ (5)" in out[0]


def test_recent_range_claimed_at_select() -> None:
    sel = view(meta(1), meta(2), meta(3), recent=(2, 4))
    assert sel.recent == {2, 3} and sel.flags_of(0) == ()


def test_keywords_and_first_unseen() -> None:
    sel = view(meta(1, 1, "\\Seen", "$Work"), meta(2, 1, "$work", "Later"))
    assert sel.keywords() == ["Later", "$Work"] or sel.keywords() == ["$Work", "Later"]
    assert sel.first_unseen() == 2
