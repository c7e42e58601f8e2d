"""Messages of a selected mailbox for IMAP: open, changes, flags, copy/move, expunge, append.

Every change to a message takes a new mod-sequence from its mailbox row
(``highestmodseq + 1``), in the same transaction as the change. On PostgreSQL that UPDATE
locks the mailbox row, so writers to one mailbox commit in mod-sequence order; on SQLite
there is only one writer. A session that has seen everything up to mod-sequence M can
therefore ask for "changes after M" and miss nothing (RFC 7162 §3.2.5.2 relies on the
same property). Expunged messages leave a tombstone (``expunged``) with the mod-sequence
of their expunge, for EXPUNGE/VANISHED replies to other sessions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    delete,
    insert,
    select,
    update,
)

from mailwarden.core.errors import NotFound, QuotaExceeded
from mailwarden.store.batch import GroupCommit
from mailwarden.store.db import Database
from mailwarden.store.folders_sql import charge
from mailwarden.store.mailbox_rows import mailbox_row
from mailwarden.store.records import (
    BodyRef,
    Delivery,
    FlagChange,
    MailboxChanges,
    MailboxView,
    MessageMeta,
    NewMessage,
)
from mailwarden.store.sql import aware
from mailwarden.store.tables import (
    expunged,
    mailboxes,
    messages,
    users,
)
from mailwarden.store.writer import message_row

CHUNK = 500  # ids per IN (...) list
_APPENDED = Delivery(0, "", "")  # APPEND has no envelope recipient
StoreMode = Literal["replace", "add", "remove"]


@dataclass(frozen=True, slots=True)
class SortRow:
    """The fields SEARCH (dates, sizes), SORT and THREAD read per message."""

    uid: int
    size: int
    internal_date: datetime
    date: datetime | None
    subject: str
    from_addr: str
    to_addr: str
    cc_addr: str
    message_id: str
    in_reply_to: str


def chunks(values: Sequence[int], size: int = CHUNK) -> Iterator[Sequence[int]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def split_flags(text_value: str) -> tuple[str, ...]:
    return tuple(text_value.split())


def apply_flags(current: tuple[str, ...], mode: StoreMode, flags: Sequence[str]) -> tuple[str, ...]:
    """RFC 3501 §6.4.6 FLAGS / +FLAGS / -FLAGS; keywords compare case-insensitively."""
    if mode == "replace":
        return tuple(dict.fromkeys(flags))
    have = {f.lower() for f in current}
    if mode == "add":
        extra = [f for f in flags if f.lower() not in have]
        return current + tuple(dict.fromkeys(extra)) if extra else current
    gone = {f.lower() for f in flags}
    return tuple(f for f in current if f.lower() not in gone)


def _same_flags(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    return len(a) == len(b) and {f.lower() for f in a} == {f.lower() for f in b}


def _has_flag(flags_text: str, flag: str) -> bool:
    return flag.lower() in flags_text.lower().split()


_BUMP = (
    update(mailboxes)
    .where(mailboxes.c.id == bindparam("p_id"))
    .values(
        highestmodseq=mailboxes.c.highestmodseq + 1,
        uidnext=mailboxes.c.uidnext + bindparam("p_uids"),
    )
    .returning(mailboxes.c.highestmodseq, mailboxes.c.uidnext, mailboxes.c.uidvalidity)
)
_SET_FLAGS = (
    update(messages)
    .where(messages.c.id == bindparam("p_id"))
    .values(flags=bindparam("p_flags"), modseq=bindparam("p_modseq"))
)


def _bump(c: Connection, mailbox_id: int, new_uids: int = 0) -> tuple[int, int, int]:
    """New mod-sequence (and ``new_uids`` UIDs); returns (modseq, first new UID, uidvalidity)."""
    row = c.execute(_BUMP, {"p_id": mailbox_id, "p_uids": new_uids}).first()
    if row is None:
        raise NotFound("mailbox no longer exists")
    return int(row.highestmodseq), int(row.uidnext) - new_uids, int(row.uidvalidity)


def _meta(r: Any) -> MessageMeta:
    return MessageMeta(int(r.uid), int(r.modseq), split_flags(r.flags), int(r.size))


_META_COLS = (messages.c.uid, messages.c.modseq, messages.c.flags, messages.c.size)
_META_BY_MAILBOX = (
    select(*_META_COLS).where(messages.c.mailbox_id == bindparam("p_id")).order_by(messages.c.uid)
)
_META_SQL = "SELECT uid, modseq, flags, size FROM messages WHERE mailbox_id = ? ORDER BY uid"


def _meta_rows(c: Connection, mailbox_id: int) -> list[tuple[int, int, str, int]]:
    """SQLite: every message's (uid, modseq, flags, size) straight from the driver, in the
    same transaction; building 10,000 SQLAlchemy rows would cost several times more."""
    cursor = c.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        return list(cursor.execute(_META_SQL, (mailbox_id,)).fetchall())
    finally:
        cursor.close()


class MessageStore:
    """The messages of mailboxes, as IMAP sessions see and change them."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._appends = GroupCommit(db, "appends")

    async def open(self, mailbox_id: int) -> MailboxView:
        """The mailbox and all its messages (no \\Recent claim; see :meth:`claim_recent`)."""
        sqlite = self.db.is_sqlite

        def run(c: Connection) -> MailboxView | None:
            mb = c.execute(select(mailboxes).where(mailboxes.c.id == mailbox_id)).first()
            if mb is None:
                return None
            record = mailbox_row(mb)
            rows = (
                _meta_rows(c, mailbox_id)
                if sqlite
                else c.execute(_META_BY_MAILBOX, {"p_id": mailbox_id}).all()
            )
            folded: dict[str, tuple[str, ...]] = {}
            flags = [folded.get(r[2]) or folded.setdefault(r[2], split_flags(r[2])) for r in rows]
            return MailboxView(
                record, [r[0] for r in rows], [r[1] for r in rows], flags, [r[3] for r in rows]
            )

        view = await self.db.read(run)
        if view is None:
            raise NotFound("mailbox no longer exists")
        return view

    async def claim_recent(self, mailbox_id: int) -> tuple[int, int]:
        """Take the \\Recent messages (RFC 3501 §2.3.2): returns the UID range [from, to)."""

        def run(c: Connection) -> tuple[int, int]:
            row = c.execute(
                select(mailboxes.c.first_recent_uid, mailboxes.c.uidnext).where(
                    mailboxes.c.id == mailbox_id
                )
            ).first()
            if row is None or row.first_recent_uid >= row.uidnext:
                return 0, 0
            c.execute(
                update(mailboxes)
                .where(mailboxes.c.id == mailbox_id)
                .values(first_recent_uid=row.uidnext)
            )
            return int(row.first_recent_uid), int(row.uidnext)

        return await self.db.write(run)

    async def changes(self, mailbox_id: int, since: int) -> MailboxChanges:
        """New and changed messages and expunged UIDs after mod-sequence ``since``."""

        def run(c: Connection) -> MailboxChanges:
            mb = c.execute(
                select(mailboxes.c.highestmodseq, mailboxes.c.uidnext).where(
                    mailboxes.c.id == mailbox_id
                )
            ).first()
            if mb is None:
                return MailboxChanges(since, 0, [], [], exists=False)
            if mb.highestmodseq <= since:
                return MailboxChanges(int(mb.highestmodseq), int(mb.uidnext), [], [])
            rows = c.execute(
                select(*_META_COLS)
                .where(and_(messages.c.mailbox_id == mailbox_id, messages.c.modseq > since))
                .order_by(messages.c.uid)
            ).all()
            gone = c.execute(
                select(expunged.c.uid)
                .where(and_(expunged.c.mailbox_id == mailbox_id, expunged.c.modseq > since))
                .order_by(expunged.c.uid)
            ).scalars()
            return MailboxChanges(
                int(mb.highestmodseq),
                int(mb.uidnext),
                [_meta(r) for r in rows],
                [int(u) for u in gone],
            )

        return await self.db.read(run)

    async def vanished(self, mailbox_id: int, since: int) -> list[int]:
        """UIDs expunged after mod-sequence ``since`` (RFC 7162 §3.2.5.2 VANISHED (EARLIER))."""
        q = (
            select(expunged.c.uid)
            .where(and_(expunged.c.mailbox_id == mailbox_id, expunged.c.modseq > since))
            .order_by(expunged.c.uid)
        )
        return [int(u) for u in await self.db.read(lambda c: c.execute(q).scalars().all())]

    async def store_flags(
        self,
        mailbox_id: int,
        uids: Sequence[int],
        mode: StoreMode,
        flags: Sequence[str],
        unchangedsince: int | None = None,
    ) -> FlagChange:
        """STORE on the messages with these UIDs (missing ones are skipped); one new
        mod-sequence for all the messages it changes."""

        def run(c: Connection) -> FlagChange:
            rows: list[Any] = []
            for part in chunks(sorted(uids)):
                rows += c.execute(
                    select(messages.c.id, *_META_COLS).where(
                        and_(messages.c.mailbox_id == mailbox_id, messages.c.uid.in_(list(part)))
                    )
                ).all()
            rows.sort(key=lambda r: r.uid)
            todo: list[tuple[Any, tuple[str, ...]]] = []
            unchanged: list[MessageMeta] = []
            modified: list[int] = []
            for r in rows:
                if unchangedsince is not None and r.modseq > unchangedsince:
                    modified.append(int(r.uid))  # RFC 7162 §3.1.3
                    continue
                current = split_flags(r.flags)
                new = apply_flags(current, mode, flags)
                if _same_flags(new, current):
                    unchanged.append(_meta(r))
                else:
                    todo.append((r, new))
            if not todo:
                top = c.execute(
                    select(mailboxes.c.highestmodseq).where(mailboxes.c.id == mailbox_id)
                ).scalar()
                return FlagChange([], unchanged, modified, int(top or 0))
            modseq, _, _ = _bump(c, mailbox_id)
            c.execute(
                _SET_FLAGS,
                [{"p_id": r.id, "p_flags": " ".join(new), "p_modseq": modseq} for r, new in todo],
            )
            changed = [MessageMeta(int(r.uid), modseq, new, int(r.size)) for r, new in todo]
            return FlagChange(changed, unchanged, modified, modseq)

        return await self.db.write(run)

    async def expunge(self, mailbox_id: int, uids: Sequence[int] | None = None) -> list[int]:
        """Remove the messages flagged \\Deleted (only those in ``uids`` if given)."""

        def run(c: Connection) -> list[int]:
            rows = c.execute(
                select(messages.c.id, messages.c.uid, messages.c.size, messages.c.flags).where(
                    and_(
                        messages.c.mailbox_id == mailbox_id,
                        messages.c.flags.contains("\\Deleted", autoescape=True),
                    )
                )
            ).all()
            wanted = set(uids) if uids is not None else None
            doomed = [
                r
                for r in rows
                if _has_flag(r.flags, "\\Deleted") and (wanted is None or r.uid in wanted)
            ]
            return _remove(c, mailbox_id, doomed)

        return await self.db.write(run)

    async def copy(
        self, src_id: int, uids: Sequence[int], dst_id: int, *, move: bool
    ) -> tuple[int, list[tuple[int, int]]]:
        """COPY/MOVE (RFC 3501 §6.4.7, RFC 6851): returns the destination UIDVALIDITY and
        (source UID, new UID) pairs in ascending source order. COPY is charged to the
        quota (QuotaExceeded if it does not fit); MOVE is not."""

        def run(c: Connection) -> tuple[int, list[tuple[int, int]]] | Exception:
            rows: list[Any] = []
            for part in chunks(sorted(set(uids))):
                rows += c.execute(
                    select(messages).where(
                        and_(messages.c.mailbox_id == src_id, messages.c.uid.in_(list(part)))
                    )
                ).all()
            rows.sort(key=lambda r: r.uid)
            dst = c.execute(
                select(mailboxes.c.user_id, mailboxes.c.uidvalidity).where(mailboxes.c.id == dst_id)
            ).first()
            if dst is None:
                return NotFound("mailbox no longer exists")
            if not rows:
                return int(dst.uidvalidity), []
            total = sum(int(r.size) for r in rows)
            if not move:
                refusal = _check_quota(c, int(dst.user_id), total)
                if refusal is not None:
                    return refusal
            modseq, first_uid, uidvalidity = _bump(c, dst_id, len(rows))
            copies = []
            for i, r in enumerate(rows):
                row = dict(r._mapping)
                del row["id"]
                row.update(mailbox_id=dst_id, uid=first_uid + i, modseq=modseq)
                copies.append(row)
            c.execute(insert(messages), copies)
            if move:
                _remove(c, src_id, rows, refund=False)
            else:
                charge(c, int(dst.user_id), total)
            return uidvalidity, [(int(r.uid), first_uid + i) for i, r in enumerate(rows)]

        result = await self.db.write(run)
        if isinstance(result, Exception):
            raise result
        return result

    async def append(self, user_id: int, mailbox_id: int, message: NewMessage) -> tuple[int, int]:
        """APPEND (RFC 3501 §6.3.11): file one stored blob; returns (UIDVALIDITY, UID).

        Concurrent appends share a transaction (group commit)."""

        def run(c: Connection) -> tuple[int, int] | Exception:
            refusal = _check_quota(c, user_id, message.size)
            if refusal is not None:
                return refusal
            try:
                modseq, uid, uidvalidity = _bump(c, mailbox_id, 1)
            except NotFound as exc:
                return exc
            charge(c, user_id, message.size)
            row = message_row(message, _APPENDED, mailbox_id, uid, modseq)
            c.execute(insert(messages), [row])
            return uidvalidity, uid

        result: tuple[int, int] = await self._appends.run(run)
        return result

    async def bodies(self, mailbox_id: int, uids: Sequence[int]) -> list[BodyRef]:
        """Blob, size and INTERNALDATE of these UIDs (missing ones skipped), by UID."""

        def run(c: Connection) -> list[BodyRef]:
            out: list[BodyRef] = []
            for part in chunks(sorted(uids)):
                for r in c.execute(
                    select(
                        messages.c.uid, messages.c.blob, messages.c.size, messages.c.internal_date
                    ).where(
                        and_(messages.c.mailbox_id == mailbox_id, messages.c.uid.in_(list(part)))
                    )
                ):
                    out.append(
                        BodyRef(
                            int(r.uid),
                            r.blob,
                            int(r.size),
                            aware(r.internal_date) or r.internal_date,
                        )
                    )
            out.sort(key=lambda b: b.uid)
            return out

        return await self.db.read(run)

    async def sort_rows(self, mailbox_id: int) -> list[SortRow]:
        """Per message: size, dates and the decoded address/subject fields, by UID."""
        q = (
            select(
                messages.c.uid,
                messages.c.size,
                messages.c.internal_date,
                messages.c.date_header,
                messages.c.subject,
                messages.c.from_addr,
                messages.c.to_addr,
                messages.c.cc_addr,
                messages.c.message_id,
                messages.c.in_reply_to,
            )
            .where(messages.c.mailbox_id == mailbox_id)
            .order_by(messages.c.uid)
        )
        rows = await self.db.read(lambda c: c.execute(q).all())
        return [
            SortRow(
                int(r.uid),
                int(r.size),
                aware(r.internal_date) or r.internal_date,
                aware(r.date_header),
                r.subject,
                r.from_addr,
                r.to_addr,
                r.cc_addr,
                r.message_id,
                r.in_reply_to,
            )
            for r in rows
        ]


def _check_quota(c: Connection, user_id: int, size: int) -> QuotaExceeded | None:
    u = c.execute(
        select(users.c.used_bytes, users.c.quota_bytes)
        .where(users.c.id == user_id)
        .with_for_update()
    ).first()
    if u is None:
        return QuotaExceeded("user no longer exists")
    if u.quota_bytes and u.used_bytes + size > u.quota_bytes:
        return QuotaExceeded("quota exceeded")
    return None


def _remove(
    c: Connection, mailbox_id: int, rows: Sequence[Any], *, refund: bool = True
) -> list[int]:
    """Delete these message rows, leave tombstones, refund their size; returns UIDs."""
    if not rows:
        return []
    modseq, _, _ = _bump(c, mailbox_id)
    ids = [int(r.id) for r in rows]
    for part in chunks(ids):
        c.execute(delete(messages).where(messages.c.id.in_(list(part))))
    c.execute(
        insert(expunged),
        [{"mailbox_id": mailbox_id, "uid": int(r.uid), "modseq": modseq} for r in rows],
    )
    if refund:
        owner = c.execute(
            select(mailboxes.c.user_id).where(mailboxes.c.id == mailbox_id)
        ).scalar_one()
        charge(c, int(owner), -sum(int(r.size) for r in rows))
    return sorted(int(r.uid) for r in rows)
