"""The "tls" check: what a sending MTA sees when it starts TLS with our listeners.

Every endpoint is probed the way a peer would reach it (STARTTLS after EHLO, RFC 3207, or
TLS on connect, RFC 8314). The handshake is always completed with an *unverifying* client
context and the certificate is judged afterwards in code: aborting a handshake makes the
server side log a failure, and a failed probe would hide everything else we could say.

Judged per endpoint (RFC 9325 / RFC 7525 are the TLS recommendations, RFC 8996 retires
TLS 1.0 and 1.1, RFC 6125 §6.4 is how a client matches the certificate to the name):

* the protocol is TLS 1.2 or newer;
* a subjectAltName DNS name matches ``target.hostname``;
* the certificate is valid now and for more than ``EXPIRY_WARN`` still;
* it is not self-signed, the server sends the intermediates, and the chain ends at a
  trusted root (the system store plus ``target.ca_file``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import re
import ssl
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from mailwarden.reputation.audit.cache import CachingResolver
from mailwarden.reputation.audit.model import AuditTarget, CheckResult, Endpoint, Status
from mailwarden.reputation.audit.net import close_writer

NAME = "tls"
PROBE_TIMEOUT = 10.0  # seconds for one endpoint: connect, greeting, STARTTLS, handshake
EXPIRY_WARN = dt.timedelta(days=14)
MODERN_PROTOCOLS = ("TLSv1.2", "TLSv1.3")  # RFC 8996: nothing older; RFC 9325 §3.1
_RANK: dict[Status, int] = {"skip": 0, "pass": 1, "warn": 2, "fail": 3}
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)

FIX_PUBLIC_CA = "get a certificate from a public CA, e.g. Let's Encrypt, and set tls.cert/tls.key"
FIX_CHAIN = (
    "set tls.cert to the full chain file: the certificate first, then its intermediates "
    "(with Let's Encrypt: fullchain.pem, not cert.pem)"
)
FIX_PROTOCOL = (
    "offer TLS 1.2 and 1.3 only (RFC 8996, RFC 9325); mailwarden's listeners do, so check "
    "any TLS proxy or load balancer in front of them"
)


# ----------------------------------------------------------------- what the probe saw --


@dataclass(frozen=True, slots=True)
class Handshake:
    """A completed handshake: what was negotiated and the certificates the server sent."""

    version: str  # "TLSv1.3"
    cipher: str
    leaf: bytes  # DER
    chain: tuple[bytes, ...] | None  # DER, leaf first, when the ssl module can tell


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem with an endpoint: how bad, what it is, and what to change."""

    status: Status
    text: str
    fix: str


class ProbeError(Exception):
    """The endpoint could not be probed; the message says why, for the report."""

    def __init__(self, reason: str, fix: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix


# ------------------------------------------------------------------- the public check --


async def check_tls(target: AuditTarget, dns: CachingResolver) -> CheckResult:
    """Probe every TLS endpoint of ``target``; one result for all of them (never raises)."""
    if not target.endpoints:
        return CheckResult(NAME, "skip", "no SMTP listener with TLS to probe")
    try:
        probes = await asyncio.gather(*(_probe_or_reason(ep, target) for ep in target.endpoints))
        return await asyncio.to_thread(_judge_all, target, probes)
    except Exception as exc:  # a bug must not cost the whole audit
        return CheckResult(NAME, "warn", f"could not check: {type(exc).__name__}: {exc}")


def _judge_all(target: AuditTarget, probes: Sequence[Handshake | ProbeError]) -> CheckResult:
    roots = trusted_roots(target.ca_file)
    served = read_pem_certificates(target.cert_file) if target.cert_file else []
    lines: list[str] = []
    findings: list[Finding] = []
    for ep, probe in zip(target.endpoints, probes, strict=True):
        prefix = f"{ep.name} {ep.host}:{ep.port} ({ep.tls})"
        if isinstance(probe, ProbeError):
            lines.append(f"{prefix}: {probe.reason}")
            findings.append(Finding("fail", probe.reason, probe.fix))
            continue
        line, found = judge_handshake(probe, target.hostname, target.now, roots, served)
        lines.append(f"{prefix}: {line}")
        findings.extend(found)
    return aggregate(lines, findings)


def aggregate(lines: Sequence[str], findings: Sequence[Finding]) -> CheckResult:
    """Fail if any endpoint fails, warn if any warns, else pass; fixes said once each."""
    status: Status = max((f.status for f in findings), key=_RANK.__getitem__, default="pass")
    fixes = list(dict.fromkeys(f.fix for f in findings if f.fix))
    return CheckResult(NAME, status, "; ".join(lines), "\n".join(fixes))


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


async def _probe_or_reason(ep: Endpoint, target: AuditTarget) -> Handshake | ProbeError:
    try:
        return await probe(ep, target.helo_name, target.hostname)
    except ProbeError as exc:
        return exc
    except Exception as exc:
        return ProbeError(f"probe failed: {type(exc).__name__}: {exc}")


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


# ------------------------------------------------------------------------ trust store --


def trusted_roots(ca_file: Path | None) -> list[x509.Certificate]:
    """The system's CA certificates plus those in ``ca_file`` (blocking: run in a thread)."""
    roots = list(_system_roots())
    if ca_file is not None:
        roots.extend(read_pem_certificates(ca_file))
    return roots


@functools.cache
def _system_roots() -> tuple[x509.Certificate, ...]:
    """The CA store OpenSSL uses by default (its cafile, else every file of its capath)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_default_certs()
    if not ctx.get_ca_certs():
        capath = ssl.get_default_verify_paths().capath
        for path in sorted(Path(capath).iterdir()) if capath else ():
            with contextlib.suppress(ssl.SSLError, OSError):
                ctx.load_verify_locations(cafile=path)
    return tuple(parse_certificates(ctx.get_ca_certs(binary_form=True)))


def read_pem_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM file, in order; [] when it cannot be read."""
    try:
        data = path.read_bytes()
    except OSError:
        return []
    return parse_certificates(m.group(0) for m in _PEM_CERT.finditer(data))


def parse_certificates(blobs: Iterable[bytes]) -> list[x509.Certificate]:
    """PEM or DER certificates; those that do not parse are left out.

    Several widely trusted roots (Go Daddy G2, Starfield G2, ...) have serial number 0,
    which cryptography accepts with a CryptographyDeprecationWarning; it says nothing
    about the certificates we check, so it is silenced here.
    """
    out: list[x509.Certificate] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        for blob in blobs:
            try:
                if blob.startswith(b"-----"):
                    out.append(x509.load_pem_x509_certificate(blob))
                else:
                    out.append(x509.load_der_x509_certificate(blob))
            except ValueError:
                continue
    return out


# --------------------------------------------------------------------------- judging --


def judge_handshake(
    hs: Handshake,
    hostname: str,
    now: dt.datetime,
    roots: Sequence[x509.Certificate],
    served: Sequence[x509.Certificate],
) -> tuple[str, list[Finding]]:
    """The report line of one endpoint and what is wrong with it."""
    try:
        leaf = x509.load_der_x509_certificate(hs.leaf)
    except ValueError as exc:
        finding = Finding("fail", f"unreadable certificate ({exc})", FIX_PUBLIC_CA)
        return f"{hs.version}, {finding.text}", [finding]
    intermediates = intermediates_for(leaf, hs.chain, served)
    findings = [
        f
        for f in (
            check_protocol(hs.version),
            check_name(leaf, hostname),
            check_validity(leaf, now),
            check_chain(leaf, intermediates, roots, hostname, now),
        )
        if f is not None
    ]
    if findings:
        problems = "; ".join(f.text for f in findings)
        return f"{hs.version}, {problems} (issued by {issuer_name(leaf)})", findings
    until = leaf.not_valid_after_utc.date().isoformat()
    return (
        f"{hs.version}, certificate for {hostname} valid until {until}, "
        f"issued by {issuer_name(leaf)}",
        [],
    )


def intermediates_for(
    leaf: x509.Certificate,
    chain: tuple[bytes, ...] | None,
    served: Sequence[x509.Certificate],
) -> list[x509.Certificate]:
    """What the server sent after the leaf: from the handshake when the ssl module shows
    it, else from our tls.cert file when the leaf served is its first certificate (the
    server loads that file with load_cert_chain and sends all of it)."""
    if chain is not None:
        return parse_certificates(chain[1:])
    if served and served[0] == leaf:
        return list(served[1:])
    return []


def check_protocol(version: str) -> Finding | None:
    """RFC 8996: TLS 1.0 and 1.1 must not be used; RFC 9325 §3.1: TLS 1.2 at least."""
    if version in MODERN_PROTOCOLS:
        return None
    return Finding("fail", f"{version} negotiated, older than TLS 1.2 (RFC 8996)", FIX_PROTOCOL)


def certificate_names(cert: x509.Certificate) -> list[str]:
    """The subjectAltName DNS names (RFC 6125 §6.4.4: the CN is not consulted)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [str(n) for n in san.value.get_values_for_type(x509.DNSName)]


def hostname_matches(pattern: str, hostname: str) -> bool:
    """RFC 6125 §6.4.3 as RFC 9525 §6.3 narrows it: case-insensitive; a wildcard only as
    the whole leftmost label, standing for exactly one label, never under a single-label
    name ("*.test") and never for an A-label."""
    pattern, hostname = _normalize(pattern), _normalize(hostname)
    if not pattern or not hostname:
        return False
    if not pattern.startswith("*."):
        return "*" not in pattern and pattern == hostname
    rest = pattern[2:]
    head, dot, tail = hostname.partition(".")
    return (
        "*" not in rest
        and "." in rest
        and bool(head and dot)
        and not head.startswith("xn--")
        and tail == rest
    )


def _normalize(name: str) -> str:
    name = name.strip().rstrip(".").lower()
    try:
        return name.encode("idna").decode("ascii") if not name.isascii() else name
    except UnicodeError:
        return name


def check_name(cert: x509.Certificate, hostname: str) -> Finding | None:
    names = certificate_names(cert)
    if any(hostname_matches(n, hostname) for n in names):
        return None
    fix = f"get a certificate that lists {hostname} in its subjectAltName; set tls.cert/tls.key"
    if not names:
        return Finding("fail", "certificate has no subjectAltName DNS name", fix)
    return Finding("fail", f"certificate is for {', '.join(names)}, not {hostname}", fix)


def classify_expiry(cert: x509.Certificate, now: dt.datetime) -> tuple[Status, str]:
    """pass, warn (``EXPIRY_WARN`` or less left) or fail (expired or not yet valid)."""
    now = _utc(now)
    after, before = cert.not_valid_after_utc, cert.not_valid_before_utc
    if now < before:
        return "fail", f"certificate not valid before {before:%Y-%m-%d %H:%M} UTC"
    if now >= after:
        return "fail", f"certificate expired on {after.date().isoformat()}"
    left = after - now
    if left <= EXPIRY_WARN:
        return "warn", f"certificate expires in {_days(left)} ({after.date().isoformat()})"
    return "pass", f"valid until {after.date().isoformat()}"


def _days(left: dt.timedelta) -> str:
    days = round(left / dt.timedelta(days=1))
    return "less than a day" if left.days < 1 else f"{days} day{'s' * (days != 1)}"


def check_validity(cert: x509.Certificate, now: dt.datetime) -> Finding | None:
    status, text = classify_expiry(cert, now)
    if status == "pass":
        return None
    if _utc(now) < cert.not_valid_before_utc:
        fix = "check this host's clock; if it is right, have the certificate reissued"
    else:
        until = cert.not_valid_after_utc.date().isoformat()
        fix = (
            f"renew the certificate (it ends {until}), e.g. with certbot renew, and restart "
            "mailwarden so it serves the new tls.cert"
        )
    return Finding(status, text, fix)


def _utc(now: dt.datetime) -> dt.datetime:
    return now.replace(tzinfo=dt.UTC) if now.tzinfo is None else now.astimezone(dt.UTC)


# ------------------------------------------------------------------------------ chain --


def check_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    hostname: str,
    now: dt.datetime,
) -> Finding | None:
    """Does ``leaf`` plus what the server sent lead to a trusted root (RFC 5280 path
    validation with the Web PKI profile, as a verifying sender would do it)?

    Name and dates are checked by check_name and check_validity, so this one verifies
    at a moment the leaf is valid, for a name it carries: each problem is told once.
    """
    if is_self_signed(leaf):
        return Finding(
            "fail",
            "self-signed: receivers that check certificates "
            "(MTA-STS, DANE-less enforcing senders) will refuse",
            FIX_PUBLIC_CA,
        )
    if not roots:
        return Finding("warn", "cannot verify the chain: no CA certificates on this host", "")
    subject = _subject_for(leaf, hostname)
    if subject is None:
        return None  # no usable DNS name: check_name has said it
    policy = PolicyBuilder().store(Store(list(roots))).time(_within(leaf, now))
    try:
        policy.build_server_verifier(subject).verify(leaf, list(intermediates))
    except VerificationError as exc:
        return _chain_problem(leaf, intermediates, roots, str(exc))
    return None


def is_self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def missing_issuer(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
) -> x509.Name | None:
    """The issuer the chain stops at when it is neither sent nor trusted; None when the
    path reaches a trusted name or ends at a root the server sent itself."""
    trusted = {c.subject for c in roots}
    sent = {c.subject: c for c in intermediates}
    cert, seen = leaf, {leaf.subject}
    while cert.issuer not in trusted:
        nxt = sent.get(cert.issuer)
        if nxt is None or nxt.subject in seen:
            return None if cert.issuer == cert.subject else cert.issuer
        seen.add(nxt.subject)
        cert = nxt
    return None


def _chain_problem(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    error: str,
) -> Finding:
    missing = missing_issuer(leaf, intermediates, roots)
    if missing is not None:
        return Finding(
            "fail",
            f"chain incomplete: the server does not send the certificate of {_name(missing)}",
            FIX_CHAIN,
        )
    return Finding("fail", f"certificate does not chain to a trusted CA ({error})", FIX_PUBLIC_CA)


def _subject_for(leaf: x509.Certificate, hostname: str) -> x509.DNSName | None:
    """The name to verify the path for: ``hostname`` when the leaf carries it, else one
    of its own names (a wildcard made concrete)."""
    names = certificate_names(leaf)
    candidates = [hostname] if any(hostname_matches(n, hostname) for n in names) else []
    candidates += ["wildcard" + n[1:] if n.startswith("*.") else n for n in names]
    for name in candidates:
        if any(hostname_matches(n, name) for n in names):
            with contextlib.suppress(ValueError):
                return x509.DNSName(_normalize(name))
    return None


def _within(leaf: x509.Certificate, now: dt.datetime) -> dt.datetime:
    """``now`` clamped into the leaf's validity (its last second when it has expired)."""
    last = leaf.not_valid_after_utc - dt.timedelta(seconds=1)
    return max(leaf.not_valid_before_utc, min(_utc(now), last))


def issuer_name(cert: x509.Certificate) -> str:
    return _name(cert.issuer)


def _name(name: x509.Name) -> str:
    """The CN (with the organization when there is one), else the whole DN."""
    cn = [str(a.value) for a in name.get_attributes_for_oid(NameOID.COMMON_NAME)]
    org = [str(a.value) for a in name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    if cn:
        return f"{cn[0]} ({org[0]})" if org and org[0] != cn[0] else cn[0]
    return name.rfc4514_string() or "an empty name"
