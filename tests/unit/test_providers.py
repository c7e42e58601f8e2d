"""MX host names → mailbox provider: packaged patterns, the registrable-domain fallback,
operator overrides and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailwarden.reputation.providers import (
    ProviderMap,
    ProviderMapError,
    default_provider_map,
    registrable_domain,
)


# Real MX host names, as published in the providers' DNS.
@pytest.mark.parametrize(
    ("host", "provider"),
    [
        ("gmail-smtp-in.l.google.com", "gmail"),
        ("alt4.gmail-smtp-in.l.google.com.", "gmail"),
        ("aspmx.l.google.com", "gmail"),  # a Google Workspace custom domain
        ("ASPMX2.GOOGLEMAIL.COM", "gmail"),
        ("smtp.google.com", "gmail"),
        ("example-com.mail.protection.outlook.com", "microsoft"),
        ("hotmail-com.olc.protection.outlook.com", "microsoft"),
        ("mx1.hotmail.com", "microsoft"),
        ("contoso-com.o-v1.mx.microsoft", "microsoft"),
        ("mta5.am0.yahoodns.net", "yahoo"),
        ("mx-att.mail.am0.yahoodns.net", "yahoo"),
        ("mx-aol.mail.gm0.yahoodns.net", "aol"),
        ("mx01.mail.icloud.com", "apple"),
        ("mail.protonmail.ch", "proton"),
        ("mx00.emig.gmx.net", "gmx"),
        ("mx-ha03.web.de", "gmx"),
        ("mx00.ionos.de", "gmx"),
        ("mxs.mail.ru", "mailru"),
        ("mx.yandex.ru", "yandex"),
        ("mx.yandex.net", "yandex"),
        ("mx.zoho.eu", "zoho"),
        ("mx.zoho.com.au", "zoho"),
        ("in1-smtp.messagingengine.com", "fastmail"),
        ("mx1a1.comcast.net", "comcast"),
        ("us-smtp-inbound-1.mimecast.com", "mimecast"),
        ("mx0a-001b2d01.pphosted.com", "proofpoint"),
        ("d123.ess.barracudanetworks.com", "barracuda"),
        ("smtp-in.orange.fr", "orange"),
        ("mx00.t-online.de", "t-online"),
        ("smtp-in.laposte.net", "laposte"),
    ],
)
def test_packaged_patterns(host: str, provider: str) -> None:
    assert default_provider_map().provider_for([host]) == provider


@pytest.mark.parametrize(
    ("hosts", "expected"),
    [
        (["mx1.mail.example.net."], "example.net"),
        (["mx.example.co.uk"], "example.co.uk"),
        (["MX.Example.COM.AU"], "example.com.au"),
        (["mail.example.ne.jp"], "example.ne.jp"),
        (["mx.example.de"], "example.de"),
        (["example.org"], "example.org"),
        (["mx.co.uk"], "mx.co.uk"),
        (["192.0.2.25"], "192.0.2.25"),
        ([], "unknown"),
        (["."], "unknown"),  # RFC 7505 null MX
        (["google.com"], "google.com"),  # "*.google.com" does not match google.com itself
        (["notgoogle.com"], "notgoogle.com"),  # nor a name that merely ends in it
    ],
)
def test_no_match_falls_back_to_the_registrable_domain(hosts: list[str], expected: str) -> None:
    assert default_provider_map().provider_for(hosts) == expected


def test_registrable_domain() -> None:
    assert registrable_domain("a.b.c.example.com.") == "example.com"
    assert registrable_domain("[2001:db8::1]") == "2001:db8::1"
    assert registrable_domain("") == "unknown"


def test_first_matching_host_in_preference_order() -> None:
    m = default_provider_map()
    assert m.provider_for(["mx.example.com", "alt1.aspmx.l.google.com"]) == "gmail"
    assert m.provider_for(["mx.example.com", "mx.example.org"]) == "example.com"
    assert m.provider_for(["mx01.mail.icloud.com", "aspmx.l.google.com"]) == "apple"


def test_extra_patterns_are_checked_first() -> None:
    m = ProviderMap.load(
        extra={"gmail": ["mx.example.com"], "microsoft-eu": ["*.eur.protection.outlook.com"]}
    )
    assert m.provider_for(["mx.example.com"]) == "gmail"
    assert m.provider_for(["x.eur.protection.outlook.com"]) == "microsoft-eu"
    assert m.provider_for(["x.mail.protection.outlook.com"]) == "microsoft"
    assert default_provider_map().provider_for(["mx.example.com"]) == "example.com"


def test_more_specific_patterns_win_within_a_file(tmp_path: Path) -> None:
    path = tmp_path / "providers.yaml"
    path.write_text('big: ["*.example.net"]\nsmall: ["*.eu.example.net", "mx.example.net"]\n')
    m = ProviderMap.load(path)
    assert m.provider_for(["a.eu.example.net"]) == "small"
    assert m.provider_for(["mx.example.net"]) == "small"
    assert m.provider_for(["a.us.example.net"]) == "big"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("- a\n- b\n", "expected a mapping"),
        ('gmail: "*.google.com"\n', r"provider 'gmail': expected a non-empty list"),
        ("gmail: []\n", r"provider 'gmail': expected a non-empty list"),
        (
            'gmail: ["*.google.com", "bad host!"]\n',
            r"provider 'gmail': bad host pattern 'bad host!'",
        ),
        ('gmail: ["*.com"]\n', r"bad host pattern '\*\.com'"),
        ('gmail: ["mx.*.google.com"]\n', r"bad host pattern 'mx\.\*\.google\.com'"),
        ("gmail: [42]\n", r"pattern 42 is not a string"),
        ('Gmail Inc: ["*.google.com"]\n', r"bad provider name 'Gmail Inc'"),
        ('a: ["*.example.com"]\nb: ["*.example.com"]\n', r"provider 'b': .*already mapped to 'a'"),
        ("a: [unclosed\n", "not valid YAML"),
    ],
)
def test_validation_names_the_bad_entry(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "providers.yaml"
    path.write_text(content)
    with pytest.raises(ProviderMapError, match=message) as info:
        ProviderMap.load(path)
    assert str(path) in str(info.value)


def test_extra_is_validated_too() -> None:
    with pytest.raises(ProviderMapError, match=r"extra providers: provider 'x': bad host pattern"):
        ProviderMap.load(extra={"x": ["not a host"]})


def test_cached_and_built_once() -> None:
    m = ProviderMap.load()
    assert m.provider_for(("aspmx.l.google.com",)) == m.provider_for(["aspmx.l.google.com"])
    assert default_provider_map() is default_provider_map()
