"""DMARC (RFC 7489): record parsing, From extraction, discovery, alignment, sp/np/pct."""

from __future__ import annotations

import pytest

from mailwarden.auth.dkim import DkimResult
from mailwarden.auth.dmarc import (
    DmarcRecord,
    DmarcRecordError,
    check_dmarc,
    from_domain,
    is_aligned,
    load_psl,
    organizational_domain,
    parse_record,
)
from mailwarden.auth.spf import SpfResult
from mailwarden.dns.resolver import StaticResolver

SPF_NONE = SpfResult("none", "", "")


def spf(result: str, domain: str = "example.com") -> SpfResult:
    return SpfResult(result, domain, "test")


def dkim(domain: str, result: str = "pass") -> DkimResult:
    return DkimResult(result, domain, "sel", "rsa-sha256", "abcdefgh", "test")


def dmarc_zone(records: dict[str, str | list[str]]) -> StaticResolver:
    return StaticResolver(
        {
            (f"_dmarc.{name}", "TXT"): value if isinstance(value, list) else [value]
            for name, value in records.items()
        }
    )


# ------------------------------------------------------------------------ record parsing
def test_full_record() -> None:
    rec = parse_record(
        "v=DMARC1; p=reject; sp=quarantine; np=reject; adkim=s; aspf=s; pct=25; "
        "rua=mailto:agg@example.com,mailto:agg2@example.net!10m; ruf=mailto:f@example.com; "
        "fo=1:d; rf=afrf; ri=3600"
    )
    assert rec == DmarcRecord(
        p="reject",
        sp="quarantine",
        np="reject",
        adkim="s",
        aspf="s",
        pct=25,
        rua=("mailto:agg@example.com", "mailto:agg2@example.net!10m"),
        ruf=("mailto:f@example.com",),
        fo="1:d",
        rf="afrf",
        ri=3600,
    )


def test_defaults_and_case_and_spacing() -> None:
    rec = parse_record("v=DMARC1;p=Quarantine ;  ")
    assert rec == DmarcRecord(p="quarantine")
    assert (rec.adkim, rec.aspf, rec.pct, rec.fo, rec.ri) == ("r", "r", 100, "0", 86400)


@pytest.mark.parametrize(
    "text",
    [
        "v=DMARC2; p=none",
        "v=dmarc1; p=none",  # RFC 7489 §6.4: the version is case-sensitive
        "p=none; v=DMARC1",  # v must come first
        "v=DMARC1",  # no p, no rua
        "v=DMARC1; p=block",  # invalid p, no rua
        "v=DMARC1; p=reject; sp=maybe",  # invalid sp, no rua
        "v=DMARC1; p=bad; rua=not a uri",  # an invalid p needs a *valid* rua
        "spf1 whatever",
        "",
    ],
)
def test_unusable_records(text: str) -> None:
    with pytest.raises(DmarcRecordError):
        parse_record(text)


def test_invalid_p_with_rua_acts_as_p_none() -> None:
    # RFC 7489 §6.6.3: a record with rua but without a valid p acts as "p=none".
    rec = parse_record("v=DMARC1; p=rejectt; sp=reject; adkim=s; rua=mailto:d@example.com")
    assert (rec.p, rec.sp, rec.adkim, rec.rua) == ("none", None, "r", ("mailto:d@example.com",))
    assert "acting as p=none" in rec.problems
    assert parse_record("v=DMARC1; rua=mailto:d@example.com").p == "none"


def test_bad_optional_tags_fall_back_to_defaults() -> None:
    rec = parse_record("v=DMARC1; p=reject; pct=150; adkim=x; aspf=; fo=2; ri=soon; np=x")
    assert (rec.pct, rec.adkim, rec.aspf, rec.fo, rec.ri, rec.np) == (
        100,
        "r",
        "r",
        "0",
        86400,
        None,
    )
    assert len(rec.problems) == 6
    assert parse_record("v=DMARC1; p=none; pct=0").pct == 0


def test_unknown_tags_ignored_first_duplicate_wins() -> None:
    rec = parse_record("v=DMARC1; p=none; foo=bar; p=reject; x")
    assert rec.p == "none"


# ---------------------------------------------------------------------------- From domain
@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([("From", "Alice <alice@Example.COM>")], ("example.com", "")),
        ([("from", '"Doe, John" <john@mail.example.org.>')], ("mail.example.org", "")),
        ([("FROM", "bob@example.net (Bob)")], ("example.net", "")),
        ([("To", "a@b.example")], (None, "no From header field")),
        ([("From", "a@x.example"), ("From", "b@y.example")], (None, "multiple From")),
        ([("From", "a@x.example, b@y.example")], (None, "multiple addresses in From")),
        ([("From", "undisclosed-recipients:;")], (None, "no address in From")),
        ([("From", "alice")], (None, "invalid From address")),
        ([("From", "alice@localhost")], (None, "invalid From address")),
        ([("From", "a@\udcff\udcfe.example")], (None, "invalid From address")),
    ],
)
def test_from_domain(headers: list[tuple[str, str]], expected: tuple[str | None, str]) -> None:
    domain, reason = from_domain(headers)
    assert domain == expected[0]
    assert reason.startswith(expected[1])


# ------------------------------------------------------------------- org domain, alignment
async def test_organizational_domain_and_alignment() -> None:
    psl = await load_psl()
    assert await load_psl() is psl  # loaded once
    assert organizational_domain("a.b.example.co.uk", psl) == "example.co.uk"
    assert organizational_domain("co.uk", psl) == "co.uk"
    assert organizational_domain("Mail.Example.COM.", psl) == "example.com"
    assert is_aligned("mail.example.com", "example.com", "r", psl)
    assert is_aligned("example.com", "news.example.com", "r", psl)
    assert not is_aligned("mail.example.com", "example.com", "s", psl)
    assert is_aligned("EXAMPLE.com.", "example.com", "s", psl)
    assert not is_aligned("example.co.uk", "other.co.uk", "r", psl)
    assert not is_aligned("", "example.com", "r", psl)


# ------------------------------------------------------------------------- check_dmarc
async def test_pass_by_relaxed_dkim_alignment() -> None:
    r = dmarc_zone({"example.com": "v=DMARC1; p=reject"})
    res = await check_dmarc(r, "example.com", SPF_NONE, "", [dkim("mail.example.com")])
    assert (res.result, res.policy, res.dkim_aligned, res.spf_aligned) == (
        "pass",
        "reject",
        True,
        False,
    )
    assert res.org_domain == "example.com"
    assert res.record is not None and res.record.p == "reject"


async def test_strict_dkim_alignment_fails_on_subdomain() -> None:
    r = dmarc_zone({"example.com": "v=DMARC1; p=reject; adkim=s"})
    res = await check_dmarc(r, "example.com", SPF_NONE, "", [dkim("mail.example.com")])
    assert (res.result, res.policy) == ("fail", "reject")


async def test_failed_dkim_signature_does_not_align() -> None:
    r = dmarc_zone({"example.com": "v=DMARC1; p=quarantine"})
    res = await check_dmarc(r, "example.com", SPF_NONE, "", [dkim("example.com", "fail")])
    assert (res.result, res.policy) == ("fail", "quarantine")


@pytest.mark.parametrize(
    ("record", "spf_result", "mail_from_domain", "expected"),
    [
        ("v=DMARC1; p=reject", "pass", "bounce.example.com", "pass"),
        ("v=DMARC1; p=reject; aspf=s", "pass", "bounce.example.com", "fail"),
        ("v=DMARC1; p=reject; aspf=s", "pass", "example.com", "pass"),
        ("v=DMARC1; p=reject", "softfail", "example.com", "fail"),  # only an SPF pass counts
        ("v=DMARC1; p=reject", "pass", "example.net", "fail"),
    ],
)
async def test_spf_alignment(
    record: str, spf_result: str, mail_from_domain: str, expected: str
) -> None:
    r = dmarc_zone({"example.com": record})
    res = await check_dmarc(r, "example.com", spf(spf_result), mail_from_domain, [])
    assert res.result == expected
    assert res.spf_aligned is (expected == "pass")


async def test_org_domain_fallback_uses_sp() -> None:
    r = dmarc_zone({"example.co.uk": "v=DMARC1; p=reject; sp=quarantine"})
    res = await check_dmarc(r, "a.b.example.co.uk", SPF_NONE, "", [])
    assert (res.result, res.policy, res.org_domain) == ("fail", "quarantine", "example.co.uk")
    assert r.queries == [
        ("_dmarc.a.b.example.co.uk", "TXT"),
        ("_dmarc.example.co.uk", "TXT"),
    ]


async def test_org_domain_record_without_sp_uses_p() -> None:
    r = dmarc_zone({"example.com": "v=DMARC1; p=reject"})
    res = await check_dmarc(r, "news.example.com", SPF_NONE, "", [])
    assert res.policy == "reject"


async def test_subdomain_own_record_wins_over_org() -> None:
    r = dmarc_zone({"news.example.com": "v=DMARC1; p=none", "example.com": "v=DMARC1; p=reject"})
    res = await check_dmarc(r, "news.example.com", SPF_NONE, "", [])
    assert (res.result, res.policy) == ("fail", "none")
    assert ("_dmarc.example.com", "TXT") not in r.queries


async def test_np_applies_to_non_existent_subdomains() -> None:
    zone = {
        ("_dmarc.example.com", "TXT"): ["v=DMARC1; p=none; sp=quarantine; np=reject"],
        ("real.example.com", "A"): ["192.0.2.1"],
    }
    ghost = await check_dmarc(StaticResolver(zone), "ghost.example.com", SPF_NONE, "", [])
    real = await check_dmarc(StaticResolver(zone), "real.example.com", SPF_NONE, "", [])
    assert (ghost.policy, real.policy) == ("reject", "quarantine")


@pytest.mark.parametrize(
    ("pct", "draw", "policy"),
    [(50, 0.2, "reject"), (50, 0.7, "quarantine"), (0, 0.0, "quarantine"), (100, 0.999, "reject")],
)
async def test_pct_sampling(pct: int, draw: float, policy: str) -> None:
    r = dmarc_zone({"example.com": f"v=DMARC1; p=reject; pct={pct}"})
    res = await check_dmarc(r, "example.com", SPF_NONE, "", [], rand=lambda: draw)
    assert (res.result, res.policy) == ("fail", policy)


async def test_pct_quarantine_downgrades_to_none() -> None:
    r = dmarc_zone({"example.com": "v=DMARC1; p=quarantine; pct=10"})
    res = await check_dmarc(r, "example.com", SPF_NONE, "", [], rand=lambda: 0.5)
    assert res.policy == "none"
    assert "pct=10" in res.reason


async def test_no_record_is_none() -> None:
    r = StaticResolver({("_dmarc.example.com", "TXT"): ["not dmarc", "v=spf1 -all"]})
    res = await check_dmarc(r, "mail.example.com", SPF_NONE, "", [])
    assert (res.result, res.policy, res.record) == ("none", "none", None)


async def test_multiple_records_is_permerror() -> None:
    r = dmarc_zone({"example.com": ["v=DMARC1; p=none", "v=DMARC1; p=reject"]})
    res = await check_dmarc(r, "example.com", SPF_NONE, "", [dkim("example.com")])
    assert res.result == "permerror"


async def test_invalid_record_means_no_dmarc() -> None:
    r = dmarc_zone({"example.com": "v=DMARC1; p=bogus"})
    res = await check_dmarc(r, "example.com", SPF_NONE, "", [])
    assert res.result == "none"
    assert "invalid p=" in res.reason


async def test_dns_failure_is_temperror() -> None:
    r = StaticResolver(failing={("_dmarc.example.com", "TXT")})
    res = await check_dmarc(r, "example.com", SPF_NONE, "", [])
    assert res.result == "temperror"


async def test_invalid_from_domain_is_permerror() -> None:
    res = await check_dmarc(StaticResolver(), "not a domain", SPF_NONE, "", [])
    assert res.result == "permerror"
