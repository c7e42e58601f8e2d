"""The network side of the "tls" check: this module owns reaching an endpoint the way a
sending MTA would (STARTTLS after EHLO, RFC 3207, or TLS on connect, RFC 8314), completing
the handshake and reporting what was negotiated and the certificates the server sent, as a
Handshake, or why it could not, as a ProbeError with the fix. The handshake is always
completed with an *unverifying* client context and the certificate is judged afterwards
(certcheck): aborting a handshake makes the server side log a failure, and a failed probe
would hide everything else we could say.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass

from mailwarden.reputation.audit.certcheck import FIX_PROTOCOL, FIX_PUBLIC_CA
from mailwarden.reputation.audit.model import Endpoint
from mailwarden.reputation.audit.net import close_writer

PROBE_TIMEOUT = 10.0  # seconds for one endpoint: connect, greeting, STARTTLS, handshake


# ----------------------------------------------------------------- what the probe saw --


@dataclass(frozen=True, slots=True)
class Handshake:
    """A completed handshake: what was negotiated and the certificates the server sent."""

    version: str  # "TLSv1.3"
    cipher: str
    leaf: bytes  # DER
    chain: tuple[bytes, ...] | None  # DER, leaf first, when the ssl module can tell


class ProbeError(Exception):
    """The endpoint could not be probed; the message says why, for the report."""

    def __init__(self, reason: str, fix: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix


# --------------------------------------------------------------------------- probing --


def probe_context() -> ssl.SSLContext:
    """A client context that completes the handshake whatever the certificate.

    It verifies nothing on purpose (the certificate is judged afterwards) and offers
    TLS 1.2 at least: RFC 8996 forbids less, and ssl deprecates asking for it.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


async def probe(ep: Endpoint, helo: str, sni: str) -> Handshake:
    """Connect to ``ep``, start TLS, read what was negotiated, QUIT; raises ProbeError."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            return await _probe(ep, helo, sni or None)
    except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
        raise _probe_error(ep, exc) from None


def _probe_error(ep: Endpoint, exc: Exception) -> ProbeError:
    reach = f"check that listener {ep.name} is running and reachable at {ep.host}:{ep.port}"
    if isinstance(exc, TimeoutError):
        return ProbeError(f"no answer within {PROBE_TIMEOUT:g} s", reach)
    if isinstance(exc, ssl.SSLError):
        return _handshake_failed(exc)
    if isinstance(exc, ConnectionRefusedError):
        return ProbeError("connection refused", reach)
    if isinstance(exc, (asyncio.IncompleteReadError, ConnectionError)):
        return ProbeError(f"connection closed by the server ({type(exc).__name__})")
    strerror = exc.strerror if isinstance(exc, OSError) else None
    return ProbeError(f"cannot connect: {strerror or exc}", reach)


async def _probe(ep: Endpoint, helo: str, sni: str | None) -> Handshake:
    ctx = probe_context()
    if ep.tls == "implicit":
        reader, writer = await asyncio.open_connection(
            ep.host, ep.port, ssl=ctx, server_hostname=sni
        )
    else:
        reader, writer = await asyncio.open_connection(ep.host, ep.port)
    try:
        await _expect(reader, "220", "greeting")
        if ep.tls == "starttls":
            await _starttls(ep, reader, writer, ctx, helo, sni)
        handshake = _negotiated(writer)
        writer.write(b"QUIT\r\n")
        with contextlib.suppress(ProbeError, asyncio.IncompleteReadError, OSError):
            await _expect(reader, "221", "QUIT")
        return handshake
    finally:
        await close_writer(writer)


async def _starttls(
    ep: Endpoint,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    ctx: ssl.SSLContext,
    helo: str,
    sni: str | None,
) -> None:
    writer.write(f"EHLO {helo}\r\n".encode())
    ehlo = await _expect(reader, "250", "EHLO")
    if not any(line[4:].strip().upper() == "STARTTLS" for line in ehlo):
        raise ProbeError(
            "STARTTLS not offered",
            f"set tls: starttls on listener {ep.name} (and tls.cert/tls.key)",
        )
    writer.write(b"STARTTLS\r\n")
    await _expect(reader, "220", "STARTTLS")
    await writer.start_tls(ctx, server_hostname=sni)


async def _expect(reader: asyncio.StreamReader, code: str, after: str) -> list[str]:
    """One SMTP reply (all its lines); ProbeError unless it has ``code``."""
    lines: list[str] = []
    while True:
        raw = await reader.readuntil(b"\n")
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        lines.append(line)
        if line[3:4] != "-":
            break
    if lines[-1][:3] != code:
        raise ProbeError(f"unexpected reply to {after}: {lines[-1][:200]}")
    return lines


def _negotiated(writer: asyncio.StreamWriter) -> Handshake:
    sslobj = writer.get_extra_info("ssl_object")
    if not isinstance(sslobj, ssl.SSLObject):
        raise ProbeError("no TLS session after the handshake")
    leaf = sslobj.getpeercert(binary_form=True)
    if not leaf:
        raise ProbeError("the server sent no certificate", FIX_PUBLIC_CA)
    cipher = sslobj.cipher()
    return Handshake(
        version=sslobj.version() or "unknown",
        cipher=cipher[0] if cipher else "unknown",
        leaf=leaf,
        chain=sent_chain(sslobj),
    )


def sent_chain(sslobj: ssl.SSLObject) -> tuple[bytes, ...] | None:
    """The certificates the server sent, leaf first (Python 3.13+); None before."""
    getter = getattr(sslobj, "get_unverified_chain", None)
    chain = getter() if getter is not None else None
    return tuple(bytes(c) for c in chain) if chain else None


def _handshake_failed(exc: ssl.SSLError) -> ProbeError:
    reason = exc.reason or str(exc)
    if "PROTOCOL_VERSION" in reason or "UNSUPPORTED_PROTOCOL" in reason:
        return ProbeError(
            "TLS handshake failed: the server offers no TLS 1.2 or 1.3 (RFC 8996)", FIX_PROTOCOL
        )
    return ProbeError(
        f"TLS handshake failed: {reason}",
        "check tls.cert and tls.key (the key must belong to the certificate)",
    )
