"""Mailbox names and folders of an account: validation, hierarchy, LIST data, changes.

Names are Unicode strings with ``/`` as the hierarchy delimiter. ``INBOX`` is
case-insensitive (RFC 3501 §5.1), also as the first level of a child name. Every
folder change is published on the change notifier, so selected sessions notice a
deleted or renamed mailbox.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailwarden.core.clock import Clock
from mailwarden.core.errors import AlreadyExists, MailwardenError, NotFound
from mailwarden.services.notify import ChangeNotifier
from mailwarden.store.folders_sql import FolderStore
from mailwarden.store.records import MailboxRecord

DELIMITER = "/"
MAX_NAME = 1024  # the store's column; Dovecot allows 255 per level, 1024 in total
MAX_LEVELS = 32
SPECIAL_USE = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")


class InvalidName(MailwardenError, ValueError):
    """A mailbox name that cannot be created (the session answers NO [CANNOT])."""


def normalize(name: str) -> str:
    """Canonical form: INBOX upper-cased (also as the top of a child name), no trailing "/"."""
    if name.upper() == "INBOX":
        return "INBOX"
    head, sep, rest = name.partition(DELIMITER)
    if sep and head.upper() == "INBOX":
        return "INBOX" + DELIMITER + rest
    return name


def validate(name: str) -> str:
    """A name fit to be created; raises InvalidName with the reason."""
    name = normalize(name.rstrip(DELIMITER) if len(name) > 1 else name)
    if not name:
        raise InvalidName("empty mailbox name")
    if len(name.encode("utf-8")) > MAX_NAME:
        raise InvalidName("mailbox name too long")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise InvalidName("control characters in mailbox name")
    parts = name.split(DELIMITER)
    if len(parts) > MAX_LEVELS:
        raise InvalidName("mailbox hierarchy too deep")
    if any(not p for p in parts):
        raise InvalidName("empty hierarchy level in mailbox name")
    if any(p in (".", "..") or p.startswith("~") for p in parts):
        raise InvalidName("reserved mailbox name")
    if "*" in name or "%" in name:
        raise InvalidName("wildcards in mailbox name")
    return name


def lineage(name: str) -> list[str]:
    """The name and its parents, outermost first: a/b/c -> [a, a/b, a/b/c]."""
    parts = name.split(DELIMITER)
    return [DELIMITER.join(parts[: i + 1]) for i in range(len(parts))]


@dataclass(frozen=True, slots=True)
class Folder:
    """One LIST row (RFC 3501 §7.2.2, RFC 5258, RFC 6154)."""

    name: str
    record: MailboxRecord | None  # None: a subscription whose mailbox does not exist
    has_children: bool
    subscribed: bool

    @property
    def attributes(self) -> list[str]:
        attrs: list[str] = []
        if self.record is None:
            attrs.append("\\NonExistent")  # RFC 5258 §3.4 (implies \NoSelect)
        else:
            attrs.append("\\HasChildren" if self.has_children else "\\HasNoChildren")
            if self.record.special_use:
                attrs.append(self.record.special_use)
        if self.subscribed:
            attrs.append("\\Subscribed")
        return attrs


class FolderService:
    def __init__(self, store: FolderStore, notifier: ChangeNotifier, clock: Clock) -> None:
        self.store = store
        self.notifier = notifier
        self.clock = clock

    async def folders(self, user_id: int) -> list[Folder]:
        """Every mailbox, plus subscribed names without a mailbox, in name order."""
        records = await self.store.mailboxes(user_id)
        subscribed = set(await self.store.subscriptions(user_id))
        by_name = {r.name: r for r in records}
        names = set(by_name) | subscribed
        parents = {n.rsplit(DELIMITER, 1)[0] for n in by_name if DELIMITER in n}
        ordered = sorted(names, key=lambda n: (n != "INBOX", n))
        return [Folder(n, by_name.get(n), n in parents, n in subscribed) for n in ordered]

    async def get(self, user_id: int, name: str, *, counts: bool = False) -> MailboxRecord:
        """The mailbox (``counts``: with its message, unseen and size totals)."""
        record = await self.store.mailbox(user_id, normalize(name), counts=counts)
        if record is None:
            raise NotFound(f"mailbox {name} does not exist")
        return record

    async def create(self, user_id: int, name: str, special_use: str | None = None) -> None:
        canonical = validate(name)
        if canonical == "INBOX":
            raise AlreadyExists("INBOX always exists")
        if special_use is not None and special_use not in SPECIAL_USE:
            raise InvalidName(f"unknown special-use attribute {special_use}")
        await self.store.create(user_id, lineage(canonical), special_use, self.clock.now())

    async def delete(self, user_id: int, name: str) -> None:
        canonical = normalize(name)
        if canonical == "INBOX":
            raise InvalidName("INBOX cannot be deleted")  # RFC 3501 §6.3.4
        mailbox_id = await self.store.delete(user_id, canonical, DELIMITER)
        self.notifier.publish([mailbox_id])

    async def rename(self, user_id: int, old: str, new: str) -> None:
        source, target = normalize(old), validate(new)
        if target == "INBOX":
            raise AlreadyExists("INBOX always exists")
        if target == source or target.startswith(source + DELIMITER):
            raise InvalidName("cannot rename a mailbox under itself")
        if source == "INBOX":
            raise InvalidName("INBOX is renamed by MessageService.rename_inbox")
        ids = await self.store.rename(user_id, source, lineage(target), DELIMITER, self.clock.now())
        self.notifier.publish(ids)

    async def subscribe(self, user_id: int, name: str) -> None:
        await self.store.subscribe(user_id, normalize(name))

    async def unsubscribe(self, user_id: int, name: str) -> None:
        if not await self.store.unsubscribe(user_id, normalize(name)):
            raise NotFound(f"not subscribed to {name}")

    async def quota(self, user_id: int) -> tuple[int, int]:
        return await self.store.quota(user_id)

    async def recent(self, mailbox_id: int) -> int:
        return await self.store.recent_count(mailbox_id)
