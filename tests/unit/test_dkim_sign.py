"""Our DKIM signer (auth/dkim_sign.py), checked against dkimpy's verifier in-process.

Keys come from a dict-backed ``dnsfunc``, so no DNS is involved. (Importing
mailwarden.auth.dkim swaps two dkimpy whitespace helpers for equivalent faster ones;
tests/integration/test_dkim_independent.py runs the untouched dkimpy and OpenDKIM.)
"""

from __future__ import annotations

import base64
import hashlib
import random
import re
from collections.abc import Callable

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from mailwarden.auth.dkim import dkim_txt_record
from mailwarden.auth.dkim_sign import (
    ED25519_SHA256,
    RSA_SHA256,
    SigningKey,
    generate_key,
    load_signing_key,
    relaxed_body,
    sign_message,
)

DOMAIN = "example.com"
NOW = 1_767_225_600  # 2026-01-01; t= is only ever taken from the argument
EMPTY_BH = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="  # SHA-256 of nothing
HEAD = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: hello\r\n"
    b"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
    b"Message-ID: <1@example.com>\r\n"
)
MESSAGE = HEAD + b"\r\nHello Bob,\r\nthis is a test.\r\n"

DnsFunc = Callable[..., bytes | None]


@pytest.fixture(scope="module")
def pems() -> dict[str, bytes]:
    return {RSA_SHA256: generate_key(RSA_SHA256), ED25519_SHA256: generate_key(ED25519_SHA256)}


@pytest.fixture(scope="module")
def keys(pems: dict[str, bytes]) -> list[SigningKey]:
    return [
        load_signing_key("rsa", DOMAIN, pems[RSA_SHA256]),
        load_signing_key("ed", DOMAIN, pems[ED25519_SHA256]),
    ]


@pytest.fixture(scope="module")
def dnsfunc(pems: dict[str, bytes]) -> DnsFunc:
    records = {
        f"rsa._domainkey.{DOMAIN}.": dkim_txt_record(pems[RSA_SHA256]).encode(),
        f"ed._domainkey.{DOMAIN}.": dkim_txt_record(pems[ED25519_SHA256]).encode(),
    }

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name.decode())

    return lookup


def signed(message: bytes, keys: list[SigningKey]) -> bytes:
    return sign_message(message, keys, timestamp=NOW) + message


def results(message: bytes, dnsfunc: DnsFunc) -> list[bool]:
    """dkimpy's verdict on every DKIM-Signature of the message, top to bottom."""
    verifier = dkim.DKIM(message)
    count = sum(1 for name, _v in verifier.headers if name.lower() == b"dkim-signature")
    out = []
    for idx in range(count):
        try:
            out.append(bool(verifier.verify(idx=idx, dnsfunc=dnsfunc)))
        except dkim.ValidationError:  # dkimpy raises on a body hash mismatch
            out.append(False)
    return out


def tags(field: bytes) -> dict[str, str]:
    value = field.decode().partition(":")[2]
    pairs = (t.split("=", 1) for t in value.split(";"))
    return {k.strip(): re.sub(r"\s+", "", v) for k, v in pairs}


def fields(signature: bytes) -> list[bytes]:
    return [f + b"\r\n" for f in re.split(rb"\r\n(?=\S)", signature.removesuffix(b"\r\n"))]


# ------------------------------------------------------------------------------- keys
def test_generated_keys_are_pkcs8_rsa2048_and_ed25519(pems: dict[str, bytes]) -> None:
    rsa_key = serialization.load_pem_private_key(pems[RSA_SHA256], None)
    assert isinstance(rsa_key, rsa.RSAPrivateKey)
    assert rsa_key.key_size == 2048
    assert rsa_key.private_numbers().public_numbers.e == 65537
    ed_key = serialization.load_pem_private_key(pems[ED25519_SHA256], None)
    assert isinstance(ed_key, ed25519.Ed25519PrivateKey)
    for pem in pems.values():
        assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8, unencrypted


def test_load_signing_key_takes_the_algorithm_from_the_key(keys: list[SigningKey]) -> None:
    assert [k.algorithm for k in keys] == [RSA_SHA256, ED25519_SHA256]
    assert [(k.selector, k.domain) for k in keys] == [("rsa", DOMAIN), ("ed", DOMAIN)]


def test_load_signing_key_accepts_pkcs1(keys: list[SigningKey]) -> None:
    assert isinstance(keys[0].private_key, rsa.RSAPrivateKey)
    pkcs1 = keys[0].private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert load_signing_key("s", DOMAIN, pkcs1).algorithm == RSA_SHA256


def test_bad_keys_and_names_raise_value_error(pems: dict[str, bytes]) -> None:
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    encrypted = serialization.load_pem_private_key(pems[ED25519_SHA256], None).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    for pem in (ec_pem, encrypted, b"not a key"):
        with pytest.raises(ValueError):
            load_signing_key("s", DOMAIN, pem)
    for selector, domain in (("a;b", DOMAIN), ("s", "exa mple.com"), ("", DOMAIN), ("s", "")):
        with pytest.raises(ValueError):
            load_signing_key(selector, domain, pems[RSA_SHA256])
    with pytest.raises(ValueError):
        generate_key("rsa-sha1")
    ed = load_signing_key("s", DOMAIN, pems[ED25519_SHA256])
    with pytest.raises(ValueError):
        SigningKey("s", DOMAIN, RSA_SHA256, ed.private_key)  # key type and a= disagree


# ------------------------------------------------------------------ signature format
def test_both_signatures_verify_and_share_the_body_hash(
    keys: list[SigningKey], dnsfunc: DnsFunc
) -> None:
    signature = sign_message(MESSAGE, keys, timestamp=NOW)
    assert results(signature + MESSAGE, dnsfunc) == [True, True]
    rsa_tags, ed_tags = (tags(f) for f in fields(signature))
    assert list(rsa_tags) == ["v", "a", "c", "d", "s", "t", "h", "bh", "b"]  # no l=
    assert (rsa_tags["a"], ed_tags["a"]) == (RSA_SHA256, ED25519_SHA256)  # keys order
    assert rsa_tags["c"] == ed_tags["c"] == "relaxed/relaxed"
    assert rsa_tags["t"] == ed_tags["t"] == str(NOW)
    assert rsa_tags["bh"] == ed_tags["bh"]
    body = b"Hello Bob,\r\nthis is a test.\r\n"
    assert rsa_tags["bh"] == base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert len(base64.b64decode(ed_tags["b"])) == 64  # an Ed25519 signature


def test_fields_are_folded_below_78_columns(keys: list[SigningKey]) -> None:
    headers = [f"X-Long-Header-Name-{i}" for i in range(30)]
    message = b"".join(f"{h}: v\r\n".encode() for h in headers) + MESSAGE
    signature = sign_message(message, keys, timestamp=NOW, headers=headers)
    assert signature.endswith(b"\r\n")
    lines = signature.split(b"\r\n")[:-1]
    assert all(len(line) < 78 for line in lines)
    assert sum(line.startswith(b"DKIM-Signature: v=1; ") for line in lines) == 2
    assert all(line[:1] == b" " for line in lines if not line.startswith(b"DKIM-Signature:"))


def test_signing_is_deterministic_and_clock_free(keys: list[SigningKey]) -> None:
    first = sign_message(MESSAGE, keys, timestamp=12345)
    assert first == sign_message(MESSAGE, keys, timestamp=12345)
    assert tags(fields(first)[0])["t"] == "12345"


def test_default_header_set_and_over_signing(keys: list[SigningKey]) -> None:
    message = HEAD + b"Received: by relay\r\nX-Mailer: m\r\nMIME-Version: 1.0\r\n\r\nx\r\n"
    names = tags(fields(sign_message(message, keys[:1], timestamp=NOW))[0])["h"].split(":")
    for name in ("from", "to", "subject", "date", "message-id", "mime-version"):
        assert names.count(name) == 2  # present once, listed twice (RFC 6376 §8.15)
    for name in ("cc", "reply-to", "sender", "content-type"):
        assert names.count(name) == 1  # absent, listed once: adding one breaks it
    assert "received" not in names
    assert "x-mailer" not in names


def test_custom_header_list(keys: list[SigningKey], dnsfunc: DnsFunc) -> None:
    message = HEAD + b"X-Custom: 1\r\nX-Custom: 2\r\n\r\nx\r\n"
    signature = sign_message(message, keys, timestamp=NOW, headers=["Subject", "X-Custom"])
    names = tags(fields(signature)[0])["h"].split(":")
    assert names == ["from", "from", "subject", "subject", "x-custom", "x-custom"]
    assert results(signature + message, dnsfunc) == [True, True]
    assert results(signature + message.replace(b"X-Custom: 2", b"X-Custom: 3"), dnsfunc) == [
        False,
        False,
    ]
    for bad in (["DKIM-Signature"], ["Bcc"], ["Bad Name"], ["Received"]):
        with pytest.raises(ValueError):
            sign_message(message, keys, timestamp=NOW, headers=bad)


# ------------------------------------------------------------------------- tampering
@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda m: m.replace(b"a test", b"a Test"), id="body"),
        pytest.param(lambda m: m + b"P.S.\r\n", id="appended-body"),
        pytest.param(lambda m: m.replace(b"Subject: hello", b"Subject: hallo"), id="subject"),
        pytest.param(lambda m: b"From: mallory@evil.test\r\n" + m, id="from-on-top"),
        pytest.param(lambda m: m.replace(HEAD, HEAD + b"From: m@evil.test\r\n"), id="from-below"),
        pytest.param(lambda m: m.replace(HEAD, HEAD + b"Cc: e@evil.test\r\n"), id="added-cc"),
        pytest.param(lambda m: m.replace(b"To: bob", b"To:  bob"), id="ok-whitespace"),
        pytest.param(lambda m: m.replace(HEAD, HEAD + b"Received: x\r\n"), id="ok-received"),
        pytest.param(lambda m: m.replace(b"test.\r\n", b"test.  \r\n\r\n"), id="ok-body-ws"),
    ],
)
def test_tampering(
    change: Callable[[bytes], bytes],
    request: pytest.FixtureRequest,
    keys: list[SigningKey],
    dnsfunc: DnsFunc,
) -> None:
    message = signed(MESSAGE, keys)
    assert results(message, dnsfunc) == [True, True]
    expected = request.node.callspec.id.startswith("ok-")
    assert results(change(message), dnsfunc) == [expected, expected]


def test_a_damaged_signature_fails(keys: list[SigningKey], dnsfunc: DnsFunc) -> None:
    message = bytearray(signed(MESSAGE, keys))
    for field in (0, 1):
        b_at = [m.end() for m in re.finditer(rb"; b=", message)][field]
        copy = bytearray(message)
        copy[b_at + 5] = ord("A") if copy[b_at + 5] != ord("A") else ord("B")
        assert results(bytes(copy), dnsfunc)[field] is False


# ---------------------------------------------------------------------- odd messages
@pytest.mark.parametrize(
    ("body", "canonical"),
    [
        (b"", b""),
        (b"\r\n", b""),
        (b"\r\n\r\n \t\r\n", b""),
        (b"text", b"text\r\n"),  # a CRLF is added (RFC 6376 §3.4.4)
        (b"text\r\n\r\n\r\n", b"text\r\n"),
        (b"a  b\t\tc \r\n\t d\t\r\n  \r\n", b"a b c\r\n d\r\n"),
        (b"last line  \t", b"last line\r\n"),
    ],
)
def test_relaxed_body(body: bytes, canonical: bytes) -> None:
    assert relaxed_body(body) == canonical


def reference_relaxed_body(body: bytes) -> bytes:
    """RFC 6376 §3.4.4 written out literally, with regular expressions."""
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    body = re.sub(rb"[ \t]+\r\n", b"\r\n", body)  # a
    body = re.sub(rb"[ \t]+", b" ", body)  # b
    body = re.sub(rb"(\r\n)+\Z", b"\r\n", body)  # c
    return b"" if body == b"\r\n" else body


def test_relaxed_body_matches_the_literal_rules() -> None:
    rng = random.Random(6376)
    for _ in range(5000):
        pieces = [rng.choice([b"a", b"b", b" ", b"\t", b"  ", b"\r\n"]) for _ in range(20)]
        body = b"".join(pieces[: rng.randint(0, 20)])
        assert relaxed_body(body) == reference_relaxed_body(body), body


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(HEAD + b"\r\n", id="empty-body"),
        pytest.param(HEAD, id="no-body-separator"),
        pytest.param(HEAD + b"\r\nno final CRLF", id="no-final-crlf"),
        pytest.param(HEAD + b"\r\ntext\r\n\r\n\r\n", id="trailing-blank-lines"),
        pytest.param(HEAD + b"\r\n\r\n\r\n", id="only-blank-lines"),
    ],
)
def test_odd_bodies_verify(message: bytes, keys: list[SigningKey], dnsfunc: DnsFunc) -> None:
    assert results(signed(message, keys), dnsfunc) == [True, True]


def test_empty_body_hash(keys: list[SigningKey]) -> None:
    for message in (HEAD, HEAD + b"\r\n", HEAD + b"\r\n\r\n\r\n"):
        assert tags(fields(sign_message(message, keys, timestamp=NOW))[0])["bh"] == EMPTY_BH


def test_trailing_blank_lines_do_not_matter(keys: list[SigningKey], dnsfunc: DnsFunc) -> None:
    message = signed(HEAD + b"\r\ntext\r\n\r\n", keys)
    assert results(message + b"\r\n\r\n", dnsfunc) == [True, True]
    assert results(message.removesuffix(b"\r\n"), dnsfunc) == [True, True]


def test_unterminated_last_line_with_whitespace_verifies_as_sent(
    keys: list[SigningKey], dnsfunc: DnsFunc
) -> None:
    # SMTP ends DATA with CRLF, so this is what arrives; dkimpy would keep one SP of the
    # unterminated line's trailing whitespace and verifies the bare form differently.
    message = signed(HEAD + b"\r\nlast line \t ", keys)
    assert results(message + b"\r\n", dnsfunc) == [True, True]


def test_whitespace_heavy_and_obsolete_headers(keys: list[SigningKey], dnsfunc: DnsFunc) -> None:
    message = (
        b"From:  Alice \t <alice@example.com>  \r\n"
        b"To:\tbob@example.net,\r\n\t  carol@example.net\t\r\n"
        b"Subject:   lots   of\t\tspace\r\n \r\n  and an obsolete empty fold line \r\n"
        b"Cc:\r\n dave@example.net\r\n"
        b"\r\nbody\r\n"
    )
    assert results(signed(message, keys), dnsfunc) == [True, True]
    refolded = message.replace(b"lots   of\t\tspace\r\n \r\n  and", b"lots of space and")
    assert results(sign_message(message, keys, timestamp=NOW) + refolded, dnsfunc) == [
        True,
        True,
    ]


def test_eight_bit_headers_keep_their_bytes(keys: list[SigningKey], dnsfunc: DnsFunc) -> None:
    message = HEAD.replace(b"Subject: hello", b"Subject: caf\xc3\xa9 \xff\xfe") + b"\r\nx\r\n"
    good = signed(message, keys)
    assert results(good, dnsfunc) == [True, True]
    assert results(good.replace(b"\xc3\xa9", b"\xc3\xa8"), dnsfunc) == [False, False]


def test_repeated_headers_are_signed_bottom_up(keys: list[SigningKey], dnsfunc: DnsFunc) -> None:
    message = HEAD + b"Resent-Date: one\r\nResent-Date: two\r\n\r\nx\r\n"
    good = signed(message, keys)
    names = tags(fields(good)[0])["h"].split(":")
    assert names.count("resent-date") == 2  # as often as it occurs
    assert results(good, dnsfunc) == [True, True]
    swapped = good.replace(b"one\r\nResent-Date: two", b"two\r\nResent-Date: one")
    assert results(swapped, dnsfunc) == [False, False]  # RFC 6376 §5.4.2 order matters


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "message",
    [
        pytest.param(MESSAGE.replace(b"From: Alice <alice@example.com>\r\n", b""), id="no-from"),
        pytest.param(b"From: a@example.com\r\n" + MESSAGE, id="two-from"),
        pytest.param(b"\r\nbody only\r\n", id="no-headers"),
        pytest.param(MESSAGE.replace(b"\r\n", b"\n"), id="lf-only"),
        pytest.param(MESSAGE.replace(b"a test.\r\n", b"a test.\n"), id="bare-lf-in-body"),
        pytest.param(MESSAGE.replace(b"a test.", b"a\rtest."), id="bare-cr"),
        pytest.param(b" folded\r\n" + MESSAGE, id="starts-with-fold"),
        pytest.param(b"From a@example.com Thu Jan  1 00:00:00\r\n" + MESSAGE, id="mbox-line"),
        pytest.param(MESSAGE.replace(b"Subject:", b"Subject :"), id="obs-wsp-before-colon"),
        pytest.param(MESSAGE.replace(b"Subject:", b"Subject"), id="no-colon"),
    ],
)
def test_bad_messages_raise_value_error(message: bytes, keys: list[SigningKey]) -> None:
    with pytest.raises(ValueError):
        sign_message(message, keys, timestamp=NOW)


def test_bad_arguments_raise_value_error(keys: list[SigningKey]) -> None:
    with pytest.raises(ValueError):
        sign_message(MESSAGE, [], timestamp=NOW)
    with pytest.raises(ValueError):
        sign_message(MESSAGE, keys, timestamp=-1)
