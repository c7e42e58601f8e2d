"""LIST arguments (RFC 3501 §6.3.8, RFC 5258 LIST-EXTENDED, RFC 5819, RFC 6154) and matching.

:func:`pattern_matches` runs the ``*`` / ``%`` wildcards as a bit-parallel NFA
(shift-and): one big-integer step per character of the name, whatever the pattern, so
``%a%a%a...`` cannot trigger exponential backtracking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mailwarden.imap.wire.args import parse_mailbox, parse_status_items
from mailwarden.imap.wire.tokens import Atom, ImapSyntaxError, ParenList, String, Token

SELECT_OPTIONS = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
RETURN_OPTIONS = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"})


@dataclass(frozen=True, slots=True)
class ListRequest:
    """``LIST [(select-opts)] reference (pattern / (patterns)) [RETURN (return-opts)]``."""

    reference: bytes
    patterns: tuple[bytes, ...]
    select: frozenset[str] = frozenset()
    returns: frozenset[str] = frozenset()
    status_items: tuple[str, ...] = ()  # RFC 5819 RETURN (STATUS (...))
    extended: bool = False  # select options, several patterns or RETURN were used


def parse_list(args: Sequence[Token]) -> ListRequest:
    """RFC 5258 §6: ``list = "LIST" [SP list-select-opts] SP mailbox SP mbox-or-pat
    [SP list-return-opts]``."""
    i = 0
    select: frozenset[str] = frozenset()
    extended = False
    if args and isinstance(args[0], ParenList):
        select = _select_options(args[0].items)
        extended = True
        i = 1
    if len(args) < i + 2:
        raise ImapSyntaxError("LIST needs a reference and a mailbox pattern")
    reference = parse_mailbox(args[i])
    pat = args[i + 1]
    if isinstance(pat, ParenList):  # RFC 5258 §6 patterns = "(" list-mailbox *(SP ...) ")"
        if not pat.items:
            raise ImapSyntaxError("empty LIST pattern list")
        patterns = tuple(_list_mailbox(t) for t in pat.items)
        extended = True
    else:
        patterns = (_list_mailbox(pat),)
    rest = args[i + 2 :]
    returns: frozenset[str] = frozenset()
    status: tuple[str, ...] = ()
    if rest:
        head = rest[0]
        if len(rest) != 2 or not isinstance(head, Atom) or head.value.upper() != "RETURN":
            raise ImapSyntaxError("unexpected LIST arguments")
        if not isinstance(rest[1], ParenList):
            raise ImapSyntaxError("RETURN needs an option list")
        returns, status = _return_options(rest[1].items)
        extended = True
    return ListRequest(reference, patterns, select, returns, status, extended)


def _select_options(toks: Sequence[Token]) -> frozenset[str]:
    words = {_word(t) for t in toks}
    if not words <= SELECT_OPTIONS:
        raise ImapSyntaxError("unknown LIST selection option")  # RFC 5258 §3: BAD
    if words == {"RECURSIVEMATCH"}:  # RFC 5258 §3.1: never on its own
        raise ImapSyntaxError("RECURSIVEMATCH needs another selection option")
    return frozenset(words)


def _return_options(toks: Sequence[Token]) -> tuple[frozenset[str], tuple[str, ...]]:
    words: set[str] = set()
    status: tuple[str, ...] = ()
    i = 0
    while i < len(toks):
        word = _word(toks[i])
        if word not in RETURN_OPTIONS or word in words:
            raise ImapSyntaxError("unknown LIST return option")  # RFC 5258 §3: BAD
        words.add(word)
        if word == "STATUS":  # RFC 5819 §2: "STATUS" SP "(" status-att *(SP status-att) ")"
            if i + 1 >= len(toks):
                raise ImapSyntaxError("STATUS needs an item list")
            status = parse_status_items(toks[i + 1])
            i += 1
        i += 1
    return frozenset(words), status


def _list_mailbox(tok: Token) -> bytes:
    # §9 list-mailbox = 1*list-char / string; list-char includes "%" "*" "]".
    if isinstance(tok, String):
        if tok.binary:
            raise ImapSyntaxError("expected a mailbox pattern")
        return tok.value
    if isinstance(tok, Atom):
        return tok.value.encode("ascii")
    raise ImapSyntaxError("expected a mailbox pattern")


def _word(tok: Token) -> str:
    return tok.value.upper() if isinstance(tok, Atom) else ""


def pattern_matches(pattern: str, name: str, delimiter: str = "/") -> bool:
    """§6.3.8: ``*`` matches anything, ``%`` anything but the hierarchy delimiter.

    Case-sensitive; the session folds ``INBOX`` first. State bit ``j`` means "the
    first ``j`` pattern characters match the name so far".
    """
    pat: list[str] = []
    for c in pattern:  # "**" = "*", "%%" = "%", "%*" = "*%" = "*"
        if c in "*%" and pat and pat[-1] in "*%":
            pat[-1] = "*" if "*" in (c, pat[-1]) else "%"
        else:
            pat.append(c)
    literal: dict[str, int] = {}
    wild = star_loop = pct_loop = 0
    for j, c in enumerate(pat):
        if c == "*":
            wild |= 1 << j
            star_loop |= 1 << (j + 1)
        elif c == "%":
            wild |= 1 << j
            pct_loop |= 1 << (j + 1)
        else:
            literal[c] = literal.get(c, 0) | 1 << j

    def closure(state: int) -> int:
        # A wildcard may match nothing; wildcards are never adjacent, so one step suffices.
        return state | (state & wild) << 1

    state = closure(1)
    for c in name:
        loops = star_loop if c == delimiter else star_loop | pct_loop
        state = closure((state & literal.get(c, 0)) << 1 | state & loops)
        if not state:
            return False
    return bool(state >> len(pat) & 1)
