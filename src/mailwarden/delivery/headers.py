"""Pure: raw message bytes → the decoded header fields kept for listing and search."""

from __future__ import annotations

import email.errors
import email.utils
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from email.header import decode_header, make_header

from mailwarden.store.records import HeaderSummary

_FOLD = re.compile(r"\r?\n(?=[ \t])")


def decode(value: object) -> str:
    """RFC 2047 decoding that never raises; undecodable words are kept as they came."""
    if value is None:
        return ""
    text = str(value)
    try:
        return str(make_header(decode_header(text)))
    except (UnicodeError, LookupError, ValueError, email.errors.HeaderParseError):
        return text


def _date(value: object) -> datetime | None:
    if value is None:
        return None
    try:
        dt = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


_WANTED = frozenset({"message-id", "subject", "from", "to", "cc", "in-reply-to", "date"})


def _utf8(value: str) -> str:
    """Raw 8-bit header bytes come back from the parser as surrogate escapes; RFC 6532
    allows UTF-8 there, so decode them as UTF-8 (anything else becomes U+FFFD)."""
    if value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def summarize(fields: Sequence[tuple[str, str]]) -> HeaderSummary:
    """The first occurrence of each field we keep, unfolded and RFC 2047-decoded."""
    first: dict[str, str] = {}
    for name, value in fields:
        key = name.lower()
        if key in _WANTED and key not in first:
            first[key] = _FOLD.sub(" ", _utf8(str(value))).strip()
    return HeaderSummary(
        message_id=first.get("message-id", ""),
        subject=decode(first.get("subject")),
        from_addr=decode(first.get("from")),
        to_addr=decode(first.get("to")),
        cc_addr=decode(first.get("cc")),
        in_reply_to=first.get("in-reply-to", ""),
        date=_date(first.get("date")),
    )
