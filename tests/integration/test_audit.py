"""The deliverability audit of a real set-up: the running server, its listeners with a
certificate from a test CA, and its domain's records on the loopback DNS server.

Each broken set-up named by the issue is written as a zone and must fail its check:
a missing DMARC record, an SPF record with 11 lookups, a wrong DKIM key, a PTR that
does not resolve back and a blocklisted IP. The schedule raises an alert when a check
goes from pass to fail, and resolves it when the record is fixed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sending import wait_until

from certs import issue, make_ca, write_chain
from dnsserver import KnotServer, txt, unique_domain
from mailwarden.reputation.audit.model import AuditReport, score
from mailwarden.services.dns_records import DnsRecord, records_to_publish
from mwserver import PASSWORD, ServerThread, free_port, make_config, mw, settings_for, write_config


@dataclass
class Site:
    srv: ServerThread
    dns: KnotServer
    domain: str
    host: str
    ip: str
    config: Path
    records: list[DnsRecord]
    extra: list[str] = field(default_factory=list)

    def lines(self, skip: str = "", replace: dict[str, str] | None = None) -> list[str]:
        out = []
        for r in self.records:
            if skip and r.name.startswith(skip) and r.type == "TXT":
                continue
            key = r.name if r.type == "TXT" else f"{r.name} {r.type}"  # TXT: by name alone
            value = (replace or {}).get(key, r.value)
            out.append(f"{r.name}. {r.type} {txt(value) if r.type == 'TXT' else value}")
        return [*out, f"{self.host}. A {self.ip}", *self.extra]

    def publish(self, skip: str = "", replace: dict[str, str] | None = None) -> None:
        self.dns.set_zone(self.domain, self.lines(skip, replace))

    def audit(self) -> AuditReport:
        report: AuditReport = self.srv.call(self.srv.services.audits.audit(self.domain))
        return report

    def check(self, name: str) -> tuple[str, str, str]:
        c = next(c for c in self.audit().checks if c.name == name)
        return c.status, c.detail, c.fix


@pytest.fixture
def site(tmp_path: Path, test_tld: KnotServer) -> Iterator[Site]:
    domain = unique_domain("audit")
    host = f"mx.{domain}"
    ip = f"127.{random.randint(1, 250)}.{random.randint(1, 250)}.{random.randint(2, 250)}"
    ca = make_ca()
    cert, key = write_chain(tmp_path / "tls", issue(ca, host))
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.pem())
    cfg = make_config(
        tmp_path,
        nameserver=test_tld.nameserver,
        extra={
            "hostname": host,
            "tls": {"cert": str(cert), "key": str(key)},
            "delivery": {"source_address": ip},
            "listeners": {
                "mx": {"protocol": "smtp", "port": free_port(), "tls": "starttls"},
                "submissions": {"protocol": "submission", "port": free_port(), "tls": "implicit"},
            },
            "reputation": {
                "audit_ca_file": str(ca_file),
                "audit_interval": 0,
                "blocklists": [f"ip:dnsbl.{domain}", f"domain:dbl.{domain}"],
            },
        },
    )
    path = write_config(tmp_path, cfg)
    srv = ServerThread(settings_for(tmp_path, cfg)).start()
    s = srv.services
    srv.call(s.accounts.add_domain(domain))
    srv.call(s.dkim.generate(domain))
    srv.call(s.accounts.add_user(f"admin@{domain}", PASSWORD))
    for role in ("postmaster", "abuse"):
        srv.call(s.accounts.add_alias(f"{role}@{domain}", f"admin@{domain}"))
    records = srv.call(records_to_publish(s.settings, s.accounts, s.dkim, domain))
    test_tld.add_ptr(ip, host)
    site = Site(srv, test_tld, domain, host, ip, path, records)
    site.publish()
    yield site
    srv.stop()


def statuses(report: AuditReport) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}


def test_a_good_setup_passes_every_check_that_applies(site: Site) -> None:
    report = site.audit()
    assert statuses(report) == {
        "mx": "pass",
        "spf": "pass",
        "dkim": "pass",
        "dmarc": "warn",  # p=none, as we advise to start: the advice says what comes next
        "rdns": "pass",
        "helo": "pass",
        "tls": "pass",
        "mta_sts": "warn",  # not published: recommended, optional
        "dane": "skip",  # the zone is not signed
        "mailboxes": "pass",
        "blocklists": "pass",
    }, [c.as_dict() for c in report.checks if c.status != "pass"]
    assert report.score == score(report.checks)
    assert 85 <= report.score < 100
    dmarc = next(c for c in report.checks if c.name == "dmarc")
    assert "quarantine" in dmarc.fix and "reject" in dmarc.fix
    # Every lookup that several checks need went out once: fewer queries than lookups.
    assert report.queries < report.lookups


def test_enforcing_dmarc_and_mta_sts_free_setup_scores_accordingly(site: Site) -> None:
    site.publish(
        replace={f"_dmarc.{site.domain}": f"v=DMARC1; p=reject; rua=mailto:d@{site.domain}"}
    )
    report = site.audit()
    assert statuses(report)["dmarc"] == "pass"
    # Only MTA-STS (warn, weight 5) falls short: 100 × 94.5 / 97.
    assert report.score == round(100 * (97 - 2.5) / 97)


def test_missing_dmarc_record_fails_with_the_record_to_publish(site: Site) -> None:
    site.publish(skip=f"_dmarc.{site.domain}")
    status, detail, fix = site.check("dmarc")
    assert status == "fail"
    assert "no DMARC record" in detail
    assert f'_dmarc.{site.domain}. IN TXT "v=DMARC1; p=none; rua=mailto:' in fix


def test_spf_with_eleven_lookups_fails(site: Site) -> None:
    includes = [f"i{n}.{site.domain}" for n in range(11)]
    spf = f"v=spf1 ip4:{site.ip} " + " ".join(f"include:{i}" for i in includes) + " -all"
    site.extra = [f"{i}. TXT {txt('v=spf1 -all')}" for i in includes]
    site.publish(replace={site.domain: spf})
    status, detail, fix = site.check("spf")
    assert status == "fail"
    assert "11 DNS lookups" in detail
    assert f"ip4:{site.ip}" in fix


def test_spf_that_does_not_authorise_our_ip_or_ends_open(site: Site) -> None:
    site.publish(replace={site.domain: "v=spf1 ip4:192.0.2.1 -all"})
    status, detail, _ = site.check("spf")
    assert (status, detail) == ("fail", f"SPF does not authorise {site.ip} (fail)")
    site.publish(replace={site.domain: f"v=spf1 ip4:{site.ip} ?all"})
    status, detail, _ = site.check("spf")
    assert status == "fail" and "?all" in detail


def test_wrong_dkim_key_fails_and_prints_ours(site: Site) -> None:
    rsa = next(r for r in site.records if "._domainkey." in r.name and "k=rsa" in r.value)
    other = next(r for r in site.records if "._domainkey." in r.name and r is not rsa)
    site.publish(replace={rsa.name: other.value.replace("k=ed25519", "k=rsa")})
    status, detail, fix = site.check("dkim")
    assert status == "fail"
    assert "not our key" in detail or "unusable key" in detail
    assert rsa.value in fix
    site.publish(skip=rsa.name)
    status, detail, _ = site.check("dkim")
    assert status == "fail" and "not published" in detail


def test_rotated_out_selector_must_stay_published(site: Site) -> None:
    s = site.srv.services
    _new, old = site.srv.call(s.dkim.rotate(site.domain))
    # Publish only the new keys: the old ones still verify mail signed before the switch.
    site.records = site.srv.call(records_to_publish(s.settings, s.accounts, s.dkim, site.domain))
    gone = {f"{k.selector}._domainkey.{site.domain}" for k in old}
    site.records = [r for r in site.records if r.name not in gone]
    site.publish()
    status, detail, _ = site.check("dkim")
    assert status == "fail"
    assert "rotated out, still needed): not published" in detail


def test_ptr_that_does_not_resolve_back_fails_rdns_and_helo(site: Site) -> None:
    site.dns.add_ptr(site.ip, f"elsewhere.{site.domain}")
    report = site.audit()
    rdns = next(c for c in report.checks if c.name == "rdns")
    assert rdns.status == "fail"
    assert f"PTR elsewhere.{site.domain} does not resolve back to {site.ip}" in rdns.detail
    assert f"IN PTR {site.host}." in rdns.fix
    assert statuses(report)["helo"] == "fail"


def test_blocklisted_ip_and_domain_fail(site: Site) -> None:
    reversed_ip = ".".join(reversed(site.ip.split(".")))
    site.extra = [
        f"{reversed_ip}.dnsbl.{site.domain}. A 127.0.0.2",
        f"{reversed_ip}.dnsbl.{site.domain}. TXT {txt('listed: spam trap hits')}",
    ]
    site.publish()
    status, detail, _ = site.check("blocklists")
    assert status == "fail"
    assert site.ip in detail and "spam trap hits" in detail
    site.extra = [f"{site.domain}.dbl.{site.domain}. A 127.0.1.2"]
    site.publish()
    status, detail, _ = site.check("blocklists")
    assert status == "fail" and site.domain in detail


def test_missing_abuse_address_fails_mailboxes(site: Site) -> None:
    s = site.srv.services
    site.srv.call(s.accounts.remove_alias(f"abuse@{site.domain}"))
    status, detail, fix = site.check("mailboxes")
    assert status == "fail"
    assert f"abuse@{site.domain}" in detail
    assert fix == f"mailwarden alias add abuse@{site.domain} <your address>"


def test_mx_elsewhere_fails(site: Site) -> None:
    site.publish(replace={f"{site.domain} MX": f"10 mail.{site.domain}."})
    status, detail, fix = site.check("mx")
    assert status == "fail"
    assert f"not at this server ({site.host})" in detail
    assert fix == f"{site.domain}. IN MX 10 {site.host}."


def test_cli_audit_json_and_text(site: Site) -> None:
    res = mw(site.config.parent, "audit", site.domain, "--json", "--config", str(site.config))
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert set(data) == {"domain", "score", "checks"}
    assert data["domain"] == site.domain and 0 <= data["score"] <= 100
    for check in data["checks"]:
        assert set(check) == {"name", "status", "detail", "fix"}
        assert check["status"] in ("pass", "warn", "fail", "skip")
    assert {c["name"]: c["status"] for c in data["checks"]}["tls"] == "pass"
    site.publish(skip=f"_dmarc.{site.domain}")
    res = mw(site.config.parent, "audit", site.domain, "--config", str(site.config))
    assert res.returncode == 1  # a check fails
    assert "fix dmarc" in res.stdout
    assert f'_dmarc.{site.domain}. IN TXT "v=DMARC1; p=none;' in res.stdout
    assert "score" in res.stdout


def test_unknown_domain_is_refused(site: Site) -> None:
    res = mw(site.config.parent, "audit", "nothere.test", "--config", str(site.config))
    assert res.returncode == 3
    assert "not hosted here" in res.stderr


def test_schedule_alerts_when_a_check_goes_from_pass_to_fail(
    tmp_path: Path, test_tld: KnotServer
) -> None:
    domain = unique_domain("audit-schedule")
    host = f"mx.{domain}"
    cfg = make_config(
        tmp_path,
        nameserver=test_tld.nameserver,
        extra={"hostname": host, "reputation": {"audit_interval": 0.5, "blocklists": []}},
    )
    test_tld.set_zone(domain, [f"@ MX 10 {host}.", "mx A 127.0.0.1"])
    srv = ServerThread(settings_for(tmp_path, cfg))
    srv.start()
    try:
        s = srv.services
        srv.call(s.accounts.add_domain(domain))
        # The first scheduled audit runs without anyone asking, and is kept.
        wait_until(lambda: srv.call(s.audits.last(domain)), 15, "the first scheduled audit")
        last = srv.call(s.audits.last(domain))
        assert {c["name"]: c["status"] for c in last["checks"]}["mx"] == "pass"
        test_tld.set_zone(domain, ["@ MX 10 mail.elsewhere.test.", "mx A 127.0.0.1"])

        def alert() -> object:
            active = srv.call(s.alerts.list("active"))
            return next((a for a in active if a.type == "audit_mx"), None)

        raised = wait_until(alert, 15, "an audit_mx alert")
        assert raised.target == f"domain:{domain}"
        assert "mx check now fails" in raised.message
        test_tld.set_zone(domain, [f"@ MX 10 {host}.", "mx A 127.0.0.1"])
        wait_until(lambda: alert() is None, 15, "the alert to resolve")
    finally:
        srv.stop()


def test_a_dns_outage_between_pass_and_fail_still_alerts(site: Site) -> None:
    s = site.srv.services

    def compare() -> dict[str, str]:
        return statuses(site.srv.call(s.audits.audit_and_compare(site.domain)))

    def mx_alerts() -> list[object]:
        return [a for a in site.srv.call(s.alerts.list("active")) if a.type == "audit_mx"]

    assert compare()["mx"] == "pass"
    site.dns.add_failing_zone(site.domain)  # SERVFAIL: the audit cannot tell
    assert compare()["mx"] == "warn"
    assert mx_alerts() == []
    site.publish(replace={f"{site.domain} MX": f"10 mail.{site.domain}."})
    assert compare()["mx"] == "fail"
    [alert] = mx_alerts()
    assert alert.severity == "critical"  # type: ignore[attr-defined]
    assert alert.details["fix"] == f"{site.domain}. IN MX 10 {site.host}."  # type: ignore[attr-defined]
    site.publish()
    assert compare()["mx"] == "pass"
    assert mx_alerts() == []
