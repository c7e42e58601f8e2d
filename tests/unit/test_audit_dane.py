"""DANE check: TLSA parsing and matching against a certificate made here, and the check
with a StaticResolver (no network)."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certs import issue, make_ca
from mailwarden.dns.resolver import StaticResolver
from mailwarden.reputation.audit.cache import CachingResolver
from mailwarden.reputation.audit.dane import (
    UNSIGNED,
    Tlsa,
    association,
    check_dane,
    load_chain,
    parse_tlsa,
    recommended_tlsa,
    tlsa_matches,
    tlsa_record,
    tlsa_verdict,
    unusable_reason,
)
from mailwarden.reputation.audit.model import AuditTarget

D = "example.com"
MX = "mx.example.com"
DNSKEY = "257 3 13 " + "A" * 88
NOW = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def chain() -> list[x509.Certificate]:
    """[leaf for mx.example.com, the CA that issued it]."""
    ca = make_ca("Test CA")
    return [issue(ca, MX, days=30).cert, ca.cert]


@pytest.fixture
def cert_file(tmp_path: Path, chain: list[x509.Certificate]) -> Path:
    path = tmp_path / "chain.pem"
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain))
    return path


def spki_sha256(cert: x509.Certificate) -> bytes:
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()


def target(cert_file: Path | None, hostname: str = MX) -> AuditTarget:
    return AuditTarget(
        domain=D,
        hostname=hostname,
        helo_name=hostname,
        sending_ips=(),
        now=NOW,
        cert_file=cert_file,
    )


def resolver(tlsa: list[str] | None = None, signed: bool = True) -> CachingResolver:
    records: dict[tuple[str, str], list[str]] = {(D, "MX"): [f"10 {MX}."], (MX, "A"): ["192.0.2.1"]}
    if signed:
        records[(D, "DNSKEY")] = [DNSKEY]
    if tlsa is not None:
        records[(f"_25._tcp.{MX}", "TLSA")] = tlsa
    return CachingResolver(StaticResolver(records))


# ------------------------------------------------------------------ pure helpers


def test_parse_tlsa_as_dnspython_prints_it() -> None:
    assert parse_tlsa("3 1 1 ABcd EF01") == Tlsa(3, 1, 1, bytes.fromhex("abcdef01"))
    assert parse_tlsa("  2 0 2 00ff\n") == Tlsa(2, 0, 2, b"\x00\xff")


@pytest.mark.parametrize("text", ["", "3 1 1", "3 1 x abcd", "3 1 1 abc", "3 1 1 zz"])
def test_parse_tlsa_rejects_junk(text: str) -> None:
    with pytest.raises(ValueError, match="is not a TLSA record"):
        parse_tlsa(text)


def test_recommended_record_is_3_1_1_sha256_of_the_spki(chain: list[x509.Certificate]) -> None:
    rec = recommended_tlsa(chain[0])
    assert rec == Tlsa(3, 1, 1, spki_sha256(chain[0]))
    assert tlsa_record(MX, rec) == f"_25._tcp.{MX}. IN TLSA 3 1 1 {spki_sha256(chain[0]).hex()}"
    assert parse_tlsa(rec.text) == rec


@pytest.mark.parametrize("selector", [0, 1])
@pytest.mark.parametrize("mtype", [0, 1, 2])
def test_dane_ee_matches_the_leaf_only(
    chain: list[x509.Certificate], selector: int, mtype: int
) -> None:
    leaf, ca = chain
    assert tlsa_matches(Tlsa(3, selector, mtype, association(leaf, selector, mtype)), chain)
    assert not tlsa_matches(Tlsa(3, selector, mtype, association(ca, selector, mtype)), chain)


@pytest.mark.parametrize("selector", [0, 1])
@pytest.mark.parametrize("mtype", [0, 1, 2])
def test_dane_ta_matches_an_issuer_only(
    chain: list[x509.Certificate], selector: int, mtype: int
) -> None:
    leaf, ca = chain
    assert tlsa_matches(Tlsa(2, selector, mtype, association(ca, selector, mtype)), chain)
    assert not tlsa_matches(Tlsa(2, selector, mtype, association(leaf, selector, mtype)), chain)
    assert not tlsa_matches(Tlsa(2, selector, mtype, association(ca, selector, mtype)), chain[:1])


def test_association_sizes_and_full_certificate(chain: list[x509.Certificate]) -> None:
    leaf = chain[0]
    assert association(leaf, 0, 0) == leaf.public_bytes(serialization.Encoding.DER)
    assert len(association(leaf, 0, 1)) == 32
    assert len(association(leaf, 1, 2)) == 64


@pytest.mark.parametrize(
    ("rec", "reason"),
    [
        (Tlsa(0, 1, 1, b""), "usage 0 (PKIX-TA) is not for SMTP (RFC 7672 §3.1.3)"),
        (Tlsa(1, 1, 1, b""), "usage 1 (PKIX-EE) is not for SMTP (RFC 7672 §3.1.3)"),
        (Tlsa(4, 1, 1, b""), "usage 4 is unknown"),
        (Tlsa(3, 2, 1, b""), "selector 2 is unknown"),
        (Tlsa(3, 1, 3, b""), "matching type 3 is unknown"),
    ],
)
def test_unusable_records(rec: Tlsa, reason: str) -> None:
    assert unusable_reason(rec) == reason
    assert unusable_reason(Tlsa(3, 1, 1, b"")) is None


def test_pkix_ee_record_with_the_right_hash_does_not_count(chain: list[x509.Certificate]) -> None:
    assert not tlsa_matches(Tlsa(1, 1, 1, spki_sha256(chain[0])), chain)


def test_load_chain_keeps_file_order(cert_file: Path, chain: list[x509.Certificate]) -> None:
    assert load_chain(cert_file.read_bytes()) == chain
    with pytest.raises(ValueError):
        load_chain(b"not a certificate")


def test_verdict_lists_mismatches_and_ignored_records(chain: list[x509.Certificate]) -> None:
    right = spki_sha256(chain[0]).hex()
    result = tlsa_verdict(MX, ["3 1 1 " + "00" * 32, "1 1 1 " + right, "bogus"], chain)
    assert result.status == "fail"
    assert f"No TLSA record at _25._tcp.{MX} (3 1 1 0000000000000000…)" in result.detail
    assert "usage 1 (PKIX-EE) is not for SMTP" in result.detail
    assert "'bogus' is not a TLSA record" in result.detail
    assert result.fix.endswith(f"_25._tcp.{MX}. IN TLSA 3 1 1 {right}")


# ------------------------------------------------------------------ the check


async def test_unsigned_zone_skips(cert_file: Path) -> None:
    result = await check_dane(target(cert_file), resolver(signed=False))
    assert result.name == "dane"
    assert result.status == "skip"
    assert result.detail == UNSIGNED == "zone is not DNSSEC-signed; DANE does not apply"


async def test_no_certificate_skips() -> None:
    result = await check_dane(target(None), resolver())
    assert result.status == "skip"


async def test_not_our_mx_skips(cert_file: Path) -> None:
    result = await check_dane(target(cert_file, hostname="smtp.example.com"), resolver())
    assert result.status == "skip"
    assert "not an MX host" in result.detail


async def test_signed_without_tlsa_warns_with_the_record(
    cert_file: Path, chain: list[x509.Certificate]
) -> None:
    result = await check_dane(target(cert_file), resolver())
    assert result.status == "warn"
    assert f"_25._tcp.{MX} has no TLSA record" in result.detail
    assert result.fix == f"_25._tcp.{MX}. IN TLSA 3 1 1 {spki_sha256(chain[0]).hex()}"


async def test_signed_and_matching_passes(cert_file: Path, chain: list[x509.Certificate]) -> None:
    hexed = spki_sha256(chain[0]).hex().upper()
    split = f"3 1 1 {hexed[:20]} {hexed[20:]}"
    result = await check_dane(target(cert_file), resolver([split]))
    assert result.status == "pass", result.detail
    assert result.fix == ""


async def test_dane_ta_on_our_ca_passes(cert_file: Path, chain: list[x509.Certificate]) -> None:
    result = await check_dane(
        target(cert_file), resolver([f"2 0 1 {association(chain[1], 0, 1).hex()}"])
    )
    assert result.status == "pass"


async def test_signed_and_wrong_hash_fails(cert_file: Path, chain: list[x509.Certificate]) -> None:
    result = await check_dane(target(cert_file), resolver(["3 1 1 " + "ab" * 32]))
    assert result.status == "fail"
    assert "matches our certificate" in result.detail
    assert f"DANE senders will not deliver to {MX}" in result.detail
    assert f"_25._tcp.{MX}. IN TLSA 3 1 1 {spki_sha256(chain[0]).hex()}" in result.fix


async def test_only_pkix_records_warn(cert_file: Path, chain: list[x509.Certificate]) -> None:
    result = await check_dane(target(cert_file), resolver([f"1 1 1 {spki_sha256(chain[0]).hex()}"]))
    assert result.status == "warn"
    assert "not for SMTP (RFC 7672 §3.1.3)" in result.detail
    assert "IN TLSA 3 1 1" in result.fix


async def test_unreadable_certificate_warns(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("junk")
    result = await check_dane(target(bad), resolver())
    assert result.status == "warn"
    assert "could not read" in result.detail
    missing = await check_dane(target(tmp_path / "missing.pem"), resolver())
    assert missing.status == "warn"
