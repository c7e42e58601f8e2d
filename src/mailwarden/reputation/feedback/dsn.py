"""Pure: read an incoming bounce, an RFC 3464 delivery status notification, leniently.

The MIME tree is walked by hand, not by ``email``'s parser, to get the report part's raw bytes
whatever its transfer encoding and to stop early (``_MAX_PARTS`` entities, ``_MAX_DEPTH``
levels). ``message/delivery-status`` or ``message/global-delivery-status`` (RFC 6533) is found
anywhere in the tree; its fields are read through folding, comments, odd case, missing empty
lines and the ``rfc822`` and ``utf-8`` address types. Oddities go to ``ParsedDsn.defects``;
only the input's size makes this raise. Bounces without a report part are left to heuristics.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import collapse_rfc2231_value

from mailwarden.core.headers import read_headers

_MAX_PARTS = 500
_MAX_DEPTH = 12
_MAX_HEAD = 256 * 1024  # octets of one header section
# RFC 3464 §2 and RFC 6533 §6.4: the machine-readable report part.
_STATUS_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
_REPORT_TYPES = frozenset({"delivery-status", "global-delivery-status"})
# RFC 6522 §4, RFC 6533 §6.3, RFC 6532 §3.7: the returned message or header section (the
# non-standard message/rfc822-headers is seen in the wild).
_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})
_RETURNED_TYPES = _MESSAGE_TYPES | {"text/rfc822-headers", "message/rfc822-headers"}
_RETURNED_TYPES |= {"message/global-headers"}
# RFC 3464 §2.2 per-message and §2.3 per-recipient field names. A repeat of one of the
# _BLOCK_KEYS means a new recipient block began without an empty line.
_PER_MESSAGE = frozenset({"original-envelope-id", "reporting-mta", "dsn-gateway"})
_PER_MESSAGE |= {"received-from-mta", "arrival-date"}
_BLOCK_KEYS = frozenset({"original-recipient", "final-recipient", "action", "status"})
_PER_RECIPIENT = _BLOCK_KEYS | {"remote-mta", "diagnostic-code", "last-attempt-date"}
_PER_RECIPIENT |= {"final-log-id", "will-retry-until"}

_HEAD_PARSER = BytesHeaderParser(policy=compat32)
_FIELD_START = re.compile(rb"[!-9;-~]+[ \t]*:")  # RFC 5322 §3.6.8 field-name ":"
_FIELD = re.compile(r"([!-9;-~]+)[ \t]*:(.*)")
_LINES = re.compile(r"\r\n|\r|\n")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")
_TYPED = re.compile(r"([A-Za-z][A-Za-z0-9._-]*)[ \t]*;[ \t]*(.*)", re.DOTALL)
_STATUS_CODE = re.compile(r"(?<![\d.])[245]\.\d{1,3}\.\d{1,3}(?![\d.])")  # RFC 3463 §2
# RFC 5321 §4.2 reply code, then maybe an RFC 2034 enhanced code of the same class.
_REPLY = re.compile(r"([245])\d\d(?!\d)(?:[ -]+(\1\.\d{1,3}\.\d{1,3})(?![\d.]))?")
_UNICODE_ESCAPE = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")  # RFC 6533 §3 EmbeddedUnicodeChar
_MSGID = re.compile(r"<[^<>\s]+>")
_INLINE_START = re.compile(rb"(?im)^(?:original-envelope-id|reporting-mta|final-recipient)[ \t]*:")


@dataclass(frozen=True)
class DsnRecipient:
    final_recipient: str
    original_recipient: str
    action: str  # lower case, e.g. "failed" (RFC 3464 §2.3.3)
    status: str  # the RFC 3463 code when one was found, e.g. "5.1.1"
    diagnostic: str  # the Diagnostic-Code text without its type, e.g. "550 5.1.1 no such user"
    remote_mta: str  # the Remote-MTA name without its type


@dataclass(frozen=True)
class ParsedDsn:
    is_dsn: bool  # a real multipart/report delivery-status was found
    recipients: tuple[DsnRecipient, ...]
    reporting_mta: str
    original_message_id: str  # "<id@host>", from the returned headers/message if present
    original_envelope_id: str
    defects: tuple[str, ...]  # what was odd, parse leniently


@dataclass(frozen=True)
class _Entity:
    headers: Message
    body: bytes  # still transfer-encoded
    parent: int  # index of the enclosing entity in the walk; -1 for the message itself

    @property
    def ctype(self) -> str:
        return self.headers.get_content_type()


def parse_dsn(
    raw: bytes, *, max_size: int = 10 * 1024 * 1024, max_recipients: int = 1000
) -> ParsedDsn:
    """The delivery report in ``raw``. ValueError if ``raw`` is over ``max_size`` octets."""
    if len(raw) > max_size:
        raise ValueError(f"bounce of {len(raw)} octets is over the {max_size}-octet limit")
    if raw.startswith(b"From "):  # an mbox separator line, not a header field
        raw = raw[raw.find(b"\n") + 1 :] if b"\n" in raw else b""
    defects: list[str] = []
    entities = _walk(raw, defects)
    index, text = _find_status(entities, defects)
    if text is None:
        defects.append("no delivery-status part")
        return ParsedDsn(False, (), "", "", "", tuple(dict.fromkeys(defects)))
    per_message, blocks = _group(text, defects)
    recipients: list[DsnRecipient] = []
    for block in blocks:
        if len(recipients) >= max_recipients:
            defects.append(f"more than {max_recipients} recipients; the rest were not read")
            break
        if (recipient := _recipient(block, defects)) is not None:
            recipients.append(recipient)
    if not recipients:
        defects.append("delivery-status part without recipients")
    return ParsedDsn(
        is_dsn=True,
        recipients=tuple(recipients),
        reporting_mta=_mta(per_message.get("reporting-mta", "")),  # RFC 3464 §2.2.2
        original_message_id=_original_message_id(entities[index + 1 :], defects),
        original_envelope_id=" ".join(per_message.get("original-envelope-id", "").split()),
        defects=tuple(dict.fromkeys(defects)),
    )


# --- the MIME walk -----------------------------------------------------------------------


def _walk(raw: bytes, defects: list[str]) -> list[_Entity]:
    """Every entity, depth first in document order (RFC 2046 §5), within the caps."""
    out: list[_Entity] = []
    stack: list[tuple[bytes, int, int, str]] = [(raw, -1, 0, "text/plain")]
    while stack:
        if len(out) >= _MAX_PARTS:
            defects.append(f"more than {_MAX_PARTS} MIME parts; the rest were not read")
            break
        data, parent, depth, default = stack.pop()
        head, body = _split_head(data, defects)
        headers = _HEAD_PARSER.parsebytes(head)
        headers.set_default_type(default)
        entity = _Entity(headers, body, parent)
        out.append(entity)
        children = _children(entity, depth, defects)
        stack.extend((child, len(out) - 1, depth + 1, dflt) for child, dflt in reversed(children))
    return out


def _split_head(data: bytes, defects: list[str]) -> tuple[bytes, bytes]:
    """RFC 5322 §2.1: the header section ends at the first empty line. Leniently, a line that
    is neither a field nor a continuation ends it too, and starts the body; but an unindented
    ``name=value`` line after a field ending in ";" (seen from Exchange) continues that field."""
    lines: list[bytes] = []
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        end = len(data) if nl < 0 else nl + 1
        line = data[pos:end]
        if line in (b"\n", b"\r\n"):
            return b"".join(lines), data[end:]
        if end > _MAX_HEAD:
            defects.append(f"header section over {_MAX_HEAD} octets; the rest taken as body")
            return b"".join(lines), data[pos:]
        if _FIELD_START.match(line) or (lines and line[:1] in (b" ", b"\t")):
            lines.append(line)
        elif lines and lines[-1].rstrip().endswith(b";") and b"=" in line:
            defects.append("header field continued without indentation")
            lines.append(b" " + line)
        else:
            if lines:
                defects.append("header section not ended by an empty line")
            return b"".join(lines), data[pos:]
        pos = end
    return b"".join(lines), b""


def _children(entity: _Entity, depth: int, defects: list[str]) -> list[tuple[bytes, str]]:
    """The entities directly inside ``entity``, each with its default content type."""
    ctype = entity.ctype
    if not (ctype.startswith("multipart/") or ctype in _MESSAGE_TYPES):
        return []
    if depth >= _MAX_DEPTH:
        defects.append("MIME nesting too deep; the inner parts were not read")
        return []
    if ctype in _MESSAGE_TYPES:  # RFC 2046 §5.2.1; RFC 6532 §3.7 lets message/global be encoded
        return [(_decoded(entity, defects), "text/plain")]
    boundary = entity.headers.get_boundary()
    if not boundary:
        defects.append("multipart without a boundary")
        return []
    default = "message/rfc822" if ctype == "multipart/digest" else "text/plain"  # RFC 2046 §5.1.5
    parts = _split_multipart(entity.body, boundary.encode("utf-8", "surrogateescape"), defects)
    return [(part, default) for part in parts]


def _split_multipart(body: bytes, boundary: bytes, defects: list[str]) -> list[bytes]:
    """RFC 2046 §5.1.1: the parts between delimiter lines (the line end before a delimiter
    belongs to it). Leniently: white space after a delimiter, bare LF, no close delimiter."""
    delimiter = re.compile(rb"(?m)^--" + re.escape(boundary) + rb"(--)?[ \t]*\r?$")
    parts: list[bytes] = []
    start: int | None = None
    for match in delimiter.finditer(body):
        if start is not None:
            part = body[start : match.start()]
            parts.append(part[:-2] if part.endswith(b"\r\n") else part.removesuffix(b"\n"))
        if match.group(1):
            return parts
        if len(parts) >= _MAX_PARTS:
            defects.append(f"more than {_MAX_PARTS} MIME parts; the rest were not read")
            return parts
        start = match.end() + 1
    if start is None:
        defects.append("multipart without any body part")
    else:
        defects.append("multipart without a close delimiter")
        parts.append(body[start:])
    return parts


def _decoded(entity: _Entity, defects: list[str]) -> bytes:
    """RFC 2045 §6: undo a base64 or quoted-printable transfer encoding, forgivingly."""
    encoding = str(entity.headers.get("content-transfer-encoding", "")).strip().lower()
    if encoding == "quoted-printable":
        return binascii.a2b_qp(entity.body)
    if encoding != "base64":
        return entity.body
    data = _NOT_BASE64.sub(b"", entity.body)  # RFC 2045 §6.8: ignore characters not in it
    if len(data) % 4 == 1:
        defects.append("base64 body of an impossible length")
        data = data[:-1]
    return binascii.a2b_base64(data + b"=" * (-len(data) % 4))


# --- finding the report ------------------------------------------------------------------


def _find_status(entities: list[_Entity], defects: list[str]) -> tuple[int, str | None]:
    """The index and text of the report part; for a multipart/report whose parts could not be
    split (no delimiters), the fields in its body, if any."""
    found = [i for i, e in enumerate(entities) if e.ctype in _STATUS_TYPES]
    if found:
        index = found[0]
        if len(found) > 1:
            defects.append("more than one delivery-status part; the first was read")
        parent = entities[index].parent
        if parent < 0 or entities[parent].ctype != "multipart/report":
            defects.append("delivery-status part outside a multipart/report")  # RFC 6522 §3
        return index, _status_text(entities[index], defects)
    for i, entity in enumerate(entities):
        if entity.ctype != "multipart/report" or any(e.parent == i for e in entities):
            continue
        report_type = collapse_rfc2231_value(entity.headers.get_param("report-type", ""))
        match = _INLINE_START.search(entity.body)
        if report_type.strip().lower() in _REPORT_TYPES and match:
            defects.append("delivery-status fields outside any MIME part")
            return len(entities), entity.body[match.start() :].decode("utf-8", "replace")
    return -1, None


def _status_text(entity: _Entity, defects: list[str]) -> str:
    """The report part's text; DSN fields that landed in its MIME header section (no empty
    line after Content-Type) are put back in front."""
    spilled = [
        f"{name}: {_unsurrogate(value)}\n"
        for name, value in entity.headers.items()
        if name.lower() in _PER_MESSAGE or name.lower() in _PER_RECIPIENT
    ]
    if spilled:
        defects.append("no empty line between a MIME header section and the DSN fields")
    text = _decoded(entity, defects).decode("utf-8", "replace")  # RFC 6533 §6.4: UTF-8
    return "".join(spilled) + "\n" + text


def _unsurrogate(value: str) -> str:
    """compat32 hands 8-bit header bytes back as surrogate escapes; read them as UTF-8."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _original_message_id(after: list[_Entity], defects: list[str]) -> str:
    """The Message-ID of the first returned message or header section after the report."""
    for entity in after:
        if entity.ctype in _RETURNED_TYPES:
            head = _decoded(entity, defects).lstrip(b"\r\n")
            for name, value in read_headers(head):
                if name.lower() == "message-id":
                    text = _unsurrogate(value)
                    match = _MSGID.search(text)
                    return match.group(0) if match else " ".join(text.split())
            return ""
    return ""


# --- the report's fields -----------------------------------------------------------------


def _fields(text: str, defects: list[str]) -> Iterator[tuple[str, str] | None]:
    """RFC 3464 §2.1.1 fields as (lower-case name, unfolded value); None for an empty line."""
    name, value = "", ""
    for line in _LINES.split(text):
        if name and line[:1] in (" ", "\t") and line.strip():
            value += " " + line.strip()  # RFC 5322 §2.2.3 unfolding
            continue
        if name:
            yield name, value
            name = ""
        if not line.strip():
            yield None
            continue
        match = _FIELD.match(line)
        if match:
            name, value = match.group(1).lower(), match.group(2).strip()
        else:
            defects.append("delivery-status line that is not a field")
    if name:
        yield name, value


def _group(text: str, defects: list[str]) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The per-message fields (first of each) and the per-recipient blocks (RFC 3464 §2.1),
    also when the empty line between two blocks is missing."""
    per_message: dict[str, str] = {}
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    mixed = False  # per-message fields seen since the last empty line
    for item in _fields(text, defects):
        if item is None:
            if current:
                blocks.append(current)
            current, mixed = {}, False
            continue
        name, value = item
        if name in _PER_MESSAGE:
            per_message.setdefault(name, value)
            mixed = True
        elif name in _PER_RECIPIENT:
            if mixed:
                defects.append("no empty line after the per-message fields")
            if name in current and name in _BLOCK_KEYS:
                defects.append("no empty line between recipient blocks")
                blocks.append(current)
                current = {}
            current.setdefault(name, value)
            mixed = False
    if current:
        blocks.append(current)
    return per_message, blocks


def _recipient(fields: dict[str, str], defects: list[str]) -> DsnRecipient | None:
    final = _address(fields.get("final-recipient", ""), defects)
    original = _address(fields.get("original-recipient", ""), defects)
    if not final:
        if not original:
            defects.append("recipient block without an address")
            return None
        defects.append("recipient block without Final-Recipient")  # required, RFC 3464 §2.3
        final = original
    diagnostic = " ".join(_typed(fields.get("diagnostic-code", ""))[1].split())
    for name in ("action", "status"):
        if name not in fields:
            defects.append(f"recipient block without {name.title()}")  # required, RFC 3464 §2.3
    return DsnRecipient(
        final_recipient=final,
        original_recipient=original,
        action=_strip_comments(fields.get("action", "")).lower(),
        status=_status(fields.get("status", ""), diagnostic, defects),
        diagnostic=diagnostic,
        remote_mta=_mta(fields.get("remote-mta", "")),
    )


def _strip_comments(value: str) -> str:
    """RFC 3464 §2.1.1 / RFC 5322 §3.2.2: drop (nested) comments outside quoted strings,
    then collapse white space. An unclosed comment runs to the end."""
    out: list[str] = []
    depth, quoted, escaped = 0, False, False
    for ch in value:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"' and not depth:
            quoted = not quoted
        elif ch == "(" and not quoted:
            depth += 1
            continue
        elif ch == ")" and depth:
            depth -= 1
            continue
        if not depth:
            out.append(ch)
    return " ".join("".join(out).split())


def _typed(value: str) -> tuple[str, str]:
    """RFC 3464 §2.1.2 ``type ";" value``; ("", value) when there is no type."""
    match = _TYPED.fullmatch(value.strip())
    return (match.group(1).lower(), match.group(2)) if match else ("", value.strip())


def _address(value: str, defects: list[str]) -> str:
    """RFC 3464 §2.3.1/§2.3.2 ``address-type ";" generic-address`` → the address."""
    kind, addr = _typed(_strip_comments(value))
    addr = addr.strip()
    if addr.startswith("<") and addr.endswith(">"):
        addr = addr[1:-1].strip()
    if kind == "utf-8":  # RFC 6533 §3: utf-8-addr-xtext / utf-8-addr-unitext
        addr = _UNICODE_ESCAPE.sub(_unescape, addr)
    elif addr and not kind:
        defects.append("address without an address type")
    return addr


def _unescape(match: re.Match[str]) -> str:
    point = int(match.group(1), 16)
    if point > 0x10FFFF or 0xD800 <= point <= 0xDFFF:
        return match.group(0)
    return chr(point)


def _status(value: str, diagnostic: str, defects: list[str]) -> str:
    """RFC 3464 §2.3.4: the RFC 3463 code, found inside whatever else the field has. Without
    one, the code of an SMTP reply in the field or in Diagnostic-Code (RFC 3464 §2.3.6; a
    bare reply code gives "X.0.0", RFC 3463 §3.1)."""
    text = _strip_comments(value)
    match = _STATUS_CODE.search(text)
    if match:
        return match.group(0)
    for source in (text, diagnostic):
        reply = _REPLY.match(source)
        if reply:
            defects.append("status taken from an SMTP reply, not the Status field")
            return reply.group(2) or f"{reply.group(1)}.0.0"
    if text:
        defects.append("Status field without an RFC 3463 code")
    return text


def _mta(value: str) -> str:
    """RFC 3464 §2.2.2/§2.3.5 ``mta-name-type ";" mta-name`` → the name, comments dropped."""
    return _typed(_strip_comments(value))[1]
