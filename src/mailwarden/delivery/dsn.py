"""Pure: compose a delivery status notification (a bounce, RFC 3464 in RFC 6522 multipart/report).

No I/O and no clock: every time is passed in. The output is a complete RFC 5322 message with
CRLF line ends, ready for the queue with a null reverse-path (RFC 5321 §4.5.5).

Determinism: the Message-ID and the MIME boundary are derived from a SHA-256 hash of all the
inputs (``now`` included), so the same call gives the same bytes and tests can compare them.

Untrusted text (the remote reply, the addresses, the returned header section) never reaches our
own header section unfiltered: line breaks and control characters become spaces before folding,
host names are reduced to host-name characters, and returned content sits in a body part whose
boundary is checked not to occur in it.

Internationalised mail (RFC 6533): when a recipient address or a remote reply is not ASCII, the
report part is ``message/global-delivery-status`` (8bit, UTF-8), such addresses use the ``utf-8``
address type in the utf-8-addr-unitext form, and the multipart/report's report-type follows the
report part's subtype (RFC 6522 §3). Returned header sections that are not ASCII go back as
``message/global-headers`` (or a whole message as ``message/global``, RFC 6532 §3.7). Any 8-bit
part is declared ``Content-Transfer-Encoding: 8bit`` on the part and on the message, so the
result needs 8BITMIME (and SMTPUTF8 when the To: address itself is not ASCII).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import textwrap
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

# RFC 3464 §2.3.3: the action-value vocabulary.
ACTIONS = frozenset({"failed", "delayed", "delivered", "relayed", "expanded"})
# RFC 3463 §2 / RFC 3464 §2.3.4: status-code = class "." subject "." detail.
_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
_DEFAULT_CLASS = {"failed": "5", "delayed": "4"}
_WIDTH = 76
_MAX_WORD = 900  # octets; RFC 5322 §2.1.1 caps a line at 998, and we fold only at spaces
_MAX_REPLY = 4000  # characters of remote reply we keep
_LONG_LINE = re.compile(rb"[^\r\n]{999}")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(rb"\r\n|\r|\n")
_HOST_CHARS = re.compile(r"[^A-Za-z0-9.:\[\]_-]")


@dataclass(frozen=True)
class FailedRecipient:
    recipient: str  # the address we tried
    status: str  # RFC 3463 code, e.g. "5.1.1" or "4.4.7" (expired)
    diagnostic: str  # the remote reply in full, e.g. "550 5.1.1 no such user", or ""
    remote_mta: str  # MX host name, or ""
    last_attempt: datetime
    action: str = "failed"  # RFC 3464 §2.3.3
    will_retry_until: datetime | None = None  # for action="delayed" (optional)


@dataclass(frozen=True)
class _Rcpt:
    """A recipient with every value already made safe to write."""

    address: str
    status: str
    reply: str
    mta: str
    action: str
    last_attempt: datetime
    retry_until: datetime | None


@dataclass(frozen=True)
class _Part:
    headers: str
    content: bytes


def compose_dsn(
    *,
    reporting_mta: str,
    original: bytes,
    original_sender: str,
    recipients: Sequence[FailedRecipient],
    arrival: datetime,
    now: datetime,
    message_id_domain: str,
    envelope_id: str = "",
    queue_id: str = "",
    include_body: bool = False,
    max_original: int = 256 * 1024,
) -> bytes:
    """The bounce for ``original`` to ``original_sender``, reporting on ``recipients``.

    Raises ValueError on caller errors: no recipients, an unknown action, a null or empty
    sender (RFC 5321 §4.5.5: never bounce a bounce) or an unusable host name.
    """
    mta = _required_host(reporting_mta, "reporting_mta")
    domain = _required_host(message_id_domain, "message_id_domain")
    sender = _address(original_sender)
    if not sender:
        raise ValueError("no DSN to the null reverse-path (RFC 5321 §4.5.5)")
    if not recipients:
        raise ValueError("a DSN needs at least one recipient")
    rcpts = [_clean_recipient(r) for r in recipients]
    parts = [
        _human_part(mta, rcpts, _oneline(queue_id)),
        _status_part(mta, rcpts, arrival, _envelope_id(envelope_id)),
        _returned_part(_crlf(original), include_body=include_body, limit=max_original),
    ]
    seed = _seed(mta, original, original_sender, recipients, now, envelope_id, queue_id)
    boundary = _boundary(seed, parts)
    msgid = f"<{_utc(now):%Y%m%d%H%M%S}.{seed[:20]}@{domain}>"  # RFC 5322 §3.6.4
    head = _message_headers(mta, sender, rcpts, now, msgid)
    # RFC 6522 §3: report-type is the subtype of the second part (RFC 6533 §6.4 for global).
    report_type = "delivery-status" if parts[1].content.isascii() else "global-delivery-status"
    head += _field(
        "Content-Type", f'multipart/report; report-type={report_type}; boundary="{boundary}"'
    )
    body = _assemble(boundary, parts)
    if not (head.isascii() and body.isascii()):
        head += "Content-Transfer-Encoding: 8bit\r\n"  # RFC 2045 §6.4: multipart is 7bit/8bit
    return head.encode("utf-8") + b"\r\n" + body


# --- sanitising --------------------------------------------------------------------------


def _oneline(text: str) -> str:
    """Untrusted text as one line: controls and line breaks become spaces, runs of white space
    one space; lone surrogates (from undecodable bytes) become U+FFFD."""
    out: list[str] = []
    for ch in text:
        cat = unicodedata.category(ch)
        out.append(" " if cat in ("Cc", "Zl", "Zp") else "\ufffd" if cat == "Cs" else ch)
    return " ".join("".join(out).split())


def _cap_words(text: str) -> str:
    """Split words too long to fold (RFC 5322 §2.1.1: lines of at most 998 octets)."""
    words: list[str] = []
    for word in text.split(" "):
        size = _MAX_WORD if word.isascii() else _MAX_WORD // 4
        words.extend(word[i : i + size] for i in range(0, len(word), size))
    return " ".join(words)


def _address(addr: str) -> str:
    """An envelope address for a field or line: one line, no angle brackets, no spaces
    outside what the address itself had."""
    return _oneline(addr).replace("<", "").replace(">", "").strip()


def _host(name: str) -> str:
    """A host name or address literal reduced to the characters one can have."""
    name = _oneline(name).rstrip(".")
    if not name.isascii():
        with contextlib.suppress(UnicodeError):  # IDNA 2003 A-labels (RFC 3490 §4)
            name = name.encode("idna").decode("ascii")
    return _HOST_CHARS.sub("", name)


def _required_host(name: str, what: str) -> str:
    host = _host(name)
    if not host:
        raise ValueError(f"{what} is not a usable host name: {name!r}")
    return host


def _envelope_id(envid: str) -> str:
    """RFC 3464 §2.2.1 / RFC 3461 §4.4: the ENVID, printable ASCII, at most 100 characters."""
    return "".join(ch for ch in envid if "!" <= ch <= "~")[:100]


def _clean_recipient(r: FailedRecipient) -> _Rcpt:
    action = r.action.strip().lower()
    if action not in ACTIONS:
        raise ValueError(f"unknown DSN action {r.action!r} (RFC 3464 §2.3.3)")
    address = _address(r.recipient)
    if not address:
        raise ValueError("a failed recipient without an address")
    status = r.status.strip()
    if not _STATUS.fullmatch(status):
        status = _DEFAULT_CLASS.get(action, "2") + ".0.0"  # RFC 3463 §3.1: "X.0.0" other
    reply = _cap_words(_oneline(r.diagnostic)[:_MAX_REPLY])
    retry = r.will_retry_until if action == "delayed" else None  # RFC 3464 §2.3.9
    return _Rcpt(address, status, reply, _host(r.remote_mta), action, r.last_attempt, retry)


def _unitext(addr: str) -> str:
    """RFC 6533 §3 utf-8-addr-unitext: UTF-8 kept; CTLs, SP, '\\', '+' and '=' as \\x{HEX}."""
    return "".join(
        f"\\x{{{ord(ch):02X}}}" if ord(ch) <= 0x20 or ch in "\\+=\x7f" else ch for ch in addr
    )


def _typed_address(addr: str) -> str:
    if addr.isascii():
        return f"rfc822; {addr}"  # RFC 3464 §2.3.2 address-type "rfc822"
    return f"utf-8; {_unitext(addr)}"  # RFC 6533 §3 address-type "utf-8"


# --- formatting --------------------------------------------------------------------------


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _date(when: datetime) -> str:
    return format_datetime(_utc(when))  # RFC 5322 §3.3 date-time (RFC 3464 §2.1.1)


def _field(name: str, value: str) -> str:
    """``Name: value`` folded at spaces near 78 columns (RFC 5322 §2.2.3). ``value`` is one
    line with single spaces, so unfolding gives it back exactly."""
    lines: list[str] = []
    line = f"{name}:"
    for word in value.split(" "):
        if len(line) + 1 + len(word) > 78 and line != f"{name}:":
            lines.append(line)
            line = ""
        line += " " + word
    lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def _crlf(data: bytes) -> bytes:
    """Any line-end convention to CRLF, ending with one."""
    data = _LINE_END.sub(b"\r\n", data)
    return data if not data or data.endswith(b"\r\n") else data + b"\r\n"


def _message_headers(mta: str, sender: str, rcpts: list[_Rcpt], now: datetime, msgid: str) -> str:
    delayed = all(r.action == "delayed" for r in rcpts)
    subject = (
        "Delivery Status Notification (Delay)" if delayed else "Undelivered Mail Returned to Sender"
    )
    return (
        f"From: Mail Delivery System <MAILER-DAEMON@{mta}>\r\n"
        + _field("To", f"<{sender}>")  # RFC 6532 §3.2: UTF-8 allowed for SMTPUTF8 senders
        + f"Subject: {subject}\r\n"
        + f"Date: {_date(now)}\r\n"
        + f"Message-ID: {msgid}\r\n"
        + "Auto-Submitted: auto-replied\r\n"  # RFC 3834 §5
        + "MIME-Version: 1.0\r\n"
    )


# --- the three parts (RFC 6522 §3) -------------------------------------------------------


def _text_headers(ctype: str, content: str | bytes, description: str) -> str:
    eight_bit = not content.isascii()
    return (
        f"Content-Description: {description}\r\n"
        f"Content-Type: {ctype}\r\n"
        f"Content-Transfer-Encoding: {'8bit' if eight_bit else '7bit'}\r\n"
    )


def _human_part(mta: str, rcpts: list[_Rcpt], queue_id: str) -> _Part:
    """RFC 6522 §3 first part: a human-readable explanation, wrapped, untrusted text one-lined."""
    delayed = all(r.action == "delayed" for r in rcpts)
    intro = (
        "Your message has not been delivered to one or more of its recipients yet. "
        "This is a warning only: you do not need to send it again."
        if delayed
        else "Your message could not be delivered to one or more of its recipients. "
        "The details follow; your message, or its header section, is attached."
    )
    paras = [f"This is the mail system at {mta}.", intro]
    if queue_id:
        paras.append(f"Queue ID: {queue_id}")
    plain = textwrap.TextWrapper(width=_WIDTH, break_on_hyphens=False)
    hanging = textwrap.TextWrapper(width=_WIDTH, subsequent_indent="    ", break_on_hyphens=False)
    lines = [plain.wrap(p) for p in paras] + [hanging.wrap(_explain(r)) for r in rcpts]
    text = "\r\n\r\n".join("\r\n".join(block) for block in lines) + "\r\n"
    charset = "us-ascii" if text.isascii() else "utf-8"
    headers = _text_headers(f"text/plain; charset={charset}", text, "Notification")
    return _Part(headers, text.encode("utf-8"))


def _explain(r: _Rcpt) -> str:
    what = {"failed": "delivery failed", "delayed": "delivery delayed"}.get(r.action, r.action)
    text = f"<{r.address}>: {what} (status {r.status})."
    if r.reply:
        text += f" {r.mta or 'The remote server'} said: {r.reply}"
    elif r.mta:
        text += f" Remote server: {r.mta}."
    if r.retry_until is not None:
        text += f" Will retry until {_date(r.retry_until)}."
    return text


def _status_part(mta: str, rcpts: list[_Rcpt], arrival: datetime, envid: str) -> _Part:
    """RFC 3464 §2.1: per-message fields, then one block per recipient, blank-line separated."""
    per_message = ""
    if envid:
        per_message += _field("Original-Envelope-Id", envid)  # RFC 3464 §2.2.1
    per_message += f"Reporting-MTA: dns; {mta}\r\n"  # RFC 3464 §2.2.2
    per_message += f"Arrival-Date: {_date(arrival)}\r\n"  # RFC 3464 §2.2.5
    blocks = [per_message, *(_recipient_block(r) for r in rcpts)]
    text = "\r\n".join(blocks)
    # RFC 6533 §4, §6.4: UTF-8 content needs the global type; it allows 8bit.
    ctype = "message/delivery-status" if text.isascii() else "message/global-delivery-status"
    headers = f"Content-Description: Delivery report\r\nContent-Type: {ctype}\r\n"
    if not text.isascii():
        headers += "Content-Transfer-Encoding: 8bit\r\n"
    return _Part(headers, text.encode("utf-8"))


def _recipient_block(r: _Rcpt) -> str:
    """RFC 3464 §2.3, fields in the order of its per-recipient-fields grammar."""
    block = _field("Final-Recipient", _typed_address(r.address))  # §2.3.2
    block += f"Action: {r.action}\r\n"  # §2.3.3
    block += f"Status: {r.status}\r\n"  # §2.3.4
    if r.mta:
        block += f"Remote-MTA: dns; {r.mta}\r\n"  # §2.3.5
    if r.reply:
        block += _field("Diagnostic-Code", f"smtp; {r.reply}")  # §2.3.6
    block += f"Last-Attempt-Date: {_date(r.last_attempt)}\r\n"  # §2.3.7
    if r.retry_until is not None:
        block += f"Will-Retry-Until: {_date(r.retry_until)}\r\n"  # §2.3.9
    return block


def _returned_part(message: bytes, *, include_body: bool, limit: int) -> _Part:
    """RFC 6522 §3 third part, never more than ``limit`` octets of the original: the whole
    message when asked for and it fits (and has no NUL or over-long line, so needs no binary
    transport, RFC 5321 §4.5.3.1.6), else its header section, cut at a field boundary."""
    end = _HEADER_END.search(message)
    head = message if end is None else message[: end.start() + 2]
    if message.startswith(b"\r\n"):
        head = b""
    if include_body and len(message) <= limit and not _needs_binary(message):
        ctype = "message/rfc822" if head.isascii() else "message/global"  # RFC 6532 §3.7
        return _Part(_text_headers(ctype, message, "Undelivered Message"), message)
    head = _cut_at_field(head, limit)
    ctype = "text/rfc822-headers"  # RFC 6522 §4
    if not head.isascii() and _is_utf8(head):
        ctype = "message/global-headers"  # RFC 6533 §6.3
    return _Part(_text_headers(ctype, head, "Undelivered Message Headers"), head)


def _needs_binary(message: bytes) -> bool:
    return b"\0" in message or _LONG_LINE.search(message) is not None


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _cut_at_field(head: bytes, limit: int) -> bytes:
    """The longest prefix of at most ``limit`` octets that ends where a header field ends."""
    if len(head) <= limit:
        return head
    end = limit
    while (i := head.rfind(b"\r\n", 0, end)) >= 0:
        if head[i + 2 : i + 3] not in (b" ", b"\t"):
            return head[: i + 2]
        end = i + 1
    return b""


# --- the envelope of parts ---------------------------------------------------------------


def _seed(
    mta: str,
    original: bytes,
    sender: str,
    recipients: Sequence[FailedRecipient],
    now: datetime,
    envid: str,
    queue_id: str,
) -> str:
    h = hashlib.sha256()
    for piece in (mta, sender, now.isoformat(), envid, queue_id, *map(repr, recipients)):
        h.update(piece.encode("utf-8", "surrogatepass") + b"\0")
    h.update(original)
    return h.hexdigest()


def _boundary(seed: str, parts: list[_Part]) -> str:
    """RFC 2046 §5.1.1: a boundary that occurs in none of the parts."""
    n = 0
    while True:
        digest = hashlib.sha256(f"{seed}/{n}".encode()).hexdigest()
        boundary = f"=_dsn_{digest[:32]}"
        if not any(boundary.encode() in p.content for p in parts):
            return boundary
        n += 1


def _assemble(boundary: str, parts: list[_Part]) -> bytes:
    """RFC 2046 §5.1.1 body: preamble, parts, close delimiter. Every part ends with CRLF
    (or is empty), so the CRLF before each delimiter is the delimiter's own."""
    out = [b"This is a MIME-encapsulated delivery status notification (RFC 3464).\r\n"]
    for part in parts:
        out.append(f"\r\n--{boundary}\r\n{part.headers}\r\n".encode())
        out.append(part.content)
    out.append(f"\r\n--{boundary}--\r\n".encode())
    return b"".join(out)
