"""Where to connect for a recipient domain: MX resolution (RFC 5321 §5.1, RFC 7505).

Pure policy over the Resolver seam. ``resolve_hops`` turns a domain into an ordered list
of hops (host, addresses, port) or raises RouteFailure saying whether the problem is
permanent (bounce now) or temporary (defer and retry), with its RFC 3463 status code.

Hostile DNS is bounded: at most ``MAX_MX_HOSTS`` MX hosts and ``MAX_IPS_PER_HOST``
addresses per host are kept, so a domain cannot make us fan out without limit.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from mailwarden.core.errors import DnsError
from mailwarden.delivery.transports import Transport
from mailwarden.dns.resolver import Answer, Resolver

MAX_MX_HOSTS = 10
MAX_IPS_PER_HOST = 4


@dataclass(frozen=True, slots=True)
class Hop:
    """One SMTP server to try: its name (for logs, SNI and events), addresses and port."""

    host: str
    ips: tuple[str, ...]
    port: int


class RouteFailure(Exception):
    """No hop for a domain. ``permanent`` decides bounce (True) or defer (False)."""

    def __init__(self, permanent: bool, enhanced: str, text: str) -> None:
        super().__init__(f"{enhanced} {text}")
        self.permanent = permanent
        self.enhanced = enhanced
        self.text = text


def _temporary_dns(what: str, exc: DnsError) -> RouteFailure:
    # RFC 3463 X.4.3: "Directory server failure" — a DNS lookup failed for now.
    return RouteFailure(False, "4.4.3", f"temporary DNS failure looking up {what}: {exc}")


def ip_literal(host: str) -> str | None:
    """``"[1.2.3.4]"``, ``"[IPv6:::1]"`` (RFC 5321 §4.1.3) or a bare IP → the address."""
    text = host.strip().rstrip(".")
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
        if text[:5].lower() == "ipv6:":
            text = text[5:]
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        return None


def _usable(ip: str, version: int) -> str | None:
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None  # junk in an A/AAAA answer
    if addr.version != version or addr.is_unspecified or addr.is_multicast:
        return None
    if version == 4 and addr.is_reserved:  # 240.0.0.0/4 and the broadcast address
        return None
    return addr.compressed


def _collect(answer: Answer | BaseException, version: int) -> tuple[list[str], bool]:
    """Addresses from one A/AAAA answer, and whether the lookup failed temporarily."""
    if isinstance(answer, DnsError):
        return [], True
    if isinstance(answer, BaseException):
        raise answer
    ips = [ip for rec in answer.records if (ip := _usable(rec, version)) is not None]
    return list(dict.fromkeys(ips)), False


async def host_addresses(resolver: Resolver, host: str) -> tuple[tuple[str, ...], bool]:
    """A and AAAA of ``host`` looked up concurrently: (IPv4 first, then IPv6, capped at
    MAX_IPS_PER_HOST; True if a lookup failed temporarily). NXDOMAIN/NODATA give ()."""
    literal = ip_literal(host)
    if literal is not None:
        # RFC 5321 §5.1 wants host names in MX records, but literals occur in the wild.
        return (literal,), False
    a, aaaa = await asyncio.gather(
        resolver.query(host, "A"), resolver.query(host, "AAAA"), return_exceptions=True
    )
    v4, temp4 = _collect(a, 4)
    v6, temp6 = _collect(aaaa, 6)
    return tuple((v4 + v6)[:MAX_IPS_PER_HOST]), temp4 or temp6


def _parse_mx(records: Iterable[str]) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for rec in records:
        pref, _, host = rec.strip().partition(" ")
        try:
            out.append((int(pref), host.strip().rstrip(".").lower()))
        except ValueError:
            continue  # not an MX rdata; ignore rather than fail the whole domain
    return out


def order_mx(mx: list[tuple[int, str]], rng: random.Random | None = None) -> list[str]:
    """Hosts by preference, shuffled among equal preferences (RFC 5321 §5.1), deduplicated
    (a host keeps its best preference) and capped at MAX_MX_HOSTS."""
    shuffle = (rng or random.SystemRandom()).shuffle
    best: dict[str, int] = {}
    for pref, host in mx:
        if host and (host not in best or pref < best[host]):
            best[host] = pref
    ordered: list[str] = []
    for pref in sorted(set(best.values())):
        group = [h for h, p in best.items() if p == pref]
        shuffle(group)
        ordered.extend(group)
    return ordered[:MAX_MX_HOSTS]


def _drop_self(mx: list[tuple[int, str]], self_names: Collection[str]) -> list[tuple[int, str]]:
    """RFC 5321 §5.1: if we are one of the MX hosts, only try hosts with a *lower*
    preference than our own; otherwise mail would loop back to us."""
    own = [pref for pref, host in mx if host in self_names]
    if not own:
        return mx
    kept = [(pref, host) for pref, host in mx if pref < min(own)]
    if not kept:
        # RFC 3463 X.4.6: "Routing loop detected".
        raise RouteFailure(True, "5.4.6", "mail for this domain loops back to myself")
    return kept


async def _hops_for_hosts(resolver: Resolver, hosts: list[str], port: int, what: str) -> list[Hop]:
    found = await asyncio.gather(*(host_addresses(resolver, h) for h in hosts))
    hops = [Hop(h, ips, port) for h, (ips, _) in zip(hosts, found, strict=True) if ips]
    if hops:
        return hops  # RFC 5321 §5.1: hosts without an address are skipped
    if any(temp for _, temp in found):
        raise RouteFailure(False, "4.4.3", f"temporary DNS failure resolving {what}")
    # RFC 3463 X.4.4: "Unable to route" — no usable address at all.
    raise RouteFailure(True, "5.4.4", f"no usable address for {what}")


async def resolve_hops(
    resolver: Resolver, domain: str, port: int, *, self_names: Collection[str] = ()
) -> list[Hop]:
    """The hops for ``domain`` in the order to try them.

    ``self_names`` are this server's own host names (lower case), for the RFC 5321 §5.1
    rule against sending mail back to ourselves; leave empty to skip that check.
    """
    domain = domain.strip().rstrip(".").lower()
    literal = ip_literal(domain) if domain.startswith("[") else None
    if literal is not None:
        return [Hop(domain, (literal,), port)]  # RFC 5321 §4.1.3: user@[address]
    try:
        answer = await resolver.query(domain, "MX")
    except DnsError as exc:
        raise _temporary_dns(f"MX of {domain}", exc) from exc
    if answer.nxdomain:
        # RFC 3463 X.1.2: "Bad destination system address" — the domain does not exist.
        raise RouteFailure(True, "5.1.2", f"domain {domain} does not exist")
    mx = _parse_mx(answer.records)
    if not mx:
        # RFC 5321 §5.1: no MX records → the domain itself is the implicit MX (pref 0).
        return await _hops_for_hosts(resolver, [domain], port, f"{domain} (no MX records)")
    if all(host == "" for _, host in mx):
        # RFC 7505 §3: an MX whose exchange is "." (the null MX) says the domain accepts
        # no mail. §4.2: bounce at once, no address lookups, with the code RFC 7505
        # registers in the RFC 3463 registry: "5.1.10 Recipient address has null MX".
        raise RouteFailure(True, "5.1.10", f"domain {domain} accepts no mail (null MX)")
    # A "." among other MX records is not a null MX (RFC 7505 §3 forbids mixing them);
    # _parse_mx gives it host "" and order_mx skips it, as Postfix does.
    hosts = order_mx(_drop_self(mx, self_names))
    return await _hops_for_hosts(resolver, hosts, port, f"the MX hosts of {domain}")


async def resolve_transport(resolver: Resolver, t: Transport) -> list[Hop]:
    """The transport host's A/AAAA via the Resolver (no MX lookup: a transport names
    the host itself, like Postfix's ``relayhost = [host]``).

    Every failure is temporary (4.4.3 / 4.4.4): a broken relay host is a local
    configuration problem, so mail is deferred rather than bounced.
    """
    literal = ip_literal(t.host)
    if literal is not None:
        return [Hop(t.host, (literal,), t.port)]
    ips, temp = await host_addresses(resolver, t.host)
    if ips:
        return [Hop(t.host, ips, t.port)]
    if temp:
        raise RouteFailure(False, "4.4.3", f"temporary DNS failure resolving {t.host}")
    # RFC 3463 X.4.4 "Unable to route", kept temporary (see above).
    raise RouteFailure(False, "4.4.4", f"transport host {t.host} has no address")
