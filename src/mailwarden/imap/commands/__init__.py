"""IMAP command handlers, one module per command group, and the table that finds them.

A handler is ``async def handler(session, tag, args, uid) -> Done``: it writes its
untagged responses with ``session.write`` and returns the tagged completion; errors it
raises are mapped to NO/BAD in one place (``session.completion_for``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mailwarden.imap.wire.tokens import Token

if TYPE_CHECKING:
    from mailwarden.imap.session import Done, ImapSession

Handler = Callable[["ImapSession", str, list[Token], bool], Awaitable["Done"]]

ANY = frozenset({"not authenticated", "authenticated", "selected"})
NOT_AUTH = frozenset({"not authenticated"})
AUTHED = frozenset({"authenticated", "selected"})
SELECTED = frozenset({"selected"})


@dataclass(frozen=True, slots=True)
class Spec:
    handler: Handler
    states: frozenset[str]
    uid: bool = False  # also valid after UID (RFC 3501 §6.4.8, RFC 4315, RFC 6851, RFC 5256)
    # EXPUNGE responses may not be sent while FETCH, STORE or SEARCH run (RFC 3501 §7.4.1)
    allows_expunge: bool = True


_TABLE: dict[str, Spec] = {}


def command(
    name: str, states: frozenset[str], *, uid: bool = False, allows_expunge: bool = True
) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _TABLE[name] = Spec(fn, states, uid, allows_expunge)
        return fn

    return register


def lookup(name: str, uid: bool) -> Spec | None:
    _load()
    spec = _TABLE.get(name)
    if spec is None or (uid and not spec.uid):
        return None
    return spec


def _load() -> None:
    if _TABLE:
        return
    from mailwarden.imap.commands import (  # noqa: F401 - registers the handlers
        append,
        auth,
        basic,
        fetch,
        folders,
        idle,
        mailbox,
        messages,
        quota,
        search,
    )
