"""Certificate judgments of the "tls" check, with no network: this module owns the trust
store (the system's CA certificates plus ``target.ca_file``), reading PEM and DER
certificates, and the rules one endpoint is judged by, each problem a Finding with the fix
to apply: the protocol is TLS 1.2 or newer (RFC 8996 retires TLS 1.0 and 1.1; RFC 9325 /
RFC 7525 are the TLS recommendations); a subjectAltName DNS name matches the hostname
(RFC 6125 §6.4, as RFC 9525 narrows it); the certificate is valid now and for more than
``EXPIRY_WARN`` still; it is not self-signed, the server sends the intermediates, and the
chain ends at a trusted root (RFC 5280 path validation with the Web PKI profile).
"""

from __future__ import annotations

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

from mailwarden.reputation.audit.model import Status

EXPIRY_WARN = dt.timedelta(days=14)
MODERN_PROTOCOLS = ("TLSv1.2", "TLSv1.3")  # RFC 8996: nothing older; RFC 9325 §3.1
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


# ------------------------------------------------------------------------- findings --


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem with an endpoint: how bad, what it is, and what to change."""

    status: Status
    text: str
    fix: str


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
