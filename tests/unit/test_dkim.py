"""DKIM: sign with our helper, verify through the async Resolver seam (StaticResolver)."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailwarden.auth.dkim import (
    MAX_SIGNATURES,
    DkimSyntaxError,
    dkim_txt_record,
    key_problem,
    parse_signature,
    read_headers,
    sign,
    verify_dkim,
)
from mailwarden.dns.resolver import StaticResolver

MESSAGE = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: hello\r\n"
    b"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
    b"Message-ID: <1@example.com>\r\n"
    b"\r\n"
    b"Hello Bob,\r\nthis is a test.\r\n"
)
KEY_NAME = "sel._domainkey.example.com"


def _pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="module")
def rsa_pem() -> bytes:
    return _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def ed_pem() -> bytes:
    return _pem(ed25519.Ed25519PrivateKey.generate())


def _signed(pem: bytes, algorithm: str = "rsa-sha256", message: bytes = MESSAGE) -> bytes:
    return sign(message, "sel", "example.com", pem, algorithm) + message


def _resolver(pem: bytes) -> StaticResolver:
    return StaticResolver({(KEY_NAME, "TXT"): [dkim_txt_record(pem)]})


async def test_rsa_round_trip(rsa_pem: bytes) -> None:
    (res,) = await verify_dkim(_resolver(rsa_pem), _signed(rsa_pem))
    assert (res.result, res.domain, res.selector, res.algorithm) == (
        "pass",
        "example.com",
        "sel",
        "rsa-sha256",
    )
    assert len(res.header_b) == 8


async def test_ed25519_round_trip(ed_pem: bytes) -> None:
    signed = _signed(ed_pem, "ed25519-sha256")
    (res,) = await verify_dkim(_resolver(ed_pem), signed)
    assert (res.result, res.algorithm) == ("pass", "ed25519-sha256"), res.reason


async def test_both_signatures_with_prepared_headers(rsa_pem: bytes, ed_pem: bytes) -> None:
    message = sign(MESSAGE, "ed", "example.com", ed_pem, "ed25519-sha256") + _signed(rsa_pem)
    resolver = StaticResolver(
        {
            (KEY_NAME, "TXT"): [dkim_txt_record(rsa_pem)],
            ("ed._domainkey.example.com", "TXT"): [dkim_txt_record(ed_pem)],
        }
    )
    results = await verify_dkim(resolver, message, headers=read_headers(message))
    assert [r.result for r in results] == ["pass", "pass"]
    assert [r.selector for r in results] == ["ed", "sel"]


async def test_tampered_body_fails(rsa_pem: bytes) -> None:
    signed = _signed(rsa_pem).replace(b"this is a test", b"this is a trap")
    (res,) = await verify_dkim(_resolver(rsa_pem), signed)
    assert res.result == "fail"
    assert "body hash" in res.reason


async def test_tampered_header_fails(ed_pem: bytes) -> None:
    signed = _signed(ed_pem, "ed25519-sha256").replace(b"Subject: hello", b"Subject: HELLO!")
    (res,) = await verify_dkim(_resolver(ed_pem), signed)
    assert (res.result, res.reason) == ("fail", "signature did not verify")


async def test_added_from_breaks_oversigned_signature(rsa_pem: bytes) -> None:
    signature = sign(MESSAGE, "sel", "example.com", rsa_pem)
    assert parse_signature(signature.decode().split(":", 1)[1]).signed.count("from") == 2
    (res,) = await verify_dkim(_resolver(rsa_pem), signature + b"From: mallory@evil\r\n" + MESSAGE)
    assert res.result == "fail"


async def test_missing_key_is_permerror(rsa_pem: bytes) -> None:
    (res,) = await verify_dkim(StaticResolver(), _signed(rsa_pem))
    assert res.result == "permerror"
    assert KEY_NAME in res.reason


async def test_dns_failure_is_temperror(rsa_pem: bytes) -> None:
    resolver = StaticResolver(failing={(KEY_NAME, "TXT")})
    (res,) = await verify_dkim(resolver, _signed(rsa_pem))
    assert res.result == "temperror"


async def test_revoked_key_is_permerror(rsa_pem: bytes) -> None:
    resolver = StaticResolver({(KEY_NAME, "TXT"): ["v=DKIM1; k=rsa; p="]})
    (res,) = await verify_dkim(resolver, _signed(rsa_pem))
    assert (res.result, res.reason) == ("permerror", "key revoked (empty p=)")


async def test_wrong_key_fails(rsa_pem: bytes) -> None:
    other = _pem(rsa.generate_private_key(public_exponent=65537, key_size=1024))
    (res,) = await verify_dkim(_resolver(other), _signed(rsa_pem))
    assert res.result == "fail"


async def test_no_signature() -> None:
    assert await verify_dkim(StaticResolver(), MESSAGE) == []


async def test_signature_count_is_capped(rsa_pem: bytes) -> None:
    signature = sign(MESSAGE, "sel", "example.com", rsa_pem)
    resolver = _resolver(rsa_pem)
    results = await verify_dkim(resolver, signature * (MAX_SIGNATURES + 5) + MESSAGE)
    assert len(results) == MAX_SIGNATURES
    assert resolver.queries == [(KEY_NAME, "TXT")]  # one fetch per distinct key


@pytest.mark.parametrize(
    ("field", "reason"),
    [
        (b"v=1; a=rsa-sha256; d=example.com; s=sel; h=from; bh=AAAA; b=!!!!", "b= is not base64"),
        (b"v=1; a=rsa-sha256; d=example.com; s=sel; h=to; bh=AAAA; b=AAAA", "From is not signed"),
        (b"v=1; a=rsa-md5; d=example.com; s=sel; h=from; bh=AAAA; b=AAAA", "unknown algorithm"),
        (b"v=1; a=rsa-sha256; d=example.com; s=sel; h=from; bh=AAAA", "missing b"),
        (b"v=1; d=example.com; d=example.org", "duplicate tag"),
        (b"just garbage", "invalid tag-spec"),
        (b"v=1; a=rsa-sha256; d=ex(ample.com; s=sel; h=from; bh=AAAA; b=AAAA", "invalid d="),
        (b"v=1; a=rsa-sha256; d=a.com; i=@b.com; s=s; h=from; bh=AAAA; b=AAAA", "i= is not"),
    ],
)
async def test_bad_signatures_are_neutral(field: bytes, reason: str) -> None:
    message = b"DKIM-Signature: " + field + b"\r\n" + MESSAGE
    (res,) = await verify_dkim(StaticResolver(), message)
    assert res.result == "neutral"
    assert reason in res.reason


async def test_expired_and_future_signatures(rsa_pem: bytes) -> None:
    base = b"v=1; a=rsa-sha256; d=example.com; s=sel; h=from; bh=AAAA; b=AAAA"
    expired = b"DKIM-Signature: " + base + b"; t=100; x=200\r\n" + MESSAGE
    future = b"DKIM-Signature: " + base + b"; t=9999999999\r\n" + MESSAGE
    resolver = _resolver(rsa_pem)
    assert (await verify_dkim(resolver, expired, now=1000.0))[0].result == "fail"
    assert (await verify_dkim(resolver, future, now=1000.0))[0].result == "neutral"
    assert resolver.queries == []


async def test_rsa_sha1_is_not_accepted() -> None:
    field = b"v=1; a=rsa-sha1; d=example.com; s=sel; h=from; bh=AAAA; b=AAAA"
    (res,) = await verify_dkim(StaticResolver(), b"DKIM-Signature: " + field + b"\r\n" + MESSAGE)
    assert res.result == "neutral"
    assert "RFC 8301" in res.reason


async def test_message_dkimpy_cannot_parse_is_permerror(rsa_pem: bytes) -> None:
    # A header line without a colon: the stdlib parser keeps the signature, dkimpy refuses.
    signed = _signed(rsa_pem).replace(b"To: bob", b"\x01junk line\r\nTo: bob")
    (res,) = await verify_dkim(_resolver(rsa_pem), signed)
    assert res.result == "permerror"
    assert "not parseable" in res.reason


async def test_hostile_headers_never_raise() -> None:
    junk = [
        b"DKIM-Signature: \xff\xfe; d=\x00; b=\r\n\r\n",
        b"DKIM-Signature:" + b"a=" * 50_000 + b"\r\n\r\nbody",
        b"DKIM-Signature: v=1; a=rsa-sha256; d=" + b"x." * 200 + b"com; s=s; h=from; bh=; b=\r\n",
        b"\r\nDKIM-Signature: v=1\r\n",
        b"",
    ]
    for message in junk:
        results = await verify_dkim(StaticResolver(), message)
        assert all(r.result in ("neutral", "permerror") for r in results)


def test_txt_record_formats(rsa_pem: bytes, ed_pem: bytes) -> None:
    ed_record = dkim_txt_record(ed_pem)
    assert ed_record.startswith("v=DKIM1; k=ed25519; p=")
    assert len(base64.b64decode(ed_record.split("p=")[1])) == 32  # RFC 8463 §4
    public = serialization.load_pem_private_key(rsa_pem, None).public_key()
    public_pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert dkim_txt_record(public_pem) == dkim_txt_record(rsa_pem)
    assert dkim_txt_record(rsa_pem).startswith("v=DKIM1; k=rsa; p=MIIBIjAN")
    assert key_problem(dkim_txt_record(rsa_pem)) is None


def test_sign_rejects_mismatched_key(ed_pem: bytes) -> None:
    with pytest.raises(ValueError, match="cannot sign"):
        sign(MESSAGE, "sel", "example.com", ed_pem, "rsa-sha256")


def test_sign_headers_argument(rsa_pem: bytes) -> None:
    signature = sign(MESSAGE, "sel", "example.com", rsa_pem, headers=["Subject", "From", "To"])
    sig = parse_signature(signature.decode().split(":", 1)[1])
    assert sig.signed == ("subject", "to", "from", "from")
    assert "c=relaxed/relaxed" in signature.decode()


def test_parse_signature_rejects_garbage() -> None:
    with pytest.raises(DkimSyntaxError):
        parse_signature("v=1; a")


def test_read_headers_keeps_folding_and_skips_body() -> None:
    message = b"Subject: a\r\n b\r\nFrom: x@y\r\n\r\nFrom: not-a-header\r\n"
    assert read_headers(message) == [("Subject", "a\r\n b"), ("From", "x@y")]
    assert read_headers(b"\r\nFrom: x@y\r\n") == []
