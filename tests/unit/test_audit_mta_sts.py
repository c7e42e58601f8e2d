"""MTA-STS / TLS-RPT check: pure parsing and matching, and the check without a network
(StaticResolver; the HTTPS fetch is replaced where a policy is needed)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailwarden.core.errors import DnsError
from mailwarden.dns.resolver import Resolver, StaticResolver
from mailwarden.reputation.audit import mta_sts
from mailwarden.reputation.audit.cache import CachingResolver
from mailwarden.reputation.audit.model import AuditTarget
from mailwarden.reputation.audit.mta_sts import check_mta_sts
from mailwarden.reputation.audit.policy_fetch import (
    PolicyFetchError,
    PolicyResponse,
    fetch_policy,
    policy_url,
)
from mailwarden.reputation.audit.sts_policy import (
    mx_covered,
    parse_policy,
    policy_text,
    sts_id,
    tlsrpt_problem,
)

D = "example.com"
MX = "mx.example.com"
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
GOOD = "version: STSv1\r\nmode: enforce\r\nmx: mx.example.com\r\nmax_age: 604800\r\n"
STS = "v=STSv1; id=20250101T000000"
RPT = "v=TLSRPTv1; rua=mailto:tls@example.com"


def target(hostname: str = MX) -> AuditTarget:
    return AuditTarget(domain=D, hostname=hostname, helo_name=hostname, sending_ips=(), now=NOW)


def resolver(
    sts: list[str] | None = None, rpt: list[str] | None = None, mx: list[str] | None = None
) -> CachingResolver:
    records: dict[tuple[str, str], list[str]] = {
        (D, "MX"): [f"10 {MX}."] if mx is None else mx,
        (MX, "A"): ["192.0.2.1"],
    }
    if sts is not None:
        records[(f"_mta-sts.{D}", "TXT")] = sts
    if rpt is not None:
        records[(f"_smtp._tls.{D}", "TXT")] = rpt
    return CachingResolver(StaticResolver(records))


def serve(monkeypatch: pytest.MonkeyPatch, text: str, content_type: str = "text/plain") -> None:
    """Replace the HTTPS fetch with a canned 200 answer."""

    async def fake(dns: Resolver, host: str, port: int, ca: Path | None) -> PolicyResponse:
        assert host == f"mta-sts.{D}"
        return PolicyResponse(policy_url(host, port), content_type, text)

    monkeypatch.setattr(mta_sts, "fetch_policy_response", fake)


# ------------------------------------------------------------------ the TXT record


@pytest.mark.parametrize(
    ("record", "want"),
    [
        ("v=STSv1; id=20160831085700Z;", "20160831085700Z"),
        ("v=STSv1;id=abc", "abc"),
        ("v=STSv1 ; id=A1 ; ext=1", "A1"),
        ("v=STSv1; id=" + "x" * 32, "x" * 32),
    ],
)
def test_sts_id(record: str, want: str) -> None:
    assert sts_id(record) == want


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ("v=STSv1", "no id="),
        ("v=STSv1; id=", "not 1 to 32"),
        ("v=STSv1; id=2016-08-31", "not 1 to 32"),
        ("v=STSv1; id=" + "x" * 33, "not 1 to 32"),
        ("v=STSv1 id=abc", "does not start with v=STSv1;"),
        ("v=STSv10; id=abc", "does not start with v=STSv1;"),
    ],
)
def test_sts_id_errors(record: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        sts_id(record)


# ------------------------------------------------------------------ the policy file


def test_parse_good_policy_crlf_and_lf() -> None:
    for text in (GOOD, GOOD.replace("\r\n", "\n"), GOOD.rstrip()):
        policy = parse_policy(text)
        assert policy.problems == ()
        assert (policy.version, policy.mode, policy.mx, policy.max_age) == (
            "STSv1",
            "enforce",
            (MX,),
            604800,
        )


def test_parse_several_mx_wildcard_and_unknown_keys() -> None:
    policy = parse_policy(
        "version: STSv1\nmode: testing\nmx: mx1.example.com\nmx:*.example.net\n"
        "future: ignored\nmax_age:86400\nmode: enforce\n"
    )
    assert policy.problems == ()
    assert policy.mx == ("mx1.example.com", "*.example.net")
    assert policy.mode == "testing"  # the first of a repeated key counts
    assert policy.max_age == 86400


def test_mode_none_needs_no_mx() -> None:
    policy = parse_policy("version: STSv1\nmode: none\nmax_age: 86400\n")
    assert policy.problems == ()
    assert policy.mx == ()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("mode: enforce\nmx: a.example\nmax_age: 1", "version is missing"),
        ("version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1", "not STSv1"),
        ("version: STSv1\nmx: a.example\nmax_age: 1", "no mode"),
        ("version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1", "not enforce, testing"),
        ("version: STSv1\nmode: enforce\nmx: a.example", "max_age is missing"),
        ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1w", "not a number"),
        ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1", "not a number"),
        ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601", "over the limit"),
        ("version: STSv1\nmode: enforce\nmax_age: 86400", "no mx line"),
        ("version: STSv1\nmode: testing\nmx: *.*.example\nmax_age: 86400", "mx '*.*.example'"),
        ("version: STSv1\nmode: testing\nmx: mx.example.\nmax_age: 86400", "mx 'mx.example.'"),
        ("version: STSv1\nmode: testing\nmx: a b\nmax_age: 86400", "mx 'a b'"),
        ("<html>\nversion: STSv1\nmode: none\nmax_age: 1", "line 1 ('<html>')"),
    ],
)
def test_parse_policy_problems(text: str, problem: str) -> None:
    problems = parse_policy(text).problems
    assert any(problem in p for p in problems), problems


def test_max_age_limit_itself_is_fine() -> None:
    text = "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557600"
    assert parse_policy(text).problems == ()


@pytest.mark.parametrize(
    ("patterns", "host", "covered"),
    [
        (["mx.example.com"], "mx.example.com", True),
        (["MX.Example.com"], "mx.example.COM.", True),
        (["mx.example.com"], "mx2.example.com", False),
        (["*.example.com"], "mail.example.com", True),
        (["*.example.com"], "example.com", False),
        (["*.example.com"], "a.b.example.com", False),
        (["*.example.com"], "mail.example.org", False),
        (["other.example", "*.example.com"], "mx.example.com", True),
        ([], "mx.example.com", False),
    ],
)
def test_mx_covered(patterns: list[str], host: str, covered: bool) -> None:
    assert mx_covered(patterns, host) is covered


def test_policy_text_round_trips() -> None:
    text = policy_text("testing", [MX, "*.example.net"])
    assert (
        text
        == "version: STSv1\nmode: testing\nmx: mx.example.com\nmx: *.example.net\nmax_age: 604800"
    )
    assert parse_policy(text).problems == ()


def test_policy_url() -> None:
    assert (
        policy_url("mta-sts.example.com") == "https://mta-sts.example.com/.well-known/mta-sts.txt"
    )
    assert policy_url("h.test", 8443) == "https://h.test:8443/.well-known/mta-sts.txt"


# ------------------------------------------------------------------ TLS-RPT


@pytest.mark.parametrize(
    "records",
    [
        [RPT],
        ["v=TLSRPTv1;rua=https://reports.example.com/tlsrpt"],
        ["v=TLSRPTv1; rua=mailto:a@example.com, https://r.example/x;", "unrelated"],
    ],
)
def test_tlsrpt_ok(records: list[str]) -> None:
    assert tlsrpt_problem(records) is None


@pytest.mark.parametrize(
    ("records", "problem"),
    [
        ([], "no TLS-RPT record"),
        (["v=spf1 -all"], "no TLS-RPT record"),
        ([RPT, RPT], "2 TLS-RPT records"),
        (["v=TLSRPTv1"], "no rua="),
        (["v=TLSRPTv1; rua="], "no rua="),
        (["v=TLSRPTv1; rua=http://r.example/"], "not a mailto: or https:"),
        (["v=TLSRPTv1; rua=mailto:nobody"], "not a mailto: or https:"),
        (["v=TLSRPTv1 rua=mailto:a@b.example"], "does not start with"),
    ],
)
def test_tlsrpt_problems(records: list[str], problem: str) -> None:
    assert problem in (tlsrpt_problem(records) or "")


# ------------------------------------------------------------------ the check


async def test_no_record_warns_with_the_records_to_publish() -> None:
    result = await check_mta_sts(target(), resolver(mx=[f"10 {MX}.", "20 backup.example.net."]))
    assert result.name == "mta_sts"
    assert result.status == "warn"
    assert "No MTA-STS record at _mta-sts.example.com" in result.detail
    assert "TLS reporting is not set up" in result.detail
    assert '_mta-sts.example.com. TXT "v=STSv1; id=20250102030405"' in result.fix
    assert "https://mta-sts.example.com/.well-known/mta-sts.txt" in result.fix
    assert (
        "version: STSv1\nmode: testing\nmx: mx.example.com\nmx: backup.example.net\n"
        "max_age: 604800" in result.fix
    )
    assert '_smtp._tls.example.com. TXT "v=TLSRPTv1; rua=mailto:tls-reports@example.com"' in (
        result.fix
    )


async def test_no_record_with_tlsrpt_does_not_ask_for_tlsrpt() -> None:
    result = await check_mta_sts(target(), resolver(sts=["v=spf1 -all"], rpt=[RPT]))
    assert result.status == "warn"
    assert "_smtp._tls" not in result.fix
    assert "_smtp._tls" not in result.detail


@pytest.mark.parametrize(
    ("records", "words"),
    [
        ([STS, "v=STSv1; id=other"], "There are 2 v=STSv1 records"),
        (["v=STSv1; id=not-valid"], "is invalid: id='not-valid'"),
        (["v=STSv1"], "has no id= field"),
    ],
)
async def test_bad_record_fails(records: list[str], words: str) -> None:
    result = await check_mta_sts(target(), resolver(sts=records, rpt=[RPT]))
    assert result.status == "fail"
    assert words in result.detail
    assert '_mta-sts.example.com. TXT "v=STSv1; id=20250102030405"' in result.fix


async def test_policy_host_without_address_fails() -> None:
    result = await check_mta_sts(target(), resolver(sts=[STS], rpt=[RPT]))
    assert result.status == "fail"
    assert "mta-sts.example.com has no A or AAAA record" in result.detail
    assert "with HTTP 200 (no redirect), Content-Type: text/plain" in result.fix
    assert "mx: mx.example.com" in result.fix


async def test_fetch_policy_without_address_raises() -> None:
    with pytest.raises(PolicyFetchError, match="no A or AAAA"):
        await fetch_policy(StaticResolver({}), "mta-sts.example.com", 443, None)


async def test_dns_failure_propagates_for_the_auditor() -> None:
    dns = CachingResolver(StaticResolver({}, failing={(f"_mta-sts.{D}", "TXT")}))
    with pytest.raises(DnsError):
        await check_mta_sts(target(), dns)


async def test_enforce_covering_every_mx_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    serve(monkeypatch, GOOD.replace("mx: mx.example.com", "mx: *.example.com"))
    result = await check_mta_sts(
        target(), resolver(sts=[STS], rpt=[RPT], mx=[f"10 {MX}.", "20 mx2.example.com."])
    )
    assert result.status == "pass", result.detail
    assert result.fix == ""
    assert "mx.example.com, mx2.example.com" in result.detail


async def test_uncovered_mx_fails_and_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    serve(monkeypatch, GOOD)
    dns = resolver(sts=[STS], rpt=[RPT], mx=[f"10 {MX}.", "20 backup.example.net."])
    result = await check_mta_sts(target(), dns)
    assert result.status == "fail"
    assert "(mx.example.com) do not cover backup.example.net" in result.detail
    assert "mode: enforce\nmx: mx.example.com\nmx: backup.example.net\n" in result.fix
    assert "id=20250102030405" in result.fix


async def test_our_hostname_must_be_covered_even_if_not_an_mx(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    serve(monkeypatch, GOOD)
    result = await check_mta_sts(
        target(hostname="smtp.example.com"), resolver(sts=[STS], rpt=[RPT])
    )
    assert result.status == "fail"
    assert "do not cover smtp.example.com" in result.detail


async def test_testing_mode_warns_to_move_to_enforce(monkeypatch: pytest.MonkeyPatch) -> None:
    serve(monkeypatch, GOOD.replace("enforce", "testing"))
    result = await check_mta_sts(target(), resolver(sts=[STS], rpt=[RPT]))
    assert result.status == "warn"
    assert "testing mode" in result.detail
    assert "enforce once the TLS reports show no failures" in result.detail
    assert "mode: enforce\nmx: mx.example.com" in result.fix


async def test_mode_none_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    serve(monkeypatch, "version: STSv1\nmode: none\nmax_age: 86400\n")
    result = await check_mta_sts(target(), resolver(sts=[STS], rpt=[RPT]))
    assert result.status == "warn"
    assert "mode is none" in result.detail
    assert "mode: testing\nmx: mx.example.com\nmax_age: 86400" in result.fix


async def test_invalid_policy_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    serve(monkeypatch, "version: STSv1\nmode: strict\nmx: mx.example.com\nmax_age: 604800\n")
    result = await check_mta_sts(target(), resolver(sts=[STS], rpt=[RPT]))
    assert result.status == "fail"
    assert "is invalid: mode 'strict' is not enforce, testing or none" in result.detail
    assert "version: STSv1\nmode: testing\nmx: mx.example.com\nmax_age: 604800" in result.fix


async def test_wrong_content_type_and_short_max_age_warn(monkeypatch: pytest.MonkeyPatch) -> None:
    serve(monkeypatch, GOOD.replace("604800", "3600"), content_type="text/html")
    result = await check_mta_sts(target(), resolver(sts=[STS], rpt=[RPT]))
    assert result.status == "warn"
    assert "served as 'text/html', not text/plain" in result.detail
    assert "max_age 3600 is under a day" in result.detail
    assert "Content-Type: text/plain" in result.fix


async def test_content_type_with_charset_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    serve(monkeypatch, GOOD, content_type="Text/Plain; charset=utf-8")
    result = await check_mta_sts(target(), resolver(sts=[STS], rpt=[RPT]))
    assert result.status == "pass"


async def test_good_policy_without_tlsrpt_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    serve(monkeypatch, GOOD)
    result = await check_mta_sts(target(), resolver(sts=[STS]))
    assert result.status == "warn"
    assert "enforces TLS" in result.detail
    assert "TLS reporting is not set up at _smtp._tls.example.com" in result.detail
    assert (
        result.fix == '_smtp._tls.example.com. TXT "v=TLSRPTv1; rua=mailto:tls-reports@example.com"'
    )
