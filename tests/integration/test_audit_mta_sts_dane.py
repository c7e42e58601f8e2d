"""MTA-STS and DANE checks against the real Knot DNS server and a real HTTPS policy host.

The policy host is an asyncio TLS server on 127.0.0.1 with a certificate for
``mta-sts.<domain>`` issued by a CA made here; the check trusts that CA through
``target.ca_file`` and reaches the server on ``target.https_port``. All names resolve
through Knot (``mta-sts.<domain> A 127.0.0.1``), never through system DNS.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import os
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

import certs
from dnsserver import ZoneSet, txt
from mailwarden.dns.resolver import DnsPythonResolver
from mailwarden.reputation.audit.cache import CachingResolver
from mailwarden.reputation.audit.dane import check_dane, recommended_tlsa
from mailwarden.reputation.audit.model import AuditTarget, CheckResult
from mailwarden.reputation.audit.mta_sts import check_mta_sts
from mailwarden.reputation.audit.policy_fetch import fetch_policy

NOW = dt.datetime(2025, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
STS = "v=STSv1; id=20250101000000"


# ------------------------------------------------------------------ certificates


@dataclass(frozen=True)
class Pki:
    ca_file: Path  # the test CA, for target.ca_file
    cert_file: Path  # leaf + CA, PEM (what a server serves; target.cert_file)
    key_file: Path
    leaf: x509.Certificate


def issue(directory: Path, hostname: str) -> Pki:
    """A fresh CA and a server certificate for ``hostname`` signed by it, on disk."""
    ca = certs.make_ca()
    leaf = certs.issue(ca, hostname, days=1)
    cert_file, key_file = certs.write_chain(directory, leaf, ca)
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca.pem())
    return Pki(ca_file, cert_file, key_file, leaf.cert)


# ------------------------------------------------------------------ the policy host


def reply(status: str, body: str = "", content_type: str = "text/plain", **headers: str) -> bytes:
    data = body.encode()
    lines = [f"HTTP/1.1 {status}", f"Content-Type: {content_type}", "Connection: close"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    if "Transfer_Encoding" not in headers:
        lines.append(f"Content-Length: {len(data)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def chunked(body: str) -> bytes:
    data = body.encode()
    half = len(data) // 2
    parts = [data[:half], data[half:]]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


class PolicyHost:
    """HTTPS on 127.0.0.1: answers every request with ``self.answer`` and records it."""

    def __init__(self, pki: Pki, answer: bytes) -> None:
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self.ctx.load_cert_chain(pki.cert_file, pki.key_file)
        self.answer = answer
        self.requests: list[bytes] = []
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            self.requests.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(self.answer)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[PolicyHost]:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.ctx)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            await server.wait_closed()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=10)


# ------------------------------------------------------------------ helpers


def records(d: str, *extra: str, sts: str | None = STS, tlsrpt: bool = True) -> list[str]:
    out = ["@ MX 10 mx", "mx A 127.0.0.1", "mta-sts A 127.0.0.1", *extra]
    if sts is not None:
        out.append(f"_mta-sts TXT {txt(sts)}")
    if tlsrpt:
        out.append(f"_smtp._tls TXT {txt('v=TLSRPTv1; rua=mailto:tls-reports@' + d)}")
    return out


def policy(mx: str, mode: str = "enforce") -> str:
    return f"version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmax_age: 604800\r\n"


def target(d: str, pki: Pki | None = None, port: int = 443) -> AuditTarget:
    return AuditTarget(
        domain=d,
        hostname=f"mx.{d}",
        helo_name=f"mx.{d}",
        sending_ips=("127.0.0.1",),
        now=NOW,
        ca_file=pki.ca_file if pki else None,
        cert_file=pki.cert_file if pki else None,
        https_port=port,
    )


async def audit_sts(
    dns_zones: ZoneSet,
    resolver: DnsPythonResolver,
    tmp_path: Path,
    answer: bytes,
    zone: list[str] | None = None,
    cert_host: str | None = None,
) -> tuple[PolicyHost, CheckResult]:
    d = dns_zones.domain
    dns_zones.set_zone(d, records(d) if zone is None else zone)
    pki = issue(tmp_path / "pki", cert_host or f"mta-sts.{d}")
    async with PolicyHost(pki, answer).running() as host:
        result = await check_mta_sts(target(d, pki, host.port), CachingResolver(resolver))
    return host, result


# ------------------------------------------------------------------ MTA-STS


async def test_good_policy_passes(
    dns_zones: ZoneSet, dns_resolver: DnsPythonResolver, tmp_path: Path
) -> None:
    d = dns_zones.domain
    host, result = await audit_sts(
        dns_zones, dns_resolver, tmp_path, reply("200 OK", policy(f"mx.{d}"))
    )
    assert result.status == "pass", result.detail
    assert result.fix == ""
    (request,) = host.requests
    assert request.startswith(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\n")
    assert f"\r\nHost: mta-sts.{d}:{host.port}\r\n".encode() in request
    assert b"\r\nConnection: close\r\n" in request


async def test_wildcard_policy_and_chunked_body_pass(
    dns_zones: ZoneSet, dns_resolver: DnsPythonResolver, tmp_path: Path
) -> None:
    d = dns_zones.domain
    answer = reply("200 OK", content_type="text/plain; charset=utf-8", Transfer_Encoding="chunked")
    _, result = await audit_sts(
        dns_zones, dns_resolver, tmp_path, answer + chunked(policy(f"*.{d}"))
    )
    assert result.status == "pass", result.detail


async def test_policy_not_covering_our_mx_fails(
    dns_zones: ZoneSet, dns_resolver: DnsPythonResolver, tmp_path: Path
) -> None:
    d = dns_zones.domain
    answer = reply("200 OK", policy(f"mail.{d}"))
    _, result = await audit_sts(dns_zones, dns_resolver, tmp_path, answer)
    assert result.status == "fail"
    assert f"(mail.{d}) do not cover mx.{d}" in result.detail
    assert f"mode: enforce\nmx: mail.{d}\nmx: mx.{d}\nmax_age: 604800" in result.fix
    assert f'_mta-sts.{d}. TXT "v=STSv1; id=20250304050607"' in result.fix


async def test_policy_404_fails(
    dns_zones: ZoneSet, dns_resolver: DnsPythonResolver, tmp_path: Path
) -> None:
    d = dns_zones.domain
    _, result = await audit_sts(
        dns_zones, dns_resolver, tmp_path, reply("404 Not Found", "no such file")
    )
    assert result.status == "fail"
    assert "the server answered HTTP 404 Not Found (only 200 counts)" in result.detail
    assert f"https://mta-sts.{d}/.well-known/mta-sts.txt with HTTP 200" in result.fix
    assert f"mx: mx.{d}" in result.fix


async def test_redirect_is_not_followed(
    dns_zones: ZoneSet, dns_resolver: DnsPythonResolver, tmp_path: Path
) -> None:
    answer = reply("301 Moved Permanently", Location="https://example.net/mta-sts.txt")
    _, result = await audit_sts(dns_zones, dns_resolver, tmp_path, answer)
    assert result.status == "fail"
    assert "HTTP 301 (a redirect to https://example.net/mta-sts.txt" in result.detail


async def test_oversized_policy_is_refused(
    dns_zones: ZoneSet, dns_resolver: DnsPythonResolver, tmp_path: Path
) -> None:
    d = dns_zones.domain
    big = policy(f"mx.{d}") + "x: " + "y" * 70_000 + "\r\n"
    _, result = await audit_sts(dns_zones, dns_resolver, tmp_path, reply("200 OK", big))
    assert result.status == "fail"
    assert "larger than 64 KiB" in result.detail


async def test_certificate_for_another_name_fails(
    dns_zones: ZoneSet, dns_resolver: DnsPythonResolver, tmp_path: Path
) -> None:
    d = dns_zones.domain
    answer = reply("200 OK", policy(f"mx.{d}"))
    _, result = await audit_sts(dns_zones, dns_resolver, tmp_path, answer, cert_host=f"www.{d}")
    assert result.status == "fail"
    assert "127.0.0.1: TLS certificate not accepted" in result.detail
    assert f"mta-sts.{d}" in result.detail


async def test_untrusted_ca_fails(
    dns_zones: ZoneSet, dns_resolver: DnsPythonResolver, tmp_path: Path
) -> None:
    d = dns_zones.domain
    dns_zones.set_zone(d, records(d))
    pki = issue(tmp_path / "pki", f"mta-sts.{d}")
    async with PolicyHost(pki, reply("200 OK", policy(f"mx.{d}"))).running() as host:
        untrusted = target(d, None, host.port)
        result = await check_mta_sts(untrusted, CachingResolver(dns_resolver))
    assert result.status == "fail"
    assert "TLS certificate not accepted" in result.detail
    assert not host.requests


async def test_nothing_listening_fails(
    dns_zones: ZoneSet, dns_resolver: DnsPythonResolver, tmp_path: Path
) -> None:
    d = dns_zones.domain
    dns_zones.set_zone(d, records(d))
    pki = issue(tmp_path / "pki", f"mta-sts.{d}")
    async with PolicyHost(pki, b"").running() as host:
        port = host.port  # free again once the server is closed
    result = await check_mta_sts(target(d, pki, port), CachingResolver(dns_resolver))
    assert result.status == "fail"
    assert "127.0.0.1: connection failed (Connect call failed" in result.detail


async def test_missing_tlsrpt_warns(
    dns_zones: ZoneSet, dns_resolver: DnsPythonResolver, tmp_path: Path
) -> None:
    d = dns_zones.domain
    answer = reply("200 OK", policy(f"mx.{d}"))
    _, result = await audit_sts(
        dns_zones, dns_resolver, tmp_path, answer, zone=records(d, tlsrpt=False)
    )
    assert result.status == "warn"
    assert f"TLS reporting is not set up at _smtp._tls.{d}" in result.detail
    assert result.fix == f'_smtp._tls.{d}. TXT "v=TLSRPTv1; rua=mailto:tls-reports@{d}"'


async def test_testing_mode_warns(
    dns_zones: ZoneSet, dns_resolver: DnsPythonResolver, tmp_path: Path
) -> None:
    d = dns_zones.domain
    answer = reply("200 OK", policy(f"mx.{d}", "testing"))
    _, result = await audit_sts(dns_zones, dns_resolver, tmp_path, answer)
    assert result.status == "warn"
    assert "Switch to enforce once the TLS reports show no failures" in result.detail
    assert f"mode: enforce\nmx: mx.{d}" in result.fix


async def test_no_mta_sts_warns_with_the_fix(
    dns_zones: ZoneSet, dns_resolver: DnsPythonResolver
) -> None:
    d = dns_zones.domain
    dns_zones.set_zone(d, records(d, sts=None, tlsrpt=False))
    result = await check_mta_sts(target(d), CachingResolver(dns_resolver))
    assert result.status == "warn"
    assert f"No MTA-STS record at _mta-sts.{d}" in result.detail
    assert f'_mta-sts.{d}. TXT "v=STSv1; id=20250304050607"' in result.fix
    assert f"https://mta-sts.{d}/.well-known/mta-sts.txt" in result.fix
    assert f"version: STSv1\nmode: testing\nmx: mx.{d}\nmax_age: 604800" in result.fix
    assert f'_smtp._tls.{d}. TXT "v=TLSRPTv1; rua=mailto:tls-reports@{d}"' in result.fix


async def test_fetch_policy_returns_the_text(
    dns_zones: ZoneSet, dns_resolver: DnsPythonResolver, tmp_path: Path
) -> None:
    d = dns_zones.domain
    dns_zones.set_zone(d, records(d))
    pki = issue(tmp_path / "pki", f"mta-sts.{d}")
    async with PolicyHost(pki, reply("200 OK", policy(f"mx.{d}"))).running() as host:
        text = await fetch_policy(dns_resolver, f"mta-sts.{d}", host.port, pki.ca_file)
    assert text == policy(f"mx.{d}")


# ------------------------------------------------------------------ DANE


def dnskey() -> str:
    return "@ DNSKEY 257 3 13 " + base64.b64encode(os.urandom(64)).decode()


async def test_dane_signed_and_matching_passes(
    dns_zones: ZoneSet, dns_resolver: DnsPythonResolver, tmp_path: Path
) -> None:
    d = dns_zones.domain
    pki = issue(tmp_path / "pki", f"mx.{d}")
    tlsa = recommended_tlsa(pki.leaf).text
    dns_zones.set_zone(d, records(d, dnskey(), f"_25._tcp.mx TLSA {tlsa}"))
    result = await check_dane(target(d, pki), CachingResolver(dns_resolver))
    assert result.status == "pass", result.detail
    assert result.fix == ""


async def test_dane_wrong_tlsa_fails(
    dns_zones: ZoneSet, dns_resolver: DnsPythonResolver, tmp_path: Path
) -> None:
    d = dns_zones.domain
    pki = issue(tmp_path / "pki", f"mx.{d}")
    wrong = "3 1 1 " + os.urandom(32).hex()
    dns_zones.set_zone(d, records(d, dnskey(), f"_25._tcp.mx TLSA {wrong}"))
    result = await check_dane(target(d, pki), CachingResolver(dns_resolver))
    assert result.status == "fail"
    assert f"No TLSA record at _25._tcp.mx.{d} ({wrong[:22]}…)" in result.detail
    assert f"_25._tcp.mx.{d}. IN TLSA {recommended_tlsa(pki.leaf).text}" in result.fix


async def test_dane_signed_without_tlsa_warns(
    dns_zones: ZoneSet, dns_resolver: DnsPythonResolver, tmp_path: Path
) -> None:
    d = dns_zones.domain
    pki = issue(tmp_path / "pki", f"mx.{d}")
    dns_zones.set_zone(d, records(d, dnskey()))
    result = await check_dane(target(d, pki), CachingResolver(dns_resolver))
    assert result.status == "warn"
    assert result.fix == f"_25._tcp.mx.{d}. IN TLSA {recommended_tlsa(pki.leaf).text}"


async def test_dane_unsigned_zone_skips(
    dns_zones: ZoneSet, dns_resolver: DnsPythonResolver, tmp_path: Path
) -> None:
    d = dns_zones.domain
    pki = issue(tmp_path / "pki", f"mx.{d}")
    tlsa = recommended_tlsa(pki.leaf).text
    dns_zones.set_zone(d, records(d, f"_25._tcp.mx TLSA {tlsa}"))
    result = await check_dane(target(d, pki), CachingResolver(dns_resolver))
    assert result.status == "skip"
    assert result.detail == "zone is not DNSSEC-signed; DANE does not apply"
