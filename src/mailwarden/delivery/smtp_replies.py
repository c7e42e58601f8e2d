"""Replies of remote SMTP servers as values, and the client's failure types.

A reply is kept in full (code, RFC 3463 enhanced code, text): the delivery events and the
reputation engine's classifier read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import aiosmtplib

# RFC 3463 §2: class.subject.detail; RFC 2034 §3: the class matches the reply code's.
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")


@dataclass(frozen=True, slots=True)
class RemoteReply:
    """A reply, or ``code=None`` when none came (network error, timeout, garbage).
    ``enhanced``: the RFC 3463 code the server sent, else "X.0.0" of the reply class."""

    code: int | None
    enhanced: str
    text: str

    @property
    def success(self) -> bool:
        return self.code is not None and 200 <= self.code < 300

    @property
    def temporary(self) -> bool:
        return self.code is None or 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return self.code is not None and self.code >= 500

    def __str__(self) -> str:
        return f"{self.code if self.code is not None else '---'} {self.enhanced} {self.text}"


def parse_reply(code: int, message: str) -> RemoteReply:
    """Split the enhanced status code (RFC 2034 §3: on every line) off the reply text;
    lines are joined with a space."""
    enhanced = ""
    lines = []
    for raw in message.split("\n"):
        line = raw.strip()
        m = _ENHANCED.match(line)
        if m and m.group(1) == str(code)[:1]:
            enhanced = enhanced or m.group(0)
            line = line[m.end() :].strip()
        lines.append(line)
    if not enhanced:
        enhanced = f"{code // 100}.0.0"  # RFC 3463 §3.1: X.0.0 "other undefined status"
    return RemoteReply(code, enhanced, " ".join(x for x in lines if x))


@dataclass
class ConnectionFacts:
    mx_host: str
    mx_ip: str
    source_ip: str
    tls: bool
    tls_version: str  # "" without TLS


@dataclass
class TransactionResult:
    replies: dict[str, RemoteReply] = field(default_factory=dict)
    latency_ms: int = 0


class ConnectFailure(Exception):
    """No hop gave a usable session. ``reply`` is the last failure, ``tried`` lists
    ``host[ip]:port`` for every address attempted."""

    def __init__(self, reply: RemoteReply, tried: list[str]) -> None:
        super().__init__(f"{reply} (tried {', '.join(tried) or 'nothing'})")
        self.reply = reply
        self.tried = tried


class Broken(Exception):
    """This connection (attempt) is over; ``reply`` says why."""

    def __init__(self, reply: RemoteReply) -> None:
        super().__init__(str(reply))
        self.reply = reply


def no_reply(enhanced: str, text: str) -> Broken:
    return Broken(RemoteReply(None, enhanced, text))


def as_reply(exc: BaseException, where: str) -> RemoteReply:
    """An aiosmtplib/OS exception as a RemoteReply (RFC 3463 codes as Postfix uses them)."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        if 200 <= exc.code < 600:
            return parse_reply(exc.code, exc.message)
        # X.5.0 "other or undefined protocol status": the reply was not SMTP at all.
        return RemoteReply(None, "4.5.0", f"unparseable reply {where}: {exc.message}")
    if isinstance(exc, TimeoutError):  # aiosmtplib.SMTPTimeoutError is one
        return RemoteReply(None, "4.4.2", f"timeout {where}")
    return RemoteReply(None, "4.4.2", f"connection lost {where}: {exc}")
