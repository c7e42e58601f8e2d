"""The selected mailbox as one session sees it: sequence numbers, flags, mod-sequences.

The store is the truth; this view is what the client has been told. :meth:`apply`
folds in what changed after the mod-sequence the view has seen and returns the
untagged responses that tell the client (EXPUNGE or VANISHED, EXISTS, RECENT, FETCH
FLAGS). Expunges are held back while a FETCH, STORE or SEARCH is answered (RFC 3501
§7.4.1) and reported at the next command that allows them; until then the expunged
messages keep their sequence numbers and simply return no data.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence

from mailwarden.imap.fetch_render import render_flags
from mailwarden.imap.wire.encode import untagged
from mailwarden.imap.wire.sequence import SequenceSet, format_numbers
from mailwarden.imap.wire.tokens import ImapSyntaxError
from mailwarden.services.notify import Watch
from mailwarden.store.records import MailboxChanges, MailboxRecord, MailboxView, MessageMeta

RECENT = "\\Recent"


class Selected:
    def __init__(self, view: MailboxView, *, read_only: bool, watch: Watch) -> None:
        self.mailbox: MailboxRecord = view.mailbox
        self.read_only = read_only
        self.watch = watch
        self.uids = view.uids
        self.flags = view.flags
        self.modseqs = view.modseqs
        self.sizes = view.sizes
        lo, hi = view.recent
        self.recent = set(self.uids[bisect_left(self.uids, lo) : bisect_left(self.uids, hi)])
        self.recent_ranges = [view.recent] if hi > lo else []
        self.modseq = view.mailbox.highestmodseq
        self.uidnext = view.mailbox.uidnext
        self.pending_expunge: set[int] = set()
        self.saved: list[int] | None = None  # RFC 5182 "$", as UIDs
        self.told_exists = len(self.uids)
        self.told_recent = len(self.recent)

    @property
    def id(self) -> int:
        return self.mailbox.id

    @property
    def count(self) -> int:
        return len(self.uids)

    def index_of(self, uid: int) -> int | None:
        i = bisect_left(self.uids, uid)
        return i if i < len(self.uids) and self.uids[i] == uid else None

    def flags_of(self, i: int) -> tuple[str, ...]:
        """Flags as reported: stored flags plus \\Recent for this session's recent ones."""
        flags = self.flags[i]
        return (*flags, RECENT) if self.uids[i] in self.recent else flags

    def keywords(self) -> list[str]:
        """Keywords in use, for the FLAGS response (RFC 3501 §7.2.6)."""
        seen: dict[str, str] = {}
        for flags in self.flags:
            for f in flags:
                if not f.startswith("\\"):
                    seen.setdefault(f.lower(), f)
        return sorted(seen.values(), key=str.lower)

    def first_unseen(self) -> int | None:
        for i, flags in enumerate(self.flags):
            if not any(f.lower() == "\\seen" for f in flags):
                return i + 1
        return None

    def resolve(self, numbers: SequenceSet, *, uid: bool) -> list[int]:
        """Indexes (0-based) selected by a sequence set of message numbers or UIDs.

        Message numbers past the end are an error (RFC 3501 §9: the server should answer
        BAD); UIDs that do not exist are ignored (§6.4.8).
        """
        if numbers.saved:  # RFC 5182: "$" is the saved result (UIDs)
            saved = self.saved or []
            return [i for i in (self.index_of(u) for u in saved) if i is not None]
        if uid:
            largest = self.uids[-1] if self.uids else 0
            return list(numbers.resolve(largest).indexes(self.uids))
        resolved = numbers.resolve(self.count)
        top = resolved.max
        if top is not None and top > self.count:
            raise ImapSyntaxError("message sequence number out of range")
        return [n - 1 for n in resolved]

    def update(self, metas: Iterable[MessageMeta], modseq: int = 0) -> None:
        """Our own STORE/FETCH changes, already reported by the command itself.

        ``modseq`` is the mod-sequence those changes got: when it directly follows the
        one this view has seen, nothing else happened in between, so the view is current
        at ``modseq`` and the next sync need not read our own changes back.
        """
        changed = list(metas)
        for m in changed:
            i = self.index_of(m.uid)
            if i is not None:
                self.flags[i] = m.flags
                self.modseqs[i] = m.modseq
        if changed and modseq == self.modseq + 1:
            self.modseq = modseq

    def apply(
        self,
        changes: MailboxChanges,
        *,
        expunge: bool,
        qresync: bool,
        condstore: bool,
    ) -> list[bytes]:
        """Fold in ``changes``; returns the untagged responses, in order."""
        out: list[bytes] = []
        self.pending_expunge.update(u for u in changes.expunged if self.index_of(u) is not None)
        if expunge and self.pending_expunge:
            out += self._expunge(qresync)
        out += self._flag_updates(changes.changed, uid=qresync, condstore=condstore)
        last = self.uids[-1] if self.uids else 0
        new = [m for m in changes.changed if m.uid > last]
        for m in new:
            self.uids.append(m.uid)
            self.flags.append(m.flags)
            self.modseqs.append(m.modseq)
            self.sizes.append(m.size)
        if changes.recent[1] > changes.recent[0]:
            self.recent_ranges.append(changes.recent)
        if self.recent_ranges:  # new messages inside a range this session claimed
            self.recent.update(
                m.uid for m in new if any(lo <= m.uid < hi for lo, hi in self.recent_ranges)
            )
        self.modseq = max(self.modseq, changes.highestmodseq)
        self.uidnext = max(self.uidnext, changes.uidnext)
        if self.count != self.told_exists:
            out.append(untagged(b"%d" % self.count, b"EXISTS"))
            self.told_exists = self.count
        if len(self.recent) != self.told_recent:
            out.append(untagged(b"%d" % len(self.recent), b"RECENT"))
            self.told_recent = len(self.recent)
        return out

    def _expunge(self, qresync: bool) -> list[bytes]:
        gone = self.pending_expunge
        self.pending_expunge = set()
        doomed = sorted(i for i in (self.index_of(u) for u in gone) if i is not None)
        if not doomed:
            return []
        if qresync:  # RFC 7162 §3.2.10: VANISHED replaces EXPUNGE once QRESYNC is enabled
            out = [untagged(b"VANISHED", format_numbers(gone).encode("ascii"))]
        else:  # highest first, so the numbers still to come are not shifted (§7.4.1)
            out = [untagged(b"%d" % (i + 1), b"EXPUNGE") for i in reversed(doomed)]
        keep = [i for i, u in enumerate(self.uids) if u not in gone]
        self.uids = [self.uids[i] for i in keep]
        self.flags = [self.flags[i] for i in keep]
        self.modseqs = [self.modseqs[i] for i in keep]
        self.sizes = [self.sizes[i] for i in keep]
        self.recent -= gone
        self.told_exists = self.count
        self.told_recent = len(self.recent)
        return out

    def _flag_updates(
        self, changed: Sequence[MessageMeta], *, uid: bool, condstore: bool
    ) -> list[bytes]:
        out: list[bytes] = []
        for m in changed:
            i = self.index_of(m.uid)
            if i is None or m.uid in self.pending_expunge:
                continue
            same = self.flags[i] == m.flags
            if same and (not condstore or self.modseqs[i] == m.modseq):
                self.modseqs[i] = m.modseq
                continue
            self.flags[i] = m.flags
            self.modseqs[i] = m.modseq
            out.append(
                render_flags(
                    i + 1, m.uid if uid else None, self.flags_of(i), m.modseq if condstore else None
                )
            )
        return out
