"""DANE for SMTP (RFC 7672): the "dane" check.

DANE only means something in a DNSSEC-signed zone. We count the zone as signed when its
apex has DNSKEY records; we do not look for a validated AD bit, because the audit's
resolver may be a plain stub (or the tests' authoritative server) that never sets it.

In a signed zone, our MX host (the MX record equal to ``target.hostname``) should have
TLSA records at ``_25._tcp.<host>`` that match the certificate we serve
(``target.cert_file``: PEM, leaf first, then the chain). We recommend ``3 1 1``: DANE-EE,
SubjectPublicKeyInfo, SHA-256 (RFC 7671 §5.1), which survives certificate renewals that
keep the key. MX hosts run by others are theirs to check.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mailwarden.dns.resolver import mx_hosts
from mailwarden.reputation.audit.cache import CachingResolver
from mailwarden.reputation.audit.model import AuditTarget, CheckResult

NAME = "dane"
UNSIGNED = "zone is not DNSSEC-signed; DANE does not apply"
UNSIGNED_FIX = "Optional: sign the zone with DNSSEC; the audit then prints the TLSA record."

DANE_TA, DANE_EE = 2, 3  # RFC 7672 §3.1.1, §3.1.2: the usages SMTP uses
USAGE_NAMES = {0: "PKIX-TA", 1: "PKIX-EE", 2: "DANE-TA", 3: "DANE-EE"}


def _cert_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def _spki_der(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _exact(data: bytes) -> bytes:
    return data


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _sha512(data: bytes) -> bytes:
    return hashlib.sha512(data).digest()


# RFC 6698 §2.1.2 selectors and §2.1.3 matching types
SELECTORS: dict[int, Callable[[x509.Certificate], bytes]] = {0: _cert_der, 1: _spki_der}
MATCHING: dict[int, Callable[[bytes], bytes]] = {0: _exact, 1: _sha256, 2: _sha512}


@dataclass(frozen=True, slots=True)
class Tlsa:
    usage: int
    selector: int
    mtype: int
    data: bytes

    @property
    def text(self) -> str:
        """Presentation form, as in a zone file: ``3 1 1 <hex>``."""
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex()}"

    @property
    def short(self) -> str:
        """For details: the hex cut to 16 digits."""
        digits = self.data.hex()
        return f"{self.usage} {self.selector} {self.mtype} {digits[:16]}{'…' * (len(digits) > 16)}"


def parse_tlsa(text: str) -> Tlsa:
    """``"3 1 1 ABCD EF01"`` (dnspython's text form; the hex may be split) → Tlsa."""
    parts = text.split()
    try:
        if len(parts) < 4:
            raise ValueError("too few fields")
        usage, selector, mtype = (int(p) for p in parts[:3])
        return Tlsa(usage, selector, mtype, bytes.fromhex("".join(parts[3:])))
    except ValueError as exc:
        raise ValueError(f"{text[:40]!r} is not a TLSA record ({exc})") from exc


def unusable_reason(rec: Tlsa) -> str | None:
    """Why an SMTP client ignores this record, or None if it is usable."""
    if rec.usage in (0, 1):  # RFC 7672 §3.1.3: PKIX-TA/PKIX-EE are not for SMTP
        return f"usage {rec.usage} ({USAGE_NAMES[rec.usage]}) is not for SMTP (RFC 7672 §3.1.3)"
    if rec.usage not in (DANE_TA, DANE_EE):
        return f"usage {rec.usage} is unknown"
    if rec.selector not in SELECTORS:
        return f"selector {rec.selector} is unknown"
    if rec.mtype not in MATCHING:
        return f"matching type {rec.mtype} is unknown"
    return None


def association(cert: x509.Certificate, selector: int, mtype: int) -> bytes:
    """The certificate association data that a ``<usage> selector mtype`` record holds."""
    return MATCHING[mtype](SELECTORS[selector](cert))


def tlsa_matches(rec: Tlsa, chain: Sequence[x509.Certificate]) -> bool:
    """Does a usable ``rec`` match ``chain`` (leaf first)?  DANE-EE matches the leaf
    (RFC 7672 §3.1.1); DANE-TA matches any issuer certificate after it (§3.1.2)."""
    if unusable_reason(rec) is not None:
        return False
    candidates = chain[:1] if rec.usage == DANE_EE else chain[1:]
    return any(association(c, rec.selector, rec.mtype) == rec.data for c in candidates)


def recommended_tlsa(cert: x509.Certificate) -> Tlsa:
    """``3 1 1``: DANE-EE, SPKI, SHA-256 (RFC 7671 §5.1)."""
    return Tlsa(DANE_EE, 1, 1, association(cert, 1, 1))


def tlsa_record(host: str, rec: Tlsa) -> str:
    """The zone-file line: ``_25._tcp.<host>. IN TLSA 3 1 1 <hex>`` (RFC 7672 §2.2)."""
    return f"_25._tcp.{host}. IN TLSA {rec.text}"


def load_chain(pem: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM file, in file order; ValueError if there is none."""
    return x509.load_pem_x509_certificates(pem)


def _parse_all(records: Sequence[str]) -> tuple[list[Tlsa], list[str]]:
    """The usable records, and a note for each one an SMTP client would ignore."""
    usable: list[Tlsa] = []
    notes: list[str] = []
    for text in records:
        try:
            rec = parse_tlsa(text)
        except ValueError as exc:
            notes.append(str(exc))
            continue
        reason = unusable_reason(rec)
        if reason is None:
            usable.append(rec)
        else:
            notes.append(f"{rec.short}: {reason}")
    return usable, notes


def tlsa_verdict(
    host: str, records: Sequence[str], chain: Sequence[x509.Certificate]
) -> CheckResult:
    """The result for our MX ``host`` given its TLSA ``records`` and our ``chain``."""
    name, want = f"_25._tcp.{host}", tlsa_record(host, recommended_tlsa(chain[0]))
    if not records:
        detail = (
            f"The zone is signed but {name} has no TLSA record, so DANE senders "
            f"(RFC 7672) cannot authenticate {host}."
        )
        return CheckResult(NAME, "warn", detail, want)
    usable, notes = _parse_all(records)
    ignored = f" Ignored: {'; '.join(notes)}." if notes else ""
    matching = [r for r in usable if tlsa_matches(r, chain)]
    if matching:
        return CheckResult(
            NAME, "pass", f"TLSA {matching[0].short} at {name} matches our certificate.{ignored}"
        )
    if not usable:  # RFC 7672 §2.2: no usable record → unauthenticated TLS, mail still flows
        detail = (
            f"No TLSA record at {name} is usable for SMTP, so DANE senders fall back to "
            f"unauthenticated TLS.{ignored}"
        )
        return CheckResult(NAME, "warn", detail, f"Replace them with:\n{want}")
    listed = ", ".join(r.short for r in usable)
    detail = (
        f"No TLSA record at {name} ({listed}) matches our certificate; DANE senders will not "
        f"deliver to {host} (RFC 7672 §2.2).{ignored}"
    )
    return CheckResult(NAME, "fail", detail, f"Publish (and remove the stale records):\n{want}")


async def _our_mx(target: AuditTarget, dns: CachingResolver, domain: str) -> str | None:
    host = target.hostname.lower().rstrip(".")
    hosts = {h for _, h in mx_hosts(await dns.query(domain, "MX"))}
    return host if host in hosts else None


async def _read_chain(path: Path) -> list[x509.Certificate]:
    return load_chain(await asyncio.to_thread(path.read_bytes))


async def check_dane(target: AuditTarget, dns: CachingResolver) -> CheckResult:
    """TLSA records of our MX against our certificate, in a signed zone (module doc)."""
    domain = target.domain.lower().rstrip(".")
    if not (await dns.query(domain, "DNSKEY")).records:
        return CheckResult(NAME, "skip", UNSIGNED, UNSIGNED_FIX)
    if target.cert_file is None:
        return CheckResult(NAME, "skip", "no TLS certificate is configured to match TLSA against")
    host = await _our_mx(target, dns, domain)
    if host is None:
        detail = f"{target.hostname} is not an MX host of {domain}; its MX operators handle DANE"
        return CheckResult(NAME, "skip", detail)
    try:
        chain = await _read_chain(target.cert_file)
    except (OSError, ValueError) as exc:
        return CheckResult(NAME, "warn", f"could not read {target.cert_file}: {exc}")
    answer = await dns.query(f"_25._tcp.{host}", "TLSA")
    return tlsa_verdict(host, answer.records, chain)
