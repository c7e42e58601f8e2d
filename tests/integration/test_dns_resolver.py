"""DnsPythonResolver against a real Knot DNS server on loopback (see tests/dnsserver.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import dns.rdtypes.ANY.TXT
import pytest

from dnsserver import KnotError, KnotServer, ZoneSet, txt
from mailwarden.core.errors import DnsError
from mailwarden.dns.resolver import DnsPythonResolver, mx_hosts, reverse_name

SPF = "v=spf1 ip4:127.0.0.1 -all"
# A DKIM-style record well over one 255-byte character-string.
LONG = "v=DKIM1; k=rsa; p=" + "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" * 12


async def test_txt(dns_zones: ZoneSet, dns_resolver: DnsPythonResolver) -> None:
    d = dns_zones.domain
    dns_zones.set_zone(d, [f'@ TXT "{SPF}"', '@ TXT "other=1"', '_dmarc TXT "v=DMARC1; p=none"'])

    ans = await dns_resolver.query(d, "TXT")
    assert sorted(ans.records) == sorted([SPF, "other=1"])
    assert not ans.nxdomain
    dmarc = await dns_resolver.query(f"_dmarc.{d}", "TXT")
    assert dmarc.records == ("v=DMARC1; p=none",)


@pytest.mark.parametrize("style", ["one-long-quoted-string", "txt-helper"])
async def test_long_txt_is_split_and_joined_back(
    dns_server: KnotServer, dns_zones: ZoneSet, dns_resolver: DnsPythonResolver, style: str
) -> None:
    assert len(LONG) > 2 * 255
    d = dns_zones.domain
    rdata = f'"{LONG}"' if style == "one-long-quoted-string" else txt(LONG)
    dns_zones.set_zone(d, [f"sel._domainkey TXT {rdata}"])

    # On the wire it is several <=255-byte strings...
    wire = dns_server.query(f"sel._domainkey.{d}", "TXT", tcp=True)
    (rd,) = wire.answer[0]
    assert isinstance(rd, dns.rdtypes.ANY.TXT.TXT)
    assert [len(s) for s in rd.strings] == [255, 255, len(LONG) - 510]
    # ...and the resolver joins them back (RFC 7208 §3.3).
    ans = await dns_resolver.query(f"sel._domainkey.{d}", "TXT")
    assert ans.records == (LONG,)


async def test_txt_escapes_and_utf8_round_trip(
    dns_zones: ZoneSet, dns_resolver: DnsPythonResolver
) -> None:
    value = 'quote " backslash \\ semicolon ; ünïcödé ' * 10
    dns_zones.set_zone(dns_zones.domain, [f"@ TXT {txt(value)}"])
    ans = await dns_resolver.query(dns_zones.domain, "TXT")
    assert ans.records == (value,)


async def test_mx_ordering(dns_zones: ZoneSet, dns_resolver: DnsPythonResolver) -> None:
    d = dns_zones.domain
    dns_zones.set_zone(
        d,
        [
            "@ MX 20 backup",
            f"@ MX 10 MX-B.{d}.",  # absolute, mixed case
            "@ MX 10 mx-a",
            "@ MX 5 mx.other.test.",
        ],
    )
    ans = await dns_resolver.query(d, "MX")
    assert len(ans.records) == 4
    assert mx_hosts(ans) == [
        (5, "mx.other.test"),
        (10, f"mx-a.{d}"),
        (10, f"mx-b.{d}"),
        (20, f"backup.{d}"),
    ]


async def test_a_and_aaaa(dns_zones: ZoneSet, dns_resolver: DnsPythonResolver) -> None:
    d = dns_zones.domain
    dns_zones.set_zone(
        d, ["mx A 127.0.0.1", "mx A 127.0.0.2", "mx AAAA ::1", f"abs.{d}. 60 IN A 127.0.0.3"]
    )
    a = await dns_resolver.query(f"mx.{d}", "A")
    assert sorted(a.records) == ["127.0.0.1", "127.0.0.2"]
    aaaa = await dns_resolver.query(f"mx.{d}", "AAAA")
    assert aaaa.records == ("::1",)
    absolute = await dns_resolver.query(f"ABS.{d.upper()}", "A")
    assert absolute.records == ("127.0.0.3",)


@pytest.mark.parametrize("ip", ["127.0.0.42", "::1"])
async def test_ptr(dns_zones: ZoneSet, dns_resolver: DnsPythonResolver, ip: str) -> None:
    host = f"mail.{dns_zones.domain}"
    dns_zones.add_ptr(ip, host)
    ans = await dns_resolver.query(reverse_name(ip), "PTR")
    assert ans.records == (f"{host}.",)


async def test_ptr_via_set_zone(dns_zones: ZoneSet, dns_resolver: DnsPythonResolver) -> None:
    host = f"mail.{dns_zones.domain}."
    dns_zones.set_zone("43.0.0.127.in-addr.arpa", [f"@ PTR {host}", "@ PTR second.test."])
    ans = await dns_resolver.query(reverse_name("127.0.0.43"), "PTR")
    assert sorted(ans.records) == sorted([host, "second.test."])


async def test_nxdomain_vs_nodata(dns_zones: ZoneSet, dns_resolver: DnsPythonResolver) -> None:
    d = dns_zones.domain
    dns_zones.set_zone(d, ["www A 127.0.0.1", "deep.empty A 127.0.0.1"])

    nx = await dns_resolver.query(f"nothere.{d}", "A")
    assert nx.nxdomain
    assert nx.records == ()

    nodata = await dns_resolver.query(f"www.{d}", "AAAA")
    assert not nodata.nxdomain
    assert nodata.records == ()

    # An empty non-terminal exists, so it is NODATA too.
    ent = await dns_resolver.query(f"empty.{d}", "A")
    assert not ent.nxdomain
    assert ent.records == ()


async def test_change_visible_after_set_zone(
    dns_zones: ZoneSet, dns_resolver: DnsPythonResolver
) -> None:
    d = dns_zones.domain
    first = dns_zones.set_zone(d, ['@ TXT "v=spf1 -all"'])
    assert (await dns_resolver.query(d, "TXT")).records == ("v=spf1 -all",)

    second = dns_zones.set_zone(d, [f'@ TXT "{SPF}"', "new A 127.0.0.7"])
    assert second > first
    assert (await dns_resolver.query(d, "TXT")).records == (SPF,)
    assert (await dns_resolver.query(f"new.{d}", "A")).records == ("127.0.0.7",)

    dns_zones.set_zone(d, [])
    assert (await dns_resolver.query(d, "TXT")).records == ()
    assert (await dns_resolver.query(f"new.{d}", "A")).nxdomain


async def test_large_answer_falls_back_to_tcp(
    dns_zones: ZoneSet, dns_resolver: DnsPythonResolver
) -> None:
    d = dns_zones.domain
    values = [f"{i:02d}-" + "x" * 200 for i in range(12)]  # ~2.5 kB: truncated over UDP
    dns_zones.set_zone(d, [f"big TXT {txt(v)}" for v in values])
    ans = await dns_resolver.query(f"big.{d}", "TXT")
    assert sorted(ans.records) == values


async def test_servfail_is_dns_error(dns_zones: ZoneSet, dns_resolver: DnsPythonResolver) -> None:
    broken = f"broken.{dns_zones.domain}"
    dns_zones.add_failing_zone(broken)
    with pytest.raises(DnsError, match="SERVFAIL"):
        await dns_resolver.query(f"x.{broken}", "TXT")


async def test_name_under_no_zone_is_dns_error_not_nxdomain(
    dns_zones: ZoneSet, dns_resolver: DnsPythonResolver
) -> None:
    # knot answers REFUSED for names outside every zone it serves. (Other tests serve the
    # "test." zone itself, so use a TLD nobody serves.)
    with pytest.raises(DnsError):
        await dns_resolver.query(f"nozone.{dns_zones.domain}.unserved", "A")


async def test_removed_zone_is_no_longer_served(
    dns_zones: ZoneSet, dns_resolver: DnsPythonResolver
) -> None:
    d = f"{dns_zones.domain}.unserved"  # no parent zone of ours covers it
    dns_zones.set_zone(d, ["www A 127.0.0.1"])
    assert (await dns_resolver.query(f"www.{d}", "A")).records == ("127.0.0.1",)
    dns_zones.remove_zone(d)
    with pytest.raises(DnsError):
        await dns_resolver.query(f"www.{d}", "A")


@pytest.fixture
def silent_udp_port() -> Iterator[int]:
    """A loopback UDP port that is bound (so nobody else gets it) but never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


@pytest.fixture
def closed_udp_port() -> int:
    """A loopback UDP port nothing listens on (queries get ICMP port unreachable)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_timeout_is_dns_error(silent_udp_port: int) -> None:
    r = DnsPythonResolver(nameservers=[f"127.0.0.1:{silent_udp_port}"], timeout=0.5, cache=False)
    with pytest.raises(DnsError, match="timeout"):
        await r.query("example.test", "A")


async def test_connection_refused_is_dns_error(closed_udp_port: int) -> None:
    r = DnsPythonResolver(nameservers=[f"127.0.0.1:{closed_udp_port}"], timeout=0.5, cache=False)
    with pytest.raises(DnsError):
        await r.query("example.test", "A")


# ------------------------------------------------------------- the fixture itself


def test_txt_helper_chunks() -> None:
    assert txt("") == '""'
    assert txt("v=spf1 -all") == '"v=spf1 -all"'
    assert txt('a"b\\c') == '"a\\"b\\\\c"'
    assert txt("é") == '"\\195\\169"'
    assert txt("x" * 256) == f'"{"x" * 255}" "x"'


def test_knot_rejects_bad_zone_and_keeps_serving_old_data(
    dns_server: KnotServer, dns_zones: ZoneSet
) -> None:
    d = f"{dns_zones.domain}.unserved"  # no parent zone of ours covers it
    dns_zones.set_zone(d, ["www A 127.0.0.1"])
    with pytest.raises(KnotError, match="rejected"):
        dns_zones.set_zone(d, ["www A not-an-address"])
    assert dns_server.query(f"www.{d}", "A").answer[0][0].to_text() == "127.0.0.1"
