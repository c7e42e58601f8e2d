"""Pure header surgery on raw messages before they are stored."""

from __future__ import annotations

import re
from datetime import datetime
from email.utils import format_datetime
from typing import Any

from aiosmtpd.smtp import Envelope, Session

from mailwarden.smtp.server import session_tls

_AR = re.compile(rb"^authentication-results:[ \t]*([^;\s]+)", re.I)


def strip_forged_results(raw: bytes, authserv_id: str) -> bytes:
    """RFC 8601 §5: remove Authentication-Results fields claiming to be ours.

    Only the header section is touched; folded continuation lines go with their field.
    """
    end = raw.find(b"\r\n\r\n")
    head, body = (raw, b"") if end < 0 else (raw[: end + 2], raw[end + 2 :])
    if b"uthentication-" not in head and b"UTHENTICATION-" not in head:
        return raw
    ours = authserv_id.lower().encode()
    out: list[bytes] = []
    dropping = False
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                out.append(line)
            continue
        m = _AR.match(line)
        dropping = bool(m and m.group(1).lower() == ours)
        if not dropping:
            out.append(line)
    return b"\r\n".join(out) + body


def received_header(
    server: Any,
    session: Session,
    envelope: Envelope,
    queue_id: str,
    *,
    hostname: str,
    now: datetime,
    authenticated: bool = False,
) -> bytes:
    """RFC 5321 §4.4 trace header; "with" per RFC 3848 (ESMTP, ESMTPS, ESMTPSA, UTF8...)."""
    tls = session_tls(server)
    proto = "ESMTP" if session.extended_smtp else "SMTP"
    if "SMTPUTF8" in envelope.mail_options:
        proto = "UTF8" + proto
    if tls is not None:
        proto += "S"
    if authenticated:
        proto += "A"
    peer_ip = str(session.peer[0]) if session.peer else "unknown"
    helo = _safe(session.host_name or "unknown")
    cipher = tls.cipher() if tls else None
    tls_note = f" ({tls.version()} {_safe(cipher[0])})" if tls and cipher else ""
    rcpt = _safe(envelope.rcpt_tos[0]) if len(envelope.rcpt_tos) == 1 else ""
    for_clause = f"\r\n\tfor <{rcpt}>" if rcpt else ""
    return (
        f"Received: from {helo} ([{peer_ip}])\r\n\tby {hostname} (mailwarden)"
        f" with {proto}{tls_note} id {queue_id}{for_clause};\r\n\t{format_datetime(now)}\r\n"
    ).encode("utf-8", "replace")


def _safe(text: str) -> str:
    """Keep header-injection characters out of trace fields."""
    return "".join(c for c in text if c.isprintable() and c not in "\r\n()<>;")[:255]
