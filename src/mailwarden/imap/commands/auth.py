"""STARTTLS, LOGIN and AUTHENTICATE (RFC 3501 §6.2, RFC 4959 SASL-IR, RFC 4616 PLAIN).

Logging in needs TLS (or a client in ``imap.plaintext_auth_networks``): before that the
server advertises LOGINDISABLED and refuses with [PRIVACYREQUIRED] (RFC 5530). Failed
logins are counted by the same AuthGuard as submission, per IP and per account; a
locked client is refused before its password is checked. Passwords are never logged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging

from mailwarden.imap.commands import NOT_AUTH, command
from mailwarden.imap.session import Done, ImapSession
from mailwarden.imap.wire.encode import Code, status
from mailwarden.imap.wire.tokens import Atom, ImapSyntaxError, String, Token, astring

log = logging.getLogger("mailwarden.imap.auth")
MAX_SASL_LINE = 16 * 1024


@command("STARTTLS", NOT_AUTH)
async def starttls(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    if args:
        raise ImapSyntaxError("STARTTLS takes no arguments")
    if s.tls:
        return Done("BAD", "TLS is already active")
    if s.ctx.tls is None:
        return Done("BAD", "STARTTLS is not available")
    s.write(status(tag, "OK", "Begin TLS negotiation now"))
    await s.start_tls()
    # RFC 3501 §6.2.1: the client must ask for CAPABILITY again; nothing more to send.
    return Done(sent=True)


@command("LOGIN", NOT_AUTH)
async def login(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    if len(args) != 2:
        raise ImapSyntaxError("LOGIN needs a user name and a password")
    user, password = (astring(a).decode("utf-8", "replace") for a in args)
    return await _authenticate(s, user, password)


@command("AUTHENTICATE", NOT_AUTH)
async def authenticate(s: ImapSession, tag: str, args: list[Token], uid: bool) -> Done:
    if not args or len(args) > 2 or not isinstance(args[0], Atom):
        raise ImapSyntaxError("AUTHENTICATE needs a mechanism")
    mechanism = args[0].value.upper()
    if mechanism not in ("PLAIN", "LOGIN"):
        return Done("NO", f"Unsupported mechanism {mechanism[:20]}", Code("CANNOT"))
    if not s.auth_allowed:
        return _privacy()
    initial = _initial_response(args[1]) if len(args) == 2 else None
    if mechanism == "PLAIN":
        data = initial if initial is not None else await _challenge(s, b"")
        user, password = _plain(data)
    else:  # the LOGIN mechanism (draft-murchison-sasl-login): username, then password
        name = initial if initial is not None else await _challenge(s, b"Username:")
        secret = await _challenge(s, b"Password:")
        user, password = name.decode("utf-8", "replace"), secret.decode("utf-8", "replace")
    return await _authenticate(s, user, password)


def _initial_response(tok: Token) -> bytes:
    # RFC 4959 §3: "=" is an empty initial response.
    if isinstance(tok, String):
        raw = tok.value.decode("ascii", "replace")
    else:
        raw = tok.value if isinstance(tok, Atom) else ""
    return b"" if raw == "=" else _b64(raw)


async def _challenge(s: ImapSession, prompt: bytes) -> bytes:
    """Send ``+ base64(prompt)`` and read the client's one-line answer (RFC 3501 §6.2.2)."""
    s.write(b"+ " + base64.b64encode(prompt) + b"\r\n")
    await s.flush()
    buf = s.commands.take_buffer()
    while b"\n" not in buf:
        if len(buf) > MAX_SASL_LINE:
            raise ImapSyntaxError("SASL response too long")
        data = await s.read_some()
        if not data:
            raise ConnectionError("client went away")
        buf += data
    line, _, rest = buf.partition(b"\n")
    s.commands.unread(rest)  # pipelined commands after the response stay queued
    text = line.rstrip(b"\r").decode("ascii", "replace")
    if text == "*":
        raise ImapSyntaxError("authentication cancelled")  # §6.2.2: BAD
    return _b64(text)


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeError):
        raise ImapSyntaxError("invalid base64 in SASL response") from None


def _plain(data: bytes) -> tuple[str, str]:
    # RFC 4616 §2: [authzid] NUL authcid NUL passwd
    parts = data.split(b"\0")
    if len(parts) != 3:
        raise ImapSyntaxError("malformed PLAIN response")
    authzid, authcid, passwd = (p.decode("utf-8", "replace") for p in parts)
    if authzid and authzid.lower() != authcid.lower():
        raise ImapSyntaxError("authorization identity must be the login")
    return authcid, passwd


def _privacy() -> Done:
    return Done("NO", "Log in over TLS (STARTTLS first, or port 993)", Code("PRIVACYREQUIRED"))


async def _authenticate(s: ImapSession, user: str, password: str) -> Done:
    if not s.auth_allowed:
        return _privacy()
    account = user.strip().lower()[:320]
    lock = await s.ctx.guard.check(s.ip, account)
    if lock is not None:
        log.warning("IMAP login refused for %s from %s: %s", account, s.ip, lock.reason)
        return Done("NO", "Too many failed logins; try again later", Code("UNAVAILABLE"))
    found = await s.ctx.accounts.authenticate(user, password)
    if found is None:
        await s.ctx.guard.failed(s.ip, account, "imap")
        log.info("IMAP login failed for %s from %s", account, s.ip)
        await asyncio.sleep(s.ctx.settings.auth_failure_delay)
        return Done("NO", "Authentication failed", Code("AUTHENTICATIONFAILED"))
    s.logged_in(found)
    log.info("IMAP login %s from %s", found.address, s.ip)
    return Done("OK", "Logged in", Code("CAPABILITY", *s.capabilities()))
