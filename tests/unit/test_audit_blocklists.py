"""The blocklist check's pure parts (config, RFC 5782 names, reading answers) and the check
itself against an in-memory resolver."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from mailwarden.dns.resolver import StaticResolver
from mailwarden.reputation.audit.blocklists import check_blocklists
from mailwarden.reputation.audit.cache import CachingResolver
from mailwarden.reputation.audit.dnsbl import (
    BARRACUDA,
    DBL,
    DEFAULT_BLOCKLISTS,
    SPAMCOP,
    UCEPROTECT,
    ZEN,
    Blocklist,
    interpret,
    parse_blocklists,
    query_name,
)
from mailwarden.reputation.audit.model import AuditTarget, CheckResult

IP = "192.0.2.55"
DOMAIN = "example.com"
CUSTOM = Blocklist("bl.example.test", "bl.example.test", "ip")


def target(**kw: Any) -> AuditTarget:
    args: dict[str, Any] = {
        "domain": DOMAIN,
        "hostname": f"mx.{DOMAIN}",
        "helo_name": f"mx.{DOMAIN}",
        "sending_ips": (IP,),
        "now": datetime(2025, 1, 1, tzinfo=UTC),
    }
    return AuditTarget(**(args | kw))


async def run(
    records: dict[tuple[str, str], list[str]] | None = None,
    failing: set[tuple[str, str]] | None = None,
    **kw: Any,
) -> tuple[CheckResult, StaticResolver]:
    static = StaticResolver(records or {}, failing or set())
    return await check_blocklists(target(**kw), CachingResolver(static)), static


# ---------------------------------------------------------------------- parse_blocklists


def test_empty_config_means_the_defaults() -> None:
    assert parse_blocklists([]) == ()
    assert [bl.zone for bl in DEFAULT_BLOCKLISTS] == [
        "zen.spamhaus.org",
        "dbl.spamhaus.org",
        "b.barracudacentral.org",
        "bl.spamcop.net",
    ]


def test_known_zones_keep_their_rules() -> None:
    zen, dbl, uce = parse_blocklists(
        ["zen.spamhaus.org", "dbl.spamhaus.org", "ip:DNSBL-1.uceprotect.net."]
    )
    assert zen == ZEN and dbl == DBL and uce == UCEPROTECT
    assert dbl.kind == "domain"  # known without "domain:"
    assert "127.0.0.10" in zen.listed and "127.0.0.10" in zen.policy


def test_unknown_zone_is_an_ip_list_taking_any_loopback_code() -> None:
    (bl,) = parse_blocklists(["  bl.example.test  "])
    assert bl == Blocklist("bl.example.test", "bl.example.test", "ip")


def test_kinds_and_explicit_codes() -> None:
    ip, dom = parse_blocklists(
        ["ip:bl.example.test=127.0.0.2, 127.0.0.3", "domain:dbl.example.test"]
    )
    assert (ip.kind, ip.zone, ip.listed) == ("ip", "bl.example.test", ("127.0.0.2", "127.0.0.3"))
    assert (dom.kind, dom.zone, dom.listed) == ("domain", "dbl.example.test", ())


def test_explicit_codes_override_a_known_list_but_keep_its_meanings() -> None:
    (zen,) = parse_blocklists(["ip:zen.spamhaus.org=127.0.0.4"])
    assert zen.listed == ("127.0.0.4",)
    assert zen.name == "Spamhaus ZEN" and "XBL" in zen.meaning("127.0.0.4")


def test_spamhaus_dqs_key_zones_answer_like_the_public_ones() -> None:
    zen, dbl = parse_blocklists(["abc123.zen.dq.spamhaus.net", "domain:abc123.dbl.dq.spamhaus.net"])
    assert (zen.zone, zen.listed, zen.kind) == ("abc123.zen.dq.spamhaus.net", ZEN.listed, "ip")
    assert (dbl.refused, dbl.kind) == (DBL.refused, "domain")
    assert "DQS" in zen.name


def test_duplicates_are_dropped() -> None:
    assert parse_blocklists(["zen.spamhaus.org", "ip:ZEN.spamhaus.org"]) == (ZEN,)


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("", "empty zone"),
        ("ip:", "empty zone"),
        ("ip: =127.0.0.2", "empty zone"),
        ("url:bl.example.test", "not 'ip' or 'domain'"),
        ("bl..example.test", "not a DNS zone name"),
        ("bl.exa mple.test", "not a DNS zone name"),
        ("ip:bl.example.test=127.0.0.300", "not an IPv4 return code"),
        ("ip:bl.example.test=", "not an IPv4 return code"),
        ("ip:bl.example.test=10.0.0.2", "not in 127.0.0.0/8"),
        ("ip:dbl.spamhaus.org", "lists domains, not ips"),
        ("domain:zen.spamhaus.org", "lists ips, not domains"),
    ],
)
def test_junk_is_refused_naming_the_entry(entry: str, problem: str) -> None:
    with pytest.raises(ValueError, match="blocklist entry") as err:
        parse_blocklists(["zen.spamhaus.org", entry])
    assert repr(entry) in str(err.value) and problem in str(err.value)


# ---------------------------------------------------------------------- query_name


def test_ipv4_name_is_the_reversed_octets() -> None:
    # RFC 5782 §2.1's example: 192.0.2.99 → 99.2.0.192.<zone>
    assert query_name("192.0.2.99", CUSTOM) == "99.2.0.192.bl.example.test"
    assert query_name("::ffff:192.0.2.99", CUSTOM) == "99.2.0.192.bl.example.test"


def test_ipv6_name_is_32_reversed_nibbles() -> None:
    # RFC 5782 §2.4's example address
    name = query_name("2001:db8:1:2:3:4:567:89ab", ZEN)
    assert name == (
        "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.zen.spamhaus.org"
    )
    assert len(name.removesuffix(".zen.spamhaus.org").split(".")) == 32


def test_domain_name_is_the_domain_then_the_zone() -> None:
    assert query_name("Example.COM.", DBL) == "example.com.dbl.spamhaus.org"
    with pytest.raises(ValueError, match="not a domain"):
        query_name(IP, DBL)
    with pytest.raises(ValueError):
        query_name("example.com", ZEN)


# ---------------------------------------------------------------------- interpret


def test_nxdomain_is_not_listed() -> None:
    listing = interpret(ZEN, ())
    assert listing.state == "clean" and listing.usable


def test_listed_with_code_meaning_and_reason() -> None:
    listing = interpret(ZEN, ("127.0.0.4",), "https://check.spamhaus.org/query/ip/192.0.2.55")
    assert listing.state == "listed"
    assert listing.codes == ("127.0.0.4",)
    assert "XBL" in listing.meaning and "127.0.0.4" in listing.meaning
    assert listing.reason == "https://check.spamhaus.org/query/ip/192.0.2.55"


def test_pbl_is_a_listing() -> None:
    listing = interpret(ZEN, ("127.0.0.11", "127.0.0.10"))
    assert listing.state == "listed" and listing.codes == ("127.0.0.11", "127.0.0.10")
    assert "should not send mail directly (policy block list)" in listing.meaning


def test_dbl_abused_legitimate_domain_is_a_listing() -> None:
    assert interpret(DBL, ("127.0.1.102",)).state == "listed"
    assert interpret(DBL, ("127.0.1.2",)).state == "listed"


@pytest.mark.parametrize(
    ("bl", "code", "says"),
    [
        (ZEN, "127.255.255.254", "public/open resolver"),
        (ZEN, "127.255.255.255", "excessive number of queries"),
        (ZEN, "127.255.255.252", "typo"),
        (ZEN, "127.255.255.200", "error range"),
        (DBL, "127.255.255.254", "public/open resolver"),
        (DBL, "127.0.1.255", "lists domains only"),
        (CUSTOM, "127.255.255.254", "public/open resolver"),
        (CUSTOM, "127.0.0.1", "RFC 5782 §5"),
        (SPAMCOP, "127.0.0.1", "RFC 5782 §5"),
    ],
)
def test_refusals_are_not_listings(bl: Blocklist, code: str, says: str) -> None:
    listing = interpret(bl, (code,), "see https://www.spamhaus.org/returnc/pub/")
    assert listing.state == "refused" and not listing.usable
    assert listing.codes == (code,) and says in listing.meaning


def test_a_real_listing_wins_over_a_refusal_in_the_same_answer() -> None:
    assert interpret(ZEN, ("127.255.255.254", "127.0.0.2")).codes == ("127.0.0.2",)


@pytest.mark.parametrize("bl", [ZEN, CUSTOM, DBL])
def test_an_answer_outside_127_is_a_rewriting_resolver(bl: Blocklist) -> None:
    listing = interpret(bl, ("203.0.113.7",))
    assert listing.state == "unexpected" and not listing.usable
    assert "not a 127.0.0.0/8 return code" in listing.meaning


def test_codes_a_list_does_not_document_are_not_listings() -> None:
    assert interpret(BARRACUDA, ("127.0.0.3",)).state == "unexpected"
    assert interpret(ZEN, ("127.0.0.200",)).state == "unexpected"
    assert interpret(CUSTOM, ("127.0.0.200",)).state == "listed"  # any 127/8 code


# ---------------------------------------------------------------------- check_blocklists


async def test_clean_on_every_default_list() -> None:
    result, static = await run()
    assert result.status == "pass", result
    assert "4 list(s)" in result.detail and IP in result.detail
    assert set(static.queries) == {
        ("55.2.0.192.zen.spamhaus.org", "A"),
        ("55.2.0.192.b.barracudacentral.org", "A"),
        ("55.2.0.192.bl.spamcop.net", "A"),
        (f"{DOMAIN}.dbl.spamhaus.org", "A"),
    }


async def test_listed_ip_fails_with_the_lists_reason() -> None:
    name = "55.2.0.192.bl.spamcop.net"
    reason = "Blocked - see https://www.spamcop.net/bl.shtml?192.0.2.55"
    result, _ = await run({(name, "A"): ["127.0.0.2"], (name, "TXT"): [reason]})
    assert result.status == "fail"
    assert IP in result.detail and "SpamCop" in result.detail and "127.0.0.2" in result.detail
    assert reason in result.detail
    assert "find the cause (open relay, compromised account, a sending spike)" in result.fix
    assert "https://www.spamcop.net/bl.shtml?192.0.2.55" in result.fix


async def test_listing_without_txt_points_at_the_lists_site() -> None:
    name = "55.2.0.192.zen.spamhaus.org"
    result, _ = await run({(name, "A"): ["127.0.0.2"]}, failing={(name, "TXT")})
    assert result.status == "fail" and "SBL" in result.detail
    assert "request removal at https://check.spamhaus.org/" in result.fix


async def test_pbl_listing_fails_with_the_relay_advice() -> None:
    result, _ = await run({("55.2.0.192.zen.spamhaus.org", "A"): ["127.0.0.10"]})
    assert result.status == "fail"
    assert (
        "the IP is in a range its owner says should not send mail directly (policy block list)"
        in result.detail
    )
    assert (
        "send through your provider's relay or ask the owner to remove it from the PBL"
        in result.fix
    )
    assert "find the cause" not in result.fix


async def test_listed_domain_fails() -> None:
    result, _ = await run({(f"{DOMAIN}.dbl.spamhaus.org", "A"): ["127.0.1.2"]})
    assert result.status == "fail"
    assert DOMAIN in result.detail and "Spamhaus DBL" in result.detail
    assert "low-reputation" in result.detail


async def test_all_refused_warns_about_public_resolvers() -> None:
    records = {
        ("55.2.0.192.zen.spamhaus.org", "A"): ["127.255.255.254"],
        (f"{DOMAIN}.dbl.spamhaus.org", "A"): ["127.255.255.254"],
    }
    result, _ = await run(records, blocklists=(ZEN, DBL))
    assert result.status == "warn"
    assert "127.255.255.254" in result.detail and "8.8.8.8" in result.detail
    assert "dns.nameservers" in result.fix and "zen.dq.spamhaus.net" in result.fix


async def test_a_rewriting_resolver_warns() -> None:
    records = {
        ("55.2.0.192.zen.spamhaus.org", "A"): ["198.51.100.1"],
        (f"{DOMAIN}.dbl.spamhaus.org", "A"): ["198.51.100.1"],
    }
    result, _ = await run(records, blocklists=(ZEN, DBL))
    assert result.status == "warn" and "rewrites" in result.detail
    assert "local recursive resolver" in result.fix


async def test_a_failing_list_is_unusable_not_a_failure() -> None:
    result, _ = await run(failing={("55.2.0.192.bl.spamcop.net", "A")})
    assert result.status == "pass"
    assert "3 list(s)" in result.detail
    assert "could not use SpamCop" in result.detail and "lookup failed" in result.detail


async def test_every_list_failing_warns() -> None:
    failing = {("55.2.0.192.bl.example.test", "A")}
    result, _ = await run(failing=failing, blocklists=(CUSTOM,))
    assert result.status == "warn" and "lookup failed" in result.detail
    assert "dns.nameservers" in result.fix


async def test_ipv6_is_asked_only_of_lists_that_take_it() -> None:
    result, static = await run(sending_ips=("2001:db8::55",))
    assert result.status == "pass"
    assert {name for name, _ in static.queries} == {
        query_name("2001:db8::55", ZEN),
        f"{DOMAIN}.dbl.spamhaus.org",
    }


async def test_without_configured_ips_the_hostnames_addresses_are_checked() -> None:
    records = {
        (f"mx.{DOMAIN}", "A"): [IP],
        ("55.2.0.192.bl.example.test", "A"): ["127.0.0.2"],
    }
    result, _ = await run(records, sending_ips=(), blocklists=(CUSTOM,))
    assert result.status == "fail" and IP in result.detail


async def test_nothing_to_check_is_a_skip() -> None:
    result, _ = await run(sending_ips=(), blocklists=(CUSTOM,))
    assert result.status == "skip"
