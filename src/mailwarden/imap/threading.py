"""RFC 5256 SORT and THREAD (ORDEREDSUBJECT, REFERENCES), as pure functions.

::

    sort_messages(inputs, [("DATE", True), ("SUBJECT", False)])  -> [7, 3, 5]
    format_threads(thread_references(msgs))                      -> b"(2)(3 6 (4 23)(44 7 96))"

Base subjects come from :mod:`mailwarden.imap.subject` and are compared case-folded
(see there). Date/times are compared in UTC; a naive datetime is taken to be UTC.

Everything here is iterative, so hostile mailboxes (reference cycles, 10,000-deep reply
chains, 10,000 siblings) cannot exhaust the recursion limit. :class:`Thread` compares by
identity (``eq=False``): compare threads through :func:`format_threads`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from mailwarden.imap.subject import is_reply_or_forward, subject_key

__all__ = [
    "SORT_KEYS",
    "SortInput",
    "Thread",
    "ThreadInput",
    "format_threads",
    "sent_date",
    "sort_messages",
    "thread_orderedsubject",
    "thread_references",
]


@dataclass(frozen=True, slots=True)
class SortInput:
    """What SORT needs of one message (RFC 5256 §3)."""

    seq: int  # message sequence number: the final tie-breaker (RFC 5256 §3)
    internal_date: datetime
    date: datetime | None  # parsed Date: header; None when missing or invalid
    subject: str = ""  # raw Subject: value (RFC 2047 words still encoded is fine)
    from_mailbox: str = ""  # addr-mailbox of the first From: address (RFC 5256 §3), "" if none
    to_mailbox: str = ""
    cc_mailbox: str = ""
    size: int = 0
    uid: int = 0


@dataclass(frozen=True, slots=True)
class ThreadInput:
    """What THREAD needs of one message (RFC 5256 §3, BASE.6.4.THREAD)."""

    number: int  # sequence number or UID, as the response wants; also the tie-breaker
    sent_date: datetime  # see :func:`sent_date`
    subject: str = ""
    message_id: str | None = None
    in_reply_to: str | None = None  # the first msg-id of In-Reply-To, if valid
    references: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, eq=False)
class Thread:
    """One node of a THREAD response; ``number`` is None for a dummy (RFC 5256 §4)."""

    number: int | None
    children: tuple[Thread, ...] = ()


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def sent_date(date: datetime | None, internal_date: datetime) -> datetime:
    """RFC 5256 §2.2: the Date: header in UTC, else (missing/unparsable) INTERNALDATE."""
    return _utc(internal_date if date is None else date)


# --- SORT (RFC 5256 §3) -------------------------------------------------------------------

SORT_KEYS: Mapping[str, Callable[[SortInput], Any]] = {
    "ARRIVAL": lambda m: _utc(m.internal_date),
    "CC": lambda m: m.cc_mailbox.casefold(),
    "DATE": lambda m: sent_date(m.date, m.internal_date),  # RFC 5256 §2.2 fallback
    "FROM": lambda m: m.from_mailbox.casefold(),
    "SIZE": lambda m: m.size,
    "SUBJECT": lambda m: subject_key(m.subject),  # RFC 5256 §2.1 base subject
    "TO": lambda m: m.to_mailbox.casefold(),
}


def sort_messages(
    messages: Sequence[SortInput], criteria: Sequence[tuple[str, bool]], *, uid: bool = False
) -> list[int]:
    """Sequence numbers (or UIDs) in SORT order; ``criteria`` is ``[(key, reverse), ...]``.

    REVERSE applies to its own criterion only; messages equal on every criterion stay in
    mailbox (sequence number) order (RFC 5256 §3). Raises ValueError for unknown keys.
    """
    unknown = [name for name, _ in criteria if name.upper() not in SORT_KEYS]
    if unknown:
        raise ValueError(f"unknown sort key {unknown[0]!r}")
    ordered = sorted(messages, key=lambda m: m.seq)
    for name, reverse in reversed(criteria):  # stable sorts, least significant first
        ordered.sort(key=SORT_KEYS[name.upper()], reverse=reverse)  # reverse keeps tie order
    return [m.uid if uid else m.seq for m in ordered]


# --- THREAD=ORDEREDSUBJECT (RFC 5256 §3) ---------------------------------------------------


def thread_orderedsubject(messages: Sequence[ThreadInput]) -> list[Thread]:
    """Sort by (base subject, sent date), split per base subject, order threads by first date.

    The first message is the root; every later one is its child, with no grandchildren.
    """
    keyed = sorted(
        (subject_key(m.subject), _utc(m.sent_date), m.number) for m in messages
    )  # sent-date ties go by number (RFC 5256 §2.2)
    groups: dict[str, list[tuple[datetime, int]]] = {}
    for subj, when, number in keyed:
        groups.setdefault(subj, []).append((when, number))
    ordered = sorted(groups.values(), key=lambda group: group[0])
    return [Thread(g[0][1], tuple(Thread(n) for _, n in g[1:])) for g in ordered]


# --- THREAD=REFERENCES (RFC 5256 §3) --------------------------------------------------------


class _Node:
    """A mutable message container; ``number`` None means a dummy message."""

    __slots__ = ("children", "date", "number", "parent", "reply", "subject")

    def __init__(self, number: int | None = None, message: ThreadInput | None = None) -> None:
        self.number = number
        self.parent: _Node | None = None
        self.children: list[_Node] = []
        self.date = _utc(message.sent_date) if message else datetime.min.replace(tzinfo=UTC)
        self.subject = subject_key(message.subject) if message else ""
        self.reply = is_reply_or_forward(message.subject) if message else False

    def key(self) -> tuple[datetime, int]:
        """Sent date, then number (RFC 5256 §2.2); a dummy sorts as its first child (§3 4, 6)."""
        node = self
        while node.number is None and node.children:
            node = node.children[0]
        return node.date, node.number or 0

    def thread_subject(self) -> str:
        """Step 5B: a dummy takes the base subject of its first child."""
        return self.children[0].subject if self.number is None and self.children else self.subject


def _attach(parent: _Node, child: _Node) -> None:
    child.parent = parent
    parent.children.append(child)


def _detach(child: _Node) -> None:
    if child.parent is not None:
        child.parent.children.remove(child)
        child.parent = None


def _would_loop(parent: _Node, child: _Node) -> bool:
    """Step 1A: is ``parent`` ``child`` itself or one of its descendants?"""
    if parent is child:
        return True
    if not child.children:
        return False
    node: _Node | None = parent
    while node is not None:
        if node is child:
            return True
        node = node.parent
    return False


def _references(message: ThreadInput) -> list[str]:
    """References if present, else a valid In-Reply-To (RFC 5256 §3, REFERENCES)."""
    refs = [ref.strip() for ref in message.references if ref.strip()]
    if not refs and message.in_reply_to and message.in_reply_to.strip():
        refs = [message.in_reply_to.strip()]
    return refs


def _link(messages: Sequence[ThreadInput]) -> list[_Node]:
    """Step 1: parent/child links; returns every container, dummies included."""
    ordered = sorted(messages, key=lambda m: m.number)
    nodes = [_Node(m.number, m) for m in ordered]
    by_id: dict[str, _Node] = {}
    for message, node in zip(ordered, nodes, strict=True):
        mid = (message.message_id or "").strip()  # case-sensitive comparison (§3 step 1A)
        if mid and mid not in by_id:  # missing or duplicate ids: the message stays unique
            by_id[mid] = node
    dummies: list[_Node] = []
    for message, node in zip(ordered, nodes, strict=True):
        chain = [_container(by_id, ref, dummies) for ref in _references(message)]
        for parent, child in pairwise(chain):  # step 1A
            if child.parent is None and not _would_loop(parent, child):
                _attach(parent, child)
        _detach(node)  # step 1B: the last reference wins over a truncated References
        if chain and not _would_loop(chain[-1], node):
            _attach(chain[-1], node)
    return nodes + dummies


def _container(by_id: dict[str, _Node], ref: str, dummies: list[_Node]) -> _Node:
    node = by_id.get(ref)
    if node is None:  # step 1A: a dummy, reused for every later reference to this id
        node = by_id[ref] = _Node()
        dummies.append(node)
    return node


def _walk(root: _Node) -> list[_Node]:
    """Pre-order list of ``root`` and its descendants, without recursion."""
    order: list[_Node] = []
    stack = [root]
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(reversed(node.children))
    return order


def _prune(root: _Node) -> None:
    """Step 3, bottom-up so that a dummy's own children are settled before it is judged."""
    for node in reversed(_walk(root)):
        kept: list[_Node] = []
        work = list(reversed(node.children))
        while work:
            child = work.pop()
            if child.number is None and (node is not root or len(child.children) <= 1):
                work.extend(reversed(child.children))  # delete; promote children in place
                continue
            child.parent = node
            kept.append(child)
        node.children = kept


def _group_by_subject(root: _Node) -> None:
    """Step 5: merge top-level threads sharing a base subject."""
    table: dict[str, _Node] = {}
    for node in root.children:  # step 5B
        subj = node.thread_subject()
        if not subj:
            continue
        held = table.setdefault(subj, node)
        if held.number is not None and (node.number is None or (held.reply and not node.reply)):
            table[subj] = node
    top: list[_Node | None] = list(root.children)
    index = {id(node): i for i, node in enumerate(top)}
    for i in range(len(top)):  # step 5C; read live: _merge may put a dummy at a later index
        current = top[i]
        subj = current.thread_subject() if current is not None else ""
        match = table.get(subj)
        if current is None or match is None or match is current:
            continue
        top[i] = None
        table[subj] = _merge(match, current, top, index)
    root.children = [node for node in top if node is not None]


def _merge(held: _Node, node: _Node, top: list[_Node | None], index: dict[int, int]) -> _Node:
    """Step 5C merge rules; returns what the subject table holds afterwards."""
    if held.number is None and node.number is None:
        for child in node.children:
            _attach(held, child)
    elif held.number is None or (node.reply and not held.reply):
        _attach(held, node)
    else:
        dummy = _Node()
        top[index[id(held)]] = dummy
        index[id(dummy)] = index[id(held)]
        _attach(dummy, held)
        _attach(dummy, node)
        return dummy
    return held


def thread_references(messages: Sequence[ThreadInput]) -> list[Thread]:
    """THREAD=REFERENCES, RFC 5256 §3 (BASE.6.4.THREAD) steps 1-6."""
    root = _Node()
    for node in _link(messages):  # step 1
        if node.parent is None:  # step 2: parentless containers go under the root
            _attach(root, node)
    _prune(root)  # step 3
    for node in root.children:  # step 4: a dummy sorts its children, then sorts as the first
        if node.number is None:
            node.children.sort(key=_Node.key)
    root.children.sort(key=_Node.key)
    _group_by_subject(root)  # step 5
    for node in reversed(_walk(root)):  # step 6: youngest sibling sets first
        node.children.sort(key=_Node.key)
    return _freeze(root.children)


def _freeze(roots: Iterable[_Node]) -> list[Thread]:
    built: dict[int, Thread] = {}
    top = _Node()
    top.children = list(roots)
    for node in reversed(_walk(top)):
        kids = tuple(built.pop(id(child)) for child in node.children)
        built[id(node)] = Thread(node.number, kids)
    return list(built[id(top)].children)


# --- response syntax (RFC 5256 §4, §5 thread-list) ----------------------------------------


def format_threads(threads: Iterable[Thread]) -> bytes:
    """The THREAD response body: ``thread-list`` per thread, e.g. ``(2)(3 6 (4 23)(44 7 96))``.

    A single child continues its parent's ``thread-members``; two or more become
    ``thread-nested`` lists; a dummy contributes only its children.
    """
    out: list[str] = []
    stack: list[Thread | str] = []
    for thread in reversed(list(threads)):
        stack += [")", thread, "("]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        if item.number is not None:
            out.append(str(item.number) + (" " if item.children else ""))
        if len(item.children) == 1:
            stack.append(item.children[0])
            continue
        for child in reversed(item.children):
            stack += [")", child, "("]
    return "".join(out).encode("ascii")
