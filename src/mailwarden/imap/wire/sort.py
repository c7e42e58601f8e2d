"""SORT and THREAD arguments (RFC 5256 §3, RFC 5267 ESORT, RFC 5957 DISPLAYFROM/DISPLAYTO)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mailwarden.imap.wire.search import (
    SearchKey,
    parse_charset,
    parse_return_options,
    parse_search_keys,
    word_of,
)
from mailwarden.imap.wire.tokens import ImapSyntaxError, ParenList, Token


@dataclass(frozen=True, slots=True)
class SortCriterion:
    key: str  # ARRIVAL CC DATE FROM SIZE SUBJECT TO DISPLAYFROM DISPLAYTO
    reverse: bool = False


@dataclass(frozen=True, slots=True)
class SortRequest:
    """RFC 5256 §3 SORT; ``returns`` is RFC 5267 ESORT's ``RETURN (...)``."""

    criteria: tuple[SortCriterion, ...]
    charset: str
    query: SearchKey
    returns: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class ThreadRequest:
    """RFC 5256 §3 THREAD."""

    algorithm: str  # REFERENCES / ORDEREDSUBJECT
    charset: str
    query: SearchKey


_SORT_KEYS = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)
THREAD_ALGORITHMS = frozenset({"REFERENCES", "ORDEREDSUBJECT"})


def parse_sort(args: Sequence[Token]) -> SortRequest:
    """``SORT [RETURN (opts)] (criteria) charset 1*(SP search-key)`` (RFC 5256 §3, RFC 5267)."""
    i = 0
    returns: frozenset[str] | None = None
    if args and word_of(args[0]) == "RETURN":
        if len(args) < 2:
            raise ImapSyntaxError("RETURN needs an option list")
        returns = parse_return_options(args[1], allow_save=False)
        i = 2
    if len(args) < i + 3:
        raise ImapSyntaxError("SORT needs criteria, a charset and search keys")
    criteria = _sort_criteria(args[i])
    return SortRequest(
        criteria, parse_charset(args[i + 1]), parse_search_keys(args[i + 2 :]), returns
    )


def parse_thread(args: Sequence[Token]) -> ThreadRequest:
    """``THREAD algorithm charset 1*(SP search-key)`` (RFC 5256 §3)."""
    if len(args) < 3:
        raise ImapSyntaxError("THREAD needs an algorithm, a charset and search keys")
    algorithm = word_of(args[0])
    if algorithm not in THREAD_ALGORITHMS:
        raise ImapSyntaxError("unknown THREAD algorithm")
    return ThreadRequest(algorithm, parse_charset(args[1]), parse_search_keys(args[2:]))


def _sort_criteria(tok: Token) -> tuple[SortCriterion, ...]:
    # RFC 5256 §3: sort-criteria = "(" sort-criterion *(SP sort-criterion) ")";
    # sort-criterion = ["REVERSE" SP] sort-key.
    if not isinstance(tok, ParenList) or not tok.items:
        raise ImapSyntaxError("SORT criteria must be a non-empty list")
    out: list[SortCriterion] = []
    reverse = False
    for item in tok.items:
        word = word_of(item)
        if word == "REVERSE" and not reverse:
            reverse = True
        elif word in _SORT_KEYS:  # DISPLAYFROM / DISPLAYTO: RFC 5957 §3
            out.append(SortCriterion(word, reverse))
            reverse = False
        else:
            raise ImapSyntaxError("invalid SORT criterion")
    if reverse:
        raise ImapSyntaxError("REVERSE must be followed by a sort key")
    return tuple(out)
