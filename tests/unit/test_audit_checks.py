"""The audit's DNS checks (MX, SPF, DKIM, DMARC, rDNS, HELO, mailboxes) and its score,
against an in-memory resolver. The same checks run against a real DNS server in
tests/integration/test_audit.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from mailwarden.auth.dkim import dkim_txt_record
from mailwarden.auth.dkim_sign import generate_key
from mailwarden.core.errors import DnsError
from mailwarden.dns.resolver import Answer, StaticResolver
from mailwarden.reputation.audit import dns_checks, host_checks, mailboxes, spf_check
from mailwarden.reputation.audit.auditor import audit
from mailwarden.reputation.audit.cache import CachingResolver
from mailwarden.reputation.audit.model import (
    WEIGHTS,
    AuditTarget,
    CheckResult,
    DkimKeyInfo,
    score,
)

D = "example.test"
HOST = "mx.example.test"
IP = "192.0.2.10"


def target(**kw: Any) -> AuditTarget:
    base: dict[str, Any] = {
        "domain": D,
        "hostname": HOST,
        "helo_name": HOST,
        "sending_ips": (IP,),
        "now": datetime(2026, 12, 3, tzinfo=UTC),
    }
    return AuditTarget(**{**base, **kw})


def run(check: Any, records: dict[tuple[str, str], list[str]], **kw: Any) -> CheckResult:
    dns = CachingResolver(StaticResolver(records))
    result: CheckResult = asyncio.run(check(target(**kw), dns))
    return result


GOOD: dict[tuple[str, str], list[str]] = {
    (D, "MX"): [f"10 {HOST}."],
    (D, "TXT"): [f"v=spf1 ip4:{IP} ~all"],
    (HOST, "A"): [IP],
    ("10.2.0.192.in-addr.arpa", "PTR"): [f"{HOST}."],
}


def test_weights_sum_to_100_and_score_rules() -> None:
    assert sum(WEIGHTS.values()) == 100
    checks = [CheckResult("mx", "pass", ""), CheckResult("spf", "warn", "")]
    assert score(checks) == round(100 * (10 + 7.5) / 25)
    assert score([*checks, CheckResult("dane", "skip", "")]) == score(checks)
    assert score([CheckResult("dane", "skip", "")]) == 0


def test_mx() -> None:
    assert run(dns_checks.check_mx, GOOD).status == "pass"
    r = run(dns_checks.check_mx, {**GOOD, (D, "MX"): ["0 ."]})
    assert r.status == "fail" and "null MX" in r.detail
    r = run(dns_checks.check_mx, {**GOOD, (D, "MX"): [f"5 backup.{D}.", f"10 {HOST}."]})
    assert r.status == "warn" and "backup" in r.detail
    r = run(dns_checks.check_mx, {(D, "MX"): [f"10 {HOST}."]})
    assert r.status == "fail" and "no A or AAAA" in r.detail


def test_spf_counts_lookups_through_includes_and_redirect() -> None:
    records = {
        **GOOD,
        (D, "TXT"): [f"v=spf1 ip4:{IP} include:a.{D} redirect=r.{D}"],
        (f"a.{D}", "TXT"): ["v=spf1 a mx include:b." + D + " -all"],
        (f"b.{D}", "TXT"): ["v=spf1 exists:x.%{i}." + D + " ptr -all"],
        (f"r.{D}", "TXT"): ["v=spf1 -all"],
    }
    dns = CachingResolver(StaticResolver(records))
    count, problems = asyncio.run(spf_check.count_lookups(dns, D))
    # top: include + redirect (2); a.: a, mx, include (3); b.: exists, ptr (2)
    assert count == 7
    assert any("ptr" in p for p in problems)


def test_spf_outcomes() -> None:
    assert run(spf_check.check_spf, GOOD).status == "pass"
    two = run(spf_check.check_spf, {**GOOD, (D, "TXT"): ["v=spf1 -all", "v=spf1 ~all"]})
    assert two.status == "fail" and "2 SPF records" in two.detail
    bad = run(spf_check.check_spf, {**GOOD, (D, "TXT"): ["v=spf1 ip4:300.1.1.1 -all"]})
    assert bad.status == "fail" and "does not parse" in bad.detail
    none = run(spf_check.check_spf, {**GOOD, (D, "TXT"): ["hello"]})
    assert none.status == "fail" and f'"v=spf1 mx ip4:{IP} ~all"' in none.fix
    redirect = {**GOOD, (D, "TXT"): [f"v=spf1 ip4:{IP} redirect=r.{D}"]}
    redirect[(f"r.{D}", "TXT")] = ["v=spf1 -all"]
    assert run(spf_check.check_spf, redirect).status == "pass"  # -all reached via redirect
    relay = run(
        spf_check.check_spf,
        {**GOOD, ("relay.test", "A"): ["198.51.100.1"]},
        relay_hosts=("relay.test",),
    )
    assert relay.status == "fail" and "198.51.100.1" in relay.detail


def _key(selector: str, active: bool = True) -> DkimKeyInfo:
    pem = generate_key("ed25519-sha256")
    return DkimKeyInfo(selector, "ed25519-sha256", dkim_txt_record(pem), active)


def test_dkim_selectors() -> None:
    new, old = _key("new"), _key("old", active=False)
    name = {k: (f"{k.selector}._domainkey.{D}", "TXT") for k in (new, old)}
    both = {name[new]: [new.record], name[old]: [old.record]}
    assert run(dns_checks.check_dkim, both, dkim_keys=(new, old)).status == "pass"
    r = run(dns_checks.check_dkim, {name[new]: [new.record]}, dkim_keys=(new, old))
    assert r.status == "fail" and "old (rotated out, still needed): not published" in r.detail
    assert r.fix == f'{name[old][0]}. IN TXT "{old.record}"'
    wrong = {**both, name[new]: [old.record]}
    r = run(dns_checks.check_dkim, wrong, dkim_keys=(new, old))
    assert r.status == "fail" and "new (signing): the published key is not our key" in r.detail
    testing = {**both, name[new]: [new.record + "; t=y"]}
    assert run(dns_checks.check_dkim, testing, dkim_keys=(new, old)).status == "warn"
    twice = {**both, name[new]: [new.record, new.record]}
    assert run(dns_checks.check_dkim, twice, dkim_keys=(new, old)).status == "fail"
    small = DkimKeyInfo("s", "rsa-sha256", "v=DKIM1; k=rsa; p=AAAA", True, 1024)
    r = run(dns_checks.check_dkim, {}, dkim_keys=(small,))
    assert r.status == "fail" and "fewer than 2048" in r.detail


def test_dkim_without_keys() -> None:
    r = run(dns_checks.check_dkim, {})
    assert r.status == "fail" and f"mailwarden dkim rotate {D}" in r.fix


def test_dmarc_variants() -> None:
    def dmarc(value: str) -> CheckResult:
        return run(dns_checks.check_dmarc, {(f"_dmarc.{D}", "TXT"): [value]})

    assert dmarc(f"v=DMARC1; p=reject; rua=mailto:r@{D}").status == "pass"
    q = dmarc(f"v=DMARC1; p=quarantine; rua=mailto:r@{D}")
    assert q.status == "pass" and "p=reject" in q.detail
    n = dmarc(f"v=DMARC1; p=none; rua=mailto:r@{D}")
    assert n.status == "warn" and "quarantine" in n.fix
    assert dmarc("v=DMARC1; p=reject").status == "warn"  # no rua
    pct = dmarc(f"v=DMARC1; p=reject; pct=20; rua=mailto:r@{D}")
    assert pct.status == "warn" and "20%" in pct.detail
    assert dmarc("v=DMARC1; p=bogus").status == "fail"


def test_dmarc_from_the_organizational_domain() -> None:
    records = {
        ("_dmarc.example.com", "TXT"): [
            "v=DMARC1; p=reject; sp=quarantine; rua=mailto:r@example.com"
        ]
    }
    dns = CachingResolver(StaticResolver(records))
    r = asyncio.run(dns_checks.check_dmarc(target(domain="mail.example.com"), dns))
    assert r.status == "pass" and "p=quarantine (from example.com)" in r.detail
    two = {("_dmarc." + D, "TXT"): ["v=DMARC1; p=none", "v=DMARC1; p=reject"]}
    assert run(dns_checks.check_dmarc, two).status == "fail"


def test_rdns_and_helo() -> None:
    assert run(host_checks.check_rdns, GOOD).status == "pass"
    assert run(host_checks.check_helo, GOOD).status == "pass"
    other = {
        **GOOD,
        ("10.2.0.192.in-addr.arpa", "PTR"): ["vps-10.hoster.test."],
        ("vps-10.hoster.test", "A"): [IP],
    }
    assert run(host_checks.check_rdns, other).status == "pass"
    helo = run(host_checks.check_helo, other)
    assert helo.status == "fail" and helo.fix == "set delivery.helo_name to vps-10.hoster.test"
    nothing = {k: v for k, v in GOOD.items() if k[1] != "PTR"}
    r = run(host_checks.check_rdns, nothing)
    assert r.status == "fail" and "no PTR record" in r.detail
    # No configured IP: the addresses of our host name are checked.
    r = run(host_checks.check_rdns, GOOD, sending_ips=())
    assert r.status == "pass" and f"the addresses of {HOST}" in r.detail


def test_mailboxes() -> None:
    ok = {f"postmaster@{D}": "alias", f"abuse@{D}": "user"}
    assert run(mailboxes.check_mailboxes, {}, mailboxes=ok).status == "pass"
    r = run(mailboxes.check_mailboxes, {}, mailboxes={f"postmaster@{D}": "x"})
    assert r.status == "fail" and f"abuse@{D}" in r.detail


def test_cache_sends_each_question_once_even_concurrently() -> None:
    inner = StaticResolver({(D, "MX"): [f"10 {HOST}."]}, failing={(D, "TXT")})
    dns = CachingResolver(inner)

    async def go() -> None:
        answers = await asyncio.gather(*(dns.query(D, "MX") for _ in range(5)))
        assert all(isinstance(a, Answer) and a.records for a in answers)
        for _ in range(2):
            with pytest.raises(DnsError):
                await dns.query(D, "TXT")

    asyncio.run(go())
    assert inner.queries == [(D, "MX"), (D, "TXT")]
    assert (dns.queries, dns.lookups) == (2, 7)


def test_a_dns_failure_is_a_warn_never_a_fail() -> None:
    inner = StaticResolver(GOOD, failing={(D, "MX")})
    report = asyncio.run(audit(target(), inner, only=["mx"]))
    assert [(c.name, c.status) for c in report.checks] == [("mx", "warn")]
    assert "could not check" in report.checks[0].detail
