"""Pure: raw message bytes → the decoded header fields kept for listing and search."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

from mailwarden.store.records import HeaderSummary

_parser = BytesHeaderParser(policy=compat32)


def header_section(raw: bytes) -> bytes:
    """The header section only (up to the first empty line), so the body is never parsed."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        end = raw.find(b"\n\n")
    return raw if end < 0 else raw[: end + 2]


def parse_headers(raw: bytes) -> Message:
    return _parser.parsebytes(header_section(raw))


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


def summarize(msg: Message) -> HeaderSummary:
    return HeaderSummary(
        message_id=str(msg.get("Message-ID", "")).strip(),
        subject=decode(msg.get("Subject")),
        from_addr=decode(msg.get("From")),
        to_addr=decode(msg.get("To")),
        cc_addr=decode(msg.get("Cc")),
        in_reply_to=str(msg.get("In-Reply-To", "")).strip(),
        date=_date(msg.get("Date")),
    )
