"""Authentication-Results (RFC 8601) formatting, and authenticate() end to end."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from mailwarden.auth import (
    ArcResult,
    AuthVerdict,
    DkimResult,
    DmarcResult,
    SpfResult,
    authenticate,
    authentication_results,
    dkim_txt_record,
    parse_record,
    sign,
)
from mailwarden.auth.results import comment, format_results, pvalue
from mailwarden.dns.resolver import StaticResolver

MESSAGE = b"From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: hi\r\n\r\nHello.\r\n"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("mx.example.com", "mx.example.com"),
        ("alice@example.com", "alice@example.com"),
        ("first.last+tag@example.com", "first.last+tag@example.com"),
        ("@example.com", "@example.com"),
        ("abc+/def", '"abc+/def"'),  # "/" is a tspecial (RFC 2045 §5.1)
        ("a=b", '"a=b"'),
        ("has space", '"has space"'),
        ('say "hi"\\', '"say \\"hi\\"\\\\"'),
        ('"quoted local"@example.com', '"\\"quoted local\\"@example.com"'),
        ("evil\r\nX-Injected: 1", '"evil X-Injected: 1"'),
    ],
)
def test_pvalue_quoting(value: str, expected: str) -> None:
    assert pvalue(value) == expected


def test_comment_escaping() -> None:
    assert comment("a (b) \\ c\r\nd") == "(a \\(b\\) \\\\ c d)"
    assert len(comment("x" * 500)) == 102


def _verdict(**changes: object) -> AuthVerdict:
    base: dict[str, object] = {
        "spf_mailfrom": SpfResult("pass", "example.com", "matched ip4"),
        "spf_helo": SpfResult("none", "mail.example.com", "no SPF record"),
        "dkim": [DkimResult("pass", "example.com", "s1", "rsa-sha256", "AbC+/123", "ok")],
        "dmarc": DmarcResult("pass", "example.com", "reject", "example.com", True, True, None, ""),
        "arc": ArcResult("none", "no ARC header fields", 0),
        "from_domain": "example.com",
        "mail_from": "alice@example.com",
        "helo": "mail.example.com",
    }
    base.update(changes)
    return AuthVerdict(**base)  # type: ignore[arg-type]


def test_full_header_value() -> None:
    value = authentication_results("mx.example.net", _verdict(), fold=False)
    assert value == (
        "mx.example.net; spf=pass smtp.mailfrom=alice@example.com; "
        "spf=none (no SPF record) smtp.helo=mail.example.com; "
        'dkim=pass header.d=example.com header.s=s1 header.b="AbC+/123"; '
        "dmarc=pass header.from=example.com; arc=none"
    )


def test_folded_one_resinfo_per_line() -> None:
    value = authentication_results("mx.example.net", _verdict())
    lines = value.split("\r\n")
    assert lines[0] == "mx.example.net;"
    assert all(line.startswith("\t") for line in lines[1:])
    assert len(lines) == 6


def _dmarc(result: str, reason: str) -> DmarcResult:
    return DmarcResult(
        result=result,
        from_domain="example.com",
        policy="reject",
        org_domain="example.com",
        spf_aligned=result == "pass",
        dkim_aligned=False,
        record=parse_record("v=DMARC1; p=reject"),
        reason=reason,
    )


def test_dmarc_policy_comment_no_dkim_and_arc_fail() -> None:
    dmarc = _dmarc("fail", "no aligned SPF or DKIM pass")
    value = format_results(
        "mx",
        spf_mailfrom=SpfResult("fail", "example.com", "matched -all"),
        spf_helo=None,
        dkim=[],
        dmarc=dmarc,
        arc=ArcResult("fail", "ARC-Seal[1] did not validate", 1),
        mail_from="",
        helo="",
        from_domain="example.com",
        fold=False,
    )
    assert value == (
        "mx; spf=fail (matched -all); dkim=none; "
        "dmarc=fail (p=reject no aligned SPF or DKIM pass) header.from=example.com; "
        "arc=fail (ARC-Seal[1] did not validate)"
    )


def test_null_mail_from_reports_postmaster_at_helo() -> None:
    value = authentication_results("mx", _verdict(mail_from=""), fold=False)
    assert "smtp.mailfrom=postmaster@mail.example.com" in value


def test_dmarc_with_record_shows_policy() -> None:
    value = authentication_results("mx", _verdict(dmarc=_dmarc("pass", "aligned SPF")), fold=False)
    assert "dmarc=pass (p=reject) header.from=example.com" in value


# ---------------------------------------------------------------------- authenticate()
@pytest.fixture(scope="module")
def ed_pem() -> bytes:
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _zone(ed_pem: bytes) -> StaticResolver:
    return StaticResolver(
        {
            ("example.com", "TXT"): ["v=spf1 ip4:192.0.2.0/24 -all"],
            ("mail.example.com", "TXT"): ["v=spf1 a -all"],
            ("mail.example.com", "A"): ["192.0.2.25"],
            ("ed._domainkey.example.com", "TXT"): [dkim_txt_record(ed_pem)],
            ("_dmarc.example.com", "TXT"): ["v=DMARC1; p=reject"],
        }
    )


async def test_authenticate_all_pass(ed_pem: bytes) -> None:
    message = sign(MESSAGE, "ed", "example.com", ed_pem, "ed25519-sha256") + MESSAGE
    verdict = await authenticate(
        _zone(ed_pem),
        ip="192.0.2.25",
        helo="mail.example.com",
        mail_from="<alice@example.com>",
        message=message,
    )
    assert verdict.spf_mailfrom.result == verdict.spf_helo.result == "pass"
    assert [d.result for d in verdict.dkim] == ["pass"]
    assert (verdict.dmarc.result, verdict.dmarc.policy) == ("pass", "reject")
    assert verdict.dmarc.spf_aligned and verdict.dmarc.dkim_aligned
    assert (verdict.arc.result, verdict.from_domain, verdict.mail_from) == (
        "none",
        "example.com",
        "alice@example.com",
    )
    value = authentication_results("mx.example.net", verdict, fold=False)
    assert "spf=pass smtp.mailfrom=alice@example.com" in value
    assert "dkim=pass header.d=example.com header.s=ed" in value
    assert "dmarc=pass (p=reject) header.from=example.com" in value


async def test_authenticate_spoof_fails_dmarc(ed_pem: bytes) -> None:
    verdict = await authenticate(
        _zone(ed_pem), ip="203.0.113.9", helo="evil.test", mail_from="", message=MESSAGE
    )
    assert verdict.spf_mailfrom.result == "none"  # postmaster@evil.test: no record
    assert verdict.dkim == []
    assert (verdict.dmarc.result, verdict.dmarc.policy) == ("fail", "reject")


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"\r\n\r\nbody only",
        b"\x00\xff\xfe garbage without structure",
        b"From: a@example.com\r\nFrom: b@example.com\r\n\r\nx",
        b"From: Alice <alice@example.com>\r\nDKIM-Signature: v=1; b=!!!; bh=\xff\r\n\r\nx",
        b"From: " + b"a" * 200_000 + b"@example.com\r\n\r\n",
        b"DKIM-Signature: " + b"d=x;" * 20_000 + b"\r\nFrom: a@example.com\r\n\r\n",
        b"ARC-Seal: i=1; a=rsa-sha256; b=%%%; d=\xff; s=x\r\nFrom: a@example.com\r\n\r\n",
        b"ARC-Seal: i=1\r\n" * 60 + b"From: a@example.com\r\n\r\n",
        b"From: =?utf-8?b?!!!?= <a@example.com>\r\nSubject: \xc3\x28\r\n\r\n",
        b"Subject: no colon next\r\nthis is not a header\r\nFrom: a@example.com\r\n\r\n",
    ],
)
async def test_authenticate_never_raises_on_hostile_input(
    ed_pem: bytes, message: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    verdict = await authenticate(
        _zone(ed_pem), ip="192.0.2.25", helo="mail.example.com", mail_from="", message=message
    )
    assert verdict.dmarc.result in ("pass", "fail", "none", "permerror")
    assert authentication_results("mx", verdict)
    assert not [r for r in caplog.records if r.name == "mailwarden.auth"]  # no check crashed


async def test_multiple_from_is_dmarc_permerror(ed_pem: bytes) -> None:
    message = b"From: a@example.com\r\nFrom: b@example.org\r\n\r\nx"
    verdict = await authenticate(
        _zone(ed_pem), ip="192.0.2.25", helo="mail.example.com", mail_from="", message=message
    )
    assert verdict.from_domain is None
    assert (verdict.dmarc.result, verdict.dmarc.reason) == (
        "permerror",
        "multiple From header fields",
    )
