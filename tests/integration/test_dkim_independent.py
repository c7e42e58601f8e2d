"""Our DKIM signatures, checked by independent verifiers: dkimpy's dkimverify and OpenDKIM.

Both selectors (RSA-2048 and Ed25519) are published in a Knot zone; the verifiers fetch
them over DNS on loopback (see tests/dkimverify.py for how).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dkimverify import verify_dkimpy, verify_opendkim
from dnsserver import ZoneSet, txt
from mailwarden.auth.dkim import dkim_txt_record
from mailwarden.auth.dkim_sign import (
    ED25519_SHA256,
    RSA_SHA256,
    SigningKey,
    generate_key,
    load_signing_key,
    sign_message,
)

NOW = 1_767_225_600
Verifier = Callable[[bytes, str], tuple[bool, str]]
VERIFIERS = [pytest.param(verify_dkimpy, id="dkimpy"), pytest.param(verify_opendkim, id="opendkim")]


@pytest.fixture(scope="module")
def pems() -> dict[str, bytes]:
    return {RSA_SHA256: generate_key(RSA_SHA256), ED25519_SHA256: generate_key(ED25519_SHA256)}


@pytest.fixture
def keys(dns_zones: ZoneSet, pems: dict[str, bytes]) -> list[SigningKey]:
    """Both keys, published under this test's own domain."""
    domain = dns_zones.domain
    dns_zones.set_zone(
        domain,
        [
            f"rsa._domainkey TXT {txt(dkim_txt_record(pems[RSA_SHA256]))}",
            f"ed._domainkey TXT {txt(dkim_txt_record(pems[ED25519_SHA256]))}",
        ],
    )
    return [
        load_signing_key("rsa", domain, pems[RSA_SHA256]),
        load_signing_key("ed", domain, pems[ED25519_SHA256]),
    ]


def head(domain: str, subject: bytes = b"hello") -> bytes:
    return (
        (
            f"From: Alice <alice@{domain}>\r\n"
            "To: bob@example.net,\r\n\t  carol@example.net\t\r\n"
            "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
            f"Message-ID: <1@{domain}>\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Resent-Date: one\r\nResent-Date: two\r\n"
        ).encode()
        + b"Subject:  "
        + subject
        + b"\r\n"
    )


BODY = b"Hello Bob,\r\n\r\nthis  is\ta test.  \r\n" + b"x" * 3000 + b"\r\n\r\n\r\n"
MESSAGES: dict[str, Callable[[str], bytes]] = {
    "plain": lambda d: head(d) + b"\r\n" + BODY,
    "empty-body": lambda d: head(d) + b"\r\n",
    "no-final-crlf": lambda d: head(d) + b"\r\nlast line without CRLF",
    "no-final-crlf-trailing-wsp": lambda d: head(d) + b"\r\nlast line \t ",
    "trailing-blank-lines": lambda d: head(d) + b"\r\ntext\r\n\r\n \r\n\r\n",
    "8bit-header": lambda d: head(d, b"caf\xc3\xa9 \xff \r\n \r\n folded") + b"\r\n" + BODY,
}
TAMPER: dict[str, Callable[[bytes], bytes]] = {
    "body": lambda m: m.replace(b"a test", b"a Test") if b"a test" in m else m + b"more\r\n",
    "second-from": lambda m: b"From: mallory@evil.test\r\n" + m,
    "resent-order": lambda m: m.replace(b"one\r\nResent-Date: two", b"two\r\nResent-Date: one"),
}


@pytest.mark.parametrize("verify", VERIFIERS)
@pytest.mark.parametrize("kind", list(MESSAGES))
def test_signatures_verify(
    verify: Verifier, kind: str, keys: list[SigningKey], dns_zones: ZoneSet
) -> None:
    message = MESSAGES[kind](dns_zones.domain)
    signed = sign_message(message, keys, timestamp=NOW) + message
    if not signed.endswith(b"\r\n"):
        # Verify it as it arrives: SMTP ends DATA with CRLF. (OpenDKIM's test mode cannot
        # even read an unterminated last line; see the dkim_sign docstring for the rest.)
        signed += b"\r\n"
    ok, output = verify(signed, dns_zones.nameserver)
    assert ok, output


@pytest.mark.parametrize("verify", VERIFIERS)
@pytest.mark.parametrize("how", list(TAMPER))
def test_tampered_copies_fail(
    verify: Verifier, how: str, keys: list[SigningKey], dns_zones: ZoneSet
) -> None:
    message = MESSAGES["plain"](dns_zones.domain)
    signed = sign_message(message, keys, timestamp=NOW) + message
    ok, output = verify(TAMPER[how](signed), dns_zones.nameserver)
    assert not ok, output


@pytest.mark.parametrize("verify", VERIFIERS)
def test_each_signature_is_checked(
    verify: Verifier, keys: list[SigningKey], dns_zones: ZoneSet, pems: dict[str, bytes]
) -> None:
    """A bad second signature fails the message even though the first one passes."""
    message = MESSAGES["plain"](dns_zones.domain)
    wrong = load_signing_key("ed", dns_zones.domain, generate_key(ED25519_SHA256))
    signed = sign_message(message, [keys[0], wrong], timestamp=NOW) + message
    ok, output = verify(signed, dns_zones.nameserver)
    assert not ok, output
    for key in keys:  # and each one alone passes
        ok, output = verify(
            sign_message(message, [key], timestamp=NOW) + message, dns_zones.nameserver
        )
        assert ok, output


@pytest.mark.parametrize("verify", VERIFIERS)
def test_unpublished_key_fails(
    verify: Verifier, keys: list[SigningKey], dns_zones: ZoneSet
) -> None:
    message = MESSAGES["plain"](dns_zones.domain)
    other = SigningKey("missing", keys[1].domain, keys[1].algorithm, keys[1].private_key)
    signed = sign_message(message, [other], timestamp=NOW) + message
    ok, output = verify(signed, dns_zones.nameserver)
    assert not ok, output
