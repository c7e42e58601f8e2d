"""Flags, STORE and APPEND arguments (RFC 3501 §6.3.11, §6.4.6; RFC 7162 §3.1.3; RFC 6855 §4)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal

from mailwarden.imap.wire.args import ATOM_RE, parse_mailbox, parse_sequence_set
from mailwarden.imap.wire.search import MONTHS
from mailwarden.imap.wire.sequence import SequenceSet
from mailwarden.imap.wire.tokens import (
    MAX_NUMBER64,
    Atom,
    ImapSyntaxError,
    ParenList,
    String,
    Token,
    number,
    paren_list,
)

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")  # §2.3.2
_SYSTEM = {f.upper(): f for f in SYSTEM_FLAGS}
_DATE_TIME = re.compile(
    r"([ 0-9][0-9])-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{4})"
)


# -- flags (§9 flag, flag-list) --


def parse_flag(tok: Token) -> str:
    """One storable flag: a system flag (canonical case) or a keyword (as sent).

    ``\\Recent`` is set by the server only (§2.3.2), and other ``\\`` flags are
    RFC 3501 flag-extension words this server does not know, so both are refused.
    """
    if not isinstance(tok, Atom):
        raise ImapSyntaxError("expected a flag")
    text = tok.value
    if text.startswith("\\"):
        canonical = _SYSTEM.get(text.upper())
        if canonical is None:
            if text.upper() == "\\RECENT":
                raise ImapSyntaxError("\\Recent cannot be stored")
            raise ImapSyntaxError(f"unknown system flag {text[:40]}")
        return canonical
    if not ATOM_RE.fullmatch(text):
        raise ImapSyntaxError(f"invalid keyword {text[:40]!r}")
    return text


def parse_flag_list(toks: Sequence[Token]) -> tuple[str, ...]:
    """Flags of a §9 flag-list (may be empty), deduplicated in order."""
    return tuple(dict.fromkeys(parse_flag(t) for t in toks))


# -- STORE (§6.4.6, RFC 7162 §3.1.3) --


@dataclass(frozen=True, slots=True)
class StoreRequest:
    numbers: SequenceSet
    mode: Literal["replace", "add", "remove"]  # FLAGS / +FLAGS / -FLAGS
    flags: tuple[str, ...]
    silent: bool = False
    unchangedsince: int | None = None


_STORE_MODES: dict[str, Literal["replace", "add", "remove"]] = {
    "FLAGS": "replace",
    "+FLAGS": "add",
    "-FLAGS": "remove",
}


def parse_store(args: Sequence[Token]) -> StoreRequest:
    """``sequence-set [SP store-modifiers] SP store-att-flags`` (§9, RFC 7162 §3.1.3)."""
    if len(args) < 2:
        raise ImapSyntaxError("STORE needs a sequence set and flags")
    numbers = parse_sequence_set(args[0])
    i = 1
    unchangedsince: int | None = None
    if isinstance(args[1], ParenList):
        unchangedsince = _store_modifiers(args[1].items)
        i = 2
    item = args[i] if i < len(args) else None
    word = item.value.upper() if isinstance(item, Atom) else ""
    base, dot, suffix = word.partition(".")
    mode = _STORE_MODES.get(base)
    if mode is None or (dot and suffix != "SILENT"):
        raise ImapSyntaxError("STORE needs FLAGS, +FLAGS or -FLAGS[.SILENT]")
    rest = args[i + 1 :]
    # §9 store-att-flags: (flag-list / (flag *(SP flag))); flag-list may be empty.
    if len(rest) == 1 and isinstance(rest[0], ParenList):
        flags = parse_flag_list(rest[0].items)
    elif rest and not any(isinstance(t, ParenList) for t in rest):
        flags = parse_flag_list(rest)
    else:
        raise ImapSyntaxError("STORE needs a flag list")
    return StoreRequest(numbers, mode, flags, bool(dot), unchangedsince)


def _store_modifiers(toks: Sequence[Token]) -> int:
    # RFC 7162 §3.1.3: store-modifier =/ "UNCHANGEDSINCE" SP mod-sequence-valzer.
    if len(toks) != 2 or not isinstance(toks[0], Atom) or toks[0].value.upper() != "UNCHANGEDSINCE":
        raise ImapSyntaxError("unknown STORE modifier")
    return number(toks[1], limit=MAX_NUMBER64)


# -- APPEND (§6.3.11, RFC 3516 §4.4, RFC 6855 §4) --


@dataclass(frozen=True, slots=True)
class AppendRequest:
    mailbox: bytes
    message: bytes
    flags: tuple[str, ...] = ()
    internal_date: datetime | None = None
    utf8: bool = False  # RFC 6855 "UTF8 (~{n}...)": the message may carry raw UTF-8 headers
    binary: bool = False  # sent as literal8 (RFC 3516): may contain NUL, no CTE decoding


def parse_append(args: Sequence[Token]) -> AppendRequest:
    """``mailbox [SP flag-list] [SP date-time] SP (literal / "UTF8" SP "(" literal8 ")")``."""
    if len(args) < 2:
        raise ImapSyntaxError("APPEND needs a mailbox and a message")
    mailbox = parse_mailbox(args[0])
    i = 1
    flags: tuple[str, ...] = ()
    if isinstance(args[i], ParenList):
        flags = parse_flag_list(paren_list(args[i]))
        i += 1
    when: datetime | None = None
    tok = args[i] if i < len(args) else None
    if isinstance(tok, String) and not tok.literal:
        when = parse_date_time(tok)
        i += 1
    rest = args[i:]
    if len(rest) == 1 and isinstance(rest[0], String) and rest[0].literal:
        return AppendRequest(mailbox, rest[0].value, flags, when, binary=rest[0].binary)
    if (
        len(rest) == 2
        and isinstance(rest[0], Atom)
        and rest[0].value.upper() == "UTF8"
        and isinstance(rest[1], ParenList)
        and len(rest[1].items) == 1
        and isinstance(msg := rest[1].items[0], String)
        and msg.literal
        and msg.binary
    ):  # RFC 6855 §4: append-data =/ "UTF8" SP "(" literal8 ")"
        return AppendRequest(mailbox, msg.value, flags, when, utf8=True, binary=True)
    raise ImapSyntaxError("APPEND needs the message as a literal")


def parse_date_time(tok: Token) -> datetime:
    """§9 ``date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone``."""
    if not isinstance(tok, String) or tok.literal:
        raise ImapSyntaxError("expected a quoted date-time")
    text = tok.value.decode("ascii", "replace")
    m = _DATE_TIME.fullmatch(text)
    month = m.group(2).upper() if m else ""
    if m is None or month not in MONTHS or m.group(1) in ("  ", " 0"):
        raise ImapSyntaxError(f"invalid date-time {text[:40]!r}")
    zone = int(m.group(8)[:2]) * 60 + int(m.group(8)[2:])
    if int(m.group(8)[2:]) > 59:
        raise ImapSyntaxError(f"invalid time zone {text[-5:]!r}")
    tz = timezone(timedelta(minutes=-zone if m.group(7) == "-" else zone))
    try:
        day, year, hh, mm, ss = (int(m.group(k)) for k in (1, 3, 4, 5, 6))
        return datetime(year, MONTHS.index(month) + 1, day, hh, mm, ss, tzinfo=tz)
    except ValueError:
        raise ImapSyntaxError(f"invalid date-time {text[:40]!r}") from None
