"""The HTTPS fetch of an MTA-STS policy (RFC 8461 §3.3).

This module owns getting the policy file from ``https://mta-sts.<domain>/.well-known/
mta-sts.txt``: the policy URL, the TLS context (system CAs plus an optional CA file,
hostname checked, TLS 1.2+), a minimal HTTP/1.1 GET that follows no redirects and reads
plain, Content-Length or chunked bodies up to a size limit within a timeout, and
``PolicyFetchError`` saying in words why a fetch failed. The policy host's addresses come
from the audit's resolver, never from system DNS, so the fetch sees the same DNS as every
other check (and as the tests' DNS server). It does not parse or judge the policy.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from pathlib import Path

from mailwarden.core.errors import MailwardenError
from mailwarden.dns.resolver import Resolver, addresses
from mailwarden.reputation.audit.net import close_writer

POLICY_PATH = "/.well-known/mta-sts.txt"  # RFC 8461 §3.2
FETCH_TIMEOUT = 10.0  # seconds for the whole fetch (RFC 8461 §3.3: senders SHOULD time out)
MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 §3.3: senders SHOULD limit the policy size


class PolicyFetchError(MailwardenError):
    """The policy could not be fetched: no address, TLS/connect failure, a non-200
    answer, a malformed or oversized response. The message says which, in words."""


@dataclass(frozen=True, slots=True)
class PolicyResponse:
    url: str
    content_type: str
    text: str


def policy_url(host: str, port: int = 443) -> str:
    netloc = host if port == 443 else f"{host}:{port}"
    return f"https://{netloc}{POLICY_PATH}"


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """System CAs plus ``ca_file``; hostname checked; TLS 1.2+ (RFC 8461 §3.3)."""
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file is not None:
        ctx.load_verify_locations(cafile=str(ca_file))
    return ctx


def _request(host: str, port: int) -> bytes:
    netloc = host if port == 443 else f"{host}:{port}"
    return (
        f"GET {POLICY_PATH} HTTP/1.1\r\nHost: {netloc}\r\nUser-Agent: mailwarden-audit\r\n"
        "Accept: text/plain\r\nConnection: close\r\n\r\n"
    ).encode("ascii")


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, str, dict[str, str]]:
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if not (version.startswith("HTTP/") and len(code) == 3 and code.isdigit()):
        raise PolicyFetchError(f"the server did not answer HTTP ({lines[0][:60]!r})")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(code), reason.strip(), headers


def _status_problem(code: int, reason: str, headers: dict[str, str]) -> str:
    if 300 <= code < 400:  # RFC 8461 §3.3: senders MUST NOT follow redirects
        where = headers.get("location", "?")
        return f"the server answered HTTP {code} (a redirect to {where}, which senders ignore)"
    return f"the server answered HTTP {code} {reason}".rstrip() + " (only 200 counts)"


def _check_size(size: int) -> None:
    if size > MAX_POLICY_BYTES:  # RFC 8461 §3.3: refuse oversized policies
        raise PolicyFetchError(f"the policy is larger than {MAX_POLICY_BYTES // 1024} KiB")


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";")[0].strip(), 16)
        except ValueError as exc:
            raise PolicyFetchError("the server sent a malformed chunked body") from exc
        if size == 0:
            return bytes(body)
        _check_size(len(body) + size)
        body += await reader.readexactly(size)
        await reader.readexactly(2)  # the CRLF after each chunk


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _read_chunked(reader)
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise PolicyFetchError(f"the server sent Content-Length {length!r}")
        _check_size(int(length))
        return await reader.readexactly(int(length))
    body = bytearray()
    while chunk := await reader.read(65536):
        body += chunk
        _check_size(len(body))
    return bytes(body)


async def _exchange(ip: str, port: int, host: str, ctx: ssl.SSLContext) -> PolicyResponse:
    reader, writer = await asyncio.open_connection(ip, port, ssl=ctx, server_hostname=host)
    try:
        writer.write(_request(host, port))
        await writer.drain()
        code, reason, headers = await _read_head(reader)
        if code != 200:  # RFC 8461 §3.3: only a 200 response carries a policy
            raise PolicyFetchError(_status_problem(code, reason, headers))
        body = await _read_body(reader, headers)
    finally:
        await close_writer(writer)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyFetchError("the policy is not UTF-8 text") from exc
    return PolicyResponse(policy_url(host, port), headers.get("content-type", ""), text)


def _describe(exc: Exception) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {FETCH_TIMEOUT:g} s"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or exc})"
    if isinstance(exc, OSError):
        return f"connection failed ({exc.strerror or exc})"
    return f"malformed HTTP response ({type(exc).__name__})"


async def fetch_policy_response(
    dns: Resolver, host: str, port: int, ca_file: Path | None
) -> PolicyResponse:
    """GET the policy from ``host`` (addresses via ``dns``), trying each address until
    one answers; PolicyFetchError says what went wrong. DnsError passes through."""
    found = await addresses(dns, host)
    if not found:
        raise PolicyFetchError(f"{host} has no A or AAAA record")
    ctx = await asyncio.to_thread(tls_context, ca_file)
    deadline = asyncio.get_running_loop().time() + FETCH_TIMEOUT
    errors: list[str] = []
    for ip in found:
        try:
            async with asyncio.timeout_at(deadline):
                return await _exchange(ip, port, host, ctx)
        except PolicyFetchError:
            raise  # the server answered: another address would not answer differently
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
            errors.append(f"{ip}: {_describe(e)}")
    raise PolicyFetchError("; ".join(errors))


async def fetch_policy(dns: Resolver, host: str, port: int, ca_file: Path | None) -> str:
    """The policy text at ``https://<host>:<port>/.well-known/mta-sts.txt``."""
    return (await fetch_policy_response(dns, host, port, ca_file)).text
