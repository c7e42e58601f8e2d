"""The blocklist check against test DNSBL zones on the real (loopback) Knot DNS server.

Each test writes an IP blocklist ``dnsbl.<d>`` and a domain blocklist ``dbl.<d>`` laid out
as RFC 5782 describes them — reversed octets / nibbles or the domain, then the zone — and
points the audit at them through ``reputation.blocklists`` entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from dnsserver import ZoneSet, txt
from mailwarden.dns.resolver import DnsPythonResolver
from mailwarden.reputation.audit.blocklists import check_blocklists
from mailwarden.reputation.audit.cache import CachingResolver
from mailwarden.reputation.audit.dnsbl import parse_blocklists, query_name
from mailwarden.reputation.audit.model import AuditTarget, CheckResult

LISTED_IP = "192.0.2.55"
CLEAN_IP = "192.0.2.56"
REFUSED_IP = "192.0.2.77"
LISTED_IP6 = "2001:db8::55"
REASON = "Listed for spam trap hits, see https://lookup.dnsbl.example/?ip=192.0.2.55"


@dataclass
class Lists:
    zones: ZoneSet
    resolver: DnsPythonResolver

    @property
    def d(self) -> str:
        return self.zones.domain

    def entries(self, *extra: str) -> list[str]:
        return [f"ip:dnsbl.{self.d}", f"domain:dbl.{self.d}", *extra]

    async def check(
        self,
        ips: tuple[str, ...],
        domain: str = "",
        entries: list[str] | None = None,
    ) -> tuple[CheckResult, CachingResolver]:
        target = AuditTarget(
            domain=domain or f"clean.{self.d}",
            hostname=f"mx.{self.d}",
            helo_name=f"mx.{self.d}",
            sending_ips=ips,
            now=datetime.now(UTC),
            blocklists=parse_blocklists(entries or self.entries()),
        )
        dns = CachingResolver(self.resolver)
        return await check_blocklists(target, dns), dns


def _name(item: str, entry: str) -> str:
    """The absolute owner name of ``item`` in the list of config entry ``entry``."""
    (bl,) = parse_blocklists([entry])
    return query_name(item, bl) + "."


@pytest.fixture
def lists(dns_zones: ZoneSet, dns_resolver: DnsPythonResolver) -> Lists:
    d = dns_zones.domain
    ip_list, dom_list = f"ip:dnsbl.{d}", f"domain:dbl.{d}"
    dns_zones.set_zone(
        f"dnsbl.{d}",
        [
            # RFC 5782 §5: an IPv4 list lists 127.0.0.2 for testing.
            "2.0.0.127 A 127.0.0.2",
            f"2.0.0.127 TXT {txt('RFC 5782 test entry')}",
            f"{_name(LISTED_IP, ip_list)} A 127.0.0.2",
            f"{_name(LISTED_IP, ip_list)} TXT {txt(REASON)}",
            f"{_name(LISTED_IP6, ip_list)} A 127.0.0.2",
            # Spamhaus's answer to a query through a public resolver.
            f"{_name(REFUSED_IP, ip_list)} A 127.255.255.254",
            f"{_name(REFUSED_IP, ip_list)} TXT {txt('https://www.spamhaus.org/returnc/pub/')}",
        ],
    )
    dns_zones.set_zone(
        f"dbl.{d}",
        [
            f"{_name(f'spammy.{d}', dom_list)} A 127.0.1.2",
            f"{_name(f'spammy.{d}', dom_list)} TXT {txt('spam domain, see https://dbl.example/')}",
        ],
    )
    dns_zones.set_zone(d, [f"mx A {LISTED_IP}"])
    return Lists(dns_zones, dns_resolver)


async def test_the_zones_answer_as_rfc_5782_says(lists: Lists) -> None:
    listed = await lists.resolver.query(f"2.0.0.127.dnsbl.{lists.d}", "A")
    assert listed.records == ("127.0.0.2",)
    clean = await lists.resolver.query(f"56.2.0.192.dnsbl.{lists.d}", "A")
    assert clean.nxdomain


async def test_listed_ip_fails_with_the_lists_reason(lists: Lists) -> None:
    result, _ = await lists.check((CLEAN_IP, LISTED_IP))
    assert result.status == "fail"
    assert f"{LISTED_IP} is listed on dnsbl.{lists.d}" in result.detail
    assert "127.0.0.2" in result.detail and REASON in result.detail
    assert CLEAN_IP not in result.detail
    assert "request removal at https://lookup.dnsbl.example/?ip=192.0.2.55" in result.fix


async def test_clean_ip_and_domain_pass(lists: Lists) -> None:
    result, dns = await lists.check((CLEAN_IP,))
    assert result.status == "pass", result
    assert "2 list(s)" in result.detail and CLEAN_IP in result.detail
    assert dns.queries == 2  # one A lookup per list; no TXT for a clean answer


async def test_refused_code_warns_when_no_list_answers(lists: Lists) -> None:
    result, _ = await lists.check((REFUSED_IP,), entries=[f"ip:dnsbl.{lists.d}"])
    assert result.status == "warn"
    assert "127.255.255.254" in result.detail and "public/open resolver" in result.detail
    assert "8.8.8.8" in result.detail and "dns.nameservers" in result.fix


async def test_refused_code_with_another_list_answering_passes_with_a_note(lists: Lists) -> None:
    result, _ = await lists.check((REFUSED_IP,))
    assert result.status == "pass"
    assert f"could not use dnsbl.{lists.d} (127.255.255.254)" in result.detail


async def test_listed_domain_fails(lists: Lists) -> None:
    result, _ = await lists.check((CLEAN_IP,), domain=f"spammy.{lists.d}")
    assert result.status == "fail"
    assert f"spammy.{lists.d} is listed on dbl.{lists.d}" in result.detail
    assert "spam domain" in result.detail and "https://dbl.example/" in result.fix


async def test_listed_ipv6_address_fails(lists: Lists) -> None:
    result, _ = await lists.check((LISTED_IP6,))
    assert result.status == "fail" and LISTED_IP6 in result.detail


async def test_without_configured_ips_the_hostnames_address_is_checked(lists: Lists) -> None:
    result, _ = await lists.check(())
    assert result.status == "fail" and LISTED_IP in result.detail


async def test_explicit_codes_decide_what_is_listed(lists: Lists) -> None:
    entries = [f"ip:dnsbl.{lists.d}=127.0.0.3"]
    result, _ = await lists.check((LISTED_IP,), entries=entries)
    assert result.status == "warn"  # 127.0.0.2 is not a code this entry counts
    assert "does not document as a listing" in result.detail


async def test_a_failing_list_is_unusable_not_a_failure(lists: Lists) -> None:
    lists.zones.add_failing_zone(f"broken.{lists.d}")
    result, _ = await lists.check((CLEAN_IP,), entries=lists.entries(f"ip:broken.{lists.d}"))
    assert result.status == "pass"
    assert f"could not use broken.{lists.d}" in result.detail and "lookup failed" in result.detail
