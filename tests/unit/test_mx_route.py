"""Route resolution policy (RFC 5321 §5.1, RFC 7505) over an in-memory resolver."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

import pytest

from mailwarden.delivery.mx import (
    MAX_IPS_PER_HOST,
    MAX_MX_HOSTS,
    Hop,
    RouteFailure,
    order_mx,
    resolve_hops,
    resolve_transport,
)
from mailwarden.delivery.transports import Transport
from mailwarden.dns.resolver import Answer, StaticResolver

D = "dest.test"


def static(
    records: dict[tuple[str, str], list[str]], failing: frozenset[tuple[str, str]] = frozenset()
) -> StaticResolver:
    return StaticResolver(records=records, failing=set(failing))


async def route_failure(resolver: StaticResolver, domain: str = D) -> RouteFailure:
    with pytest.raises(RouteFailure) as info:
        await resolve_hops(resolver, domain, 25)
    return info.value


async def test_mx_by_preference_with_ipv4_first() -> None:
    r = static(
        {
            (D, "MX"): ["20 mx2.dest.test.", "10 mx1.dest.test."],
            ("mx1.dest.test", "A"): ["192.0.2.1"],
            ("mx1.dest.test", "AAAA"): ["2001:db8::1"],
            ("mx2.dest.test", "AAAA"): ["2001:db8::2"],
        }
    )
    assert await resolve_hops(r, D, 25) == [
        Hop("mx1.dest.test", ("192.0.2.1", "2001:db8::1"), 25),
        Hop("mx2.dest.test", ("2001:db8::2",), 25),
    ]


async def test_equal_preferences_are_shuffled() -> None:
    hosts = [f"mx{i}.dest.test" for i in range(3)]
    records = {(D, "MX"): ["5 first.dest.test."] + [f"10 {h}." for h in hosts]}
    records |= {(h, "A"): ["192.0.2.9"] for h in [*hosts, "first.dest.test"]}
    r = static(records)
    seen = set()
    for _ in range(60):
        hops = await resolve_hops(r, D, 25)
        assert hops[0].host == "first.dest.test"  # the lower preference always first
        seen.add(tuple(h.host for h in hops[1:]))
    assert len(seen) > 1 and all(sorted(s) == hosts for s in seen)


def test_order_mx_dedupes_and_keeps_the_best_preference() -> None:
    mx = [(20, "b"), (10, "a"), (30, "a"), (10, "c")]
    assert order_mx(mx, random.Random(1))[-1] == "b"
    assert sorted(order_mx(mx, random.Random(1))) == ["a", "b", "c"]


async def test_no_mx_means_the_domain_itself() -> None:
    r = static({(D, "A"): ["192.0.2.5"], (D, "AAAA"): ["2001:db8::5"]})
    assert await resolve_hops(r, D + ".", 2525) == [Hop(D, ("192.0.2.5", "2001:db8::5"), 2525)]


async def test_no_mx_and_no_address_is_permanent() -> None:
    r = static({(D, "TXT"): ["v=spf1 -all"]})
    failure = await route_failure(r)
    assert (failure.permanent, failure.enhanced) == (True, "5.4.4")


async def test_nxdomain_is_permanent_5_1_2() -> None:
    failure = await route_failure(static({}), "Nowhere.TEST")
    assert (failure.permanent, failure.enhanced) == (True, "5.1.2")
    assert "nowhere.test" in failure.text


async def test_null_mx_bounces_without_address_lookups() -> None:
    r = static({(D, "MX"): ["0 ."], (D, "A"): ["192.0.2.1"]})
    failure = await route_failure(r)
    assert (failure.permanent, failure.enhanced) == (True, "5.1.10")
    assert r.queries == [(D, "MX")]


async def test_dot_among_real_mx_records_is_skipped() -> None:
    r = static({(D, "MX"): ["0 .", "10 mx.dest.test."], ("mx.dest.test", "A"): ["192.0.2.1"]})
    assert await resolve_hops(r, D, 25) == [Hop("mx.dest.test", ("192.0.2.1",), 25)]


async def test_temporary_failure_on_the_mx_query() -> None:
    failure = await route_failure(static({(D, "A"): ["192.0.2.1"]}, frozenset({(D, "MX")})))
    assert (failure.permanent, failure.enhanced) == (False, "4.4.3")


async def test_mx_host_without_address_is_skipped() -> None:
    r = static(
        {
            (D, "MX"): ["10 gone.dest.test.", "20 nodata.dest.test.", "30 ok.dest.test."],
            ("nodata.dest.test", "TXT"): ["x"],
            ("ok.dest.test", "A"): ["192.0.2.3"],
        }
    )
    assert [h.host for h in await resolve_hops(r, D, 25)] == ["ok.dest.test"]


async def test_mx_host_with_a_failing_lookup_keeps_what_resolved() -> None:
    r = static(
        {(D, "MX"): ["10 mx.dest.test."], ("mx.dest.test", "A"): ["192.0.2.3"]},
        frozenset({("mx.dest.test", "AAAA")}),
    )
    assert await resolve_hops(r, D, 25) == [Hop("mx.dest.test", ("192.0.2.3",), 25)]


async def test_no_mx_host_resolves_permanent_or_temporary() -> None:
    records = {(D, "MX"): ["10 a.dest.test.", "20 b.dest.test."], ("a.dest.test", "TXT"): ["x"]}
    failure = await route_failure(static(records))
    assert (failure.permanent, failure.enhanced) == (True, "5.4.4")
    failure = await route_failure(static(records, frozenset({("b.dest.test", "A")})))
    assert (failure.permanent, failure.enhanced) == (False, "4.4.3")


async def test_hostile_dns_is_capped() -> None:
    records = {(D, "MX"): [f"{i} mx{i}.dest.test." for i in range(40)]}
    for i in range(40):
        records[(f"mx{i}.dest.test", "A")] = [f"192.0.2.{n}" for n in range(1, 30)]
        records[(f"mx{i}.dest.test", "AAAA")] = ["2001:db8::1"]
    r = static(records)
    hops = await resolve_hops(r, D, 25)
    assert [h.host for h in hops] == [f"mx{i}.dest.test" for i in range(MAX_MX_HOSTS)]
    assert all(len(h.ips) == MAX_IPS_PER_HOST for h in hops)
    assert len(r.queries) == 1 + 2 * MAX_MX_HOSTS


async def test_junk_addresses_are_ignored() -> None:
    r = static(
        {
            (D, "MX"): ["10 mx.dest.test.", "junk"],
            ("mx.dest.test", "A"): [
                "not-an-ip",
                "0.0.0.0",
                "224.0.0.1",
                "2001:db8::1",
                "192.0.2.1",
            ],
            ("mx.dest.test", "AAAA"): ["::", "ff02::1", "192.0.2.2", "::1"],
        }
    )
    assert await resolve_hops(r, D, 25) == [Hop("mx.dest.test", ("192.0.2.1", "::1"), 25)]


@pytest.mark.parametrize(
    ("exchange", "ip"),
    [
        ("[192.0.2.7]", "192.0.2.7"),
        ("192.0.2.7.", "192.0.2.7"),
        ("[IPv6:2001:db8::7]", "2001:db8::7"),
    ],
)
async def test_ip_literal_mx_hosts_are_used_as_addresses(exchange: str, ip: str) -> None:
    r = static({(D, "MX"): [f"10 {exchange}"]})
    [hop] = await resolve_hops(r, D, 25)
    assert hop.ips == (ip,)
    assert r.queries == [(D, "MX")]


async def test_address_literal_domain_needs_no_dns() -> None:
    r = static({})
    assert await resolve_hops(r, "[192.0.2.8]", 25) == [Hop("[192.0.2.8]", ("192.0.2.8",), 25)]
    assert r.queries == []


async def test_mail_must_not_loop_back_to_us() -> None:
    records = {
        (D, "MX"): ["10 a.dest.test.", "20 us.mailwarden.test.", "30 b.dest.test."],
        ("a.dest.test", "A"): ["192.0.2.1"],
        ("b.dest.test", "A"): ["192.0.2.2"],
        ("us.mailwarden.test", "A"): ["192.0.2.3"],
    }
    hops = await resolve_hops(static(records), D, 25, self_names={"us.mailwarden.test"})
    assert [h.host for h in hops] == ["a.dest.test"]
    records[(D, "MX")] = ["10 us.mailwarden.test.", "20 b.dest.test."]
    with pytest.raises(RouteFailure) as info:
        await resolve_hops(static(records), D, 25, self_names={"us.mailwarden.test"})
    assert (info.value.permanent, info.value.enhanced) == (True, "5.4.6")


@dataclass
class CountingResolver:
    """Delays every lookup and records how many were in flight at once."""

    inner: StaticResolver
    in_flight: int = 0
    peak: int = 0
    order: list[tuple[str, str]] = field(default_factory=list)

    async def query(self, name: str, rdtype: str) -> Answer:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        return await self.inner.query(name, rdtype)


async def test_address_lookups_run_concurrently() -> None:
    records = {(D, "MX"): [f"10 mx{i}.dest.test." for i in range(3)]}
    records |= {(f"mx{i}.dest.test", "A"): ["192.0.2.1"] for i in range(3)}
    r = CountingResolver(static(records))
    assert len(await resolve_hops(r, D, 25)) == 3
    assert r.peak == 6  # A and AAAA of all three hosts at once


async def test_transport_hops() -> None:
    assert await resolve_transport(static({}), Transport("192.0.2.9", 587, "starttls")) == [
        Hop("192.0.2.9", ("192.0.2.9",), 587)
    ]
    r = static({("relay.test", "A"): ["192.0.2.4"], ("relay.test", "AAAA"): ["2001:db8::4"]})
    assert await resolve_transport(r, Transport("relay.test", 465, "implicit")) == [
        Hop("relay.test", ("192.0.2.4", "2001:db8::4"), 465)
    ]
    assert r.queries and all(t in ("A", "AAAA") for _, t in r.queries)  # no MX lookup


@pytest.mark.parametrize(
    ("failing", "enhanced"), [(frozenset(), "4.4.4"), (frozenset({("relay.test", "A")}), "4.4.3")]
)
async def test_transport_failures_are_temporary(
    failing: frozenset[tuple[str, str]], enhanced: str
) -> None:
    with pytest.raises(RouteFailure) as info:
        await resolve_transport(static({}, failing), Transport("relay.test", 25, "opportunistic"))
    assert (info.value.permanent, info.value.enhanced) == (False, enhanced)
