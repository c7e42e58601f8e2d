"""The Resolver seam: async lookups returning text records, with NXDOMAIN kept apart.

Temporary failures (SERVFAIL, timeouts, no nameserver answered) raise DnsError so that
callers can answer 4xx / temperror instead of treating them as "no record".
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver
import dns.reversename

from mailwarden.core.errors import DnsError


@dataclass(frozen=True, slots=True)
class Answer:
    """Records of one type at one name, as text.

    TXT records are the concatenation of their character-strings (RFC 7208 §3.3).
    MX records are "PREFERENCE HOST." as in zone files. ``nxdomain`` is True when the
    name does not exist at all; an empty ``records`` with ``nxdomain`` False is NODATA.
    """

    name: str
    rdtype: str
    records: tuple[str, ...] = ()
    nxdomain: bool = False


class Resolver(Protocol):
    async def query(self, name: str, rdtype: str) -> Answer: ...


def _txt_text(rdata: object) -> str:
    strings: Iterable[bytes] = getattr(rdata, "strings", ())
    return b"".join(strings).decode("utf-8", "replace")


def parse_nameserver(entry: str) -> tuple[str, int]:
    """``"127.0.0.1:5353"``, ``"[::1]:53"``, ``"::1"`` or ``"10.0.0.1"`` → (address, port)."""
    entry = entry.strip()
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 53
    elif entry.count(":") == 1:
        host, _, p = entry.partition(":")
        port = int(p)
    else:
        host, port = entry, 53
    ipaddress.ip_address(host)  # raises ValueError on junk
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    return host, port


class DnsPythonResolver:
    """dnspython's asyncio resolver, pointed at configured nameservers (host:port)."""

    def __init__(
        self, nameservers: list[str] | None = None, timeout: float = 5.0, cache: bool = True
    ) -> None:
        if nameservers:
            self._r = dns.asyncresolver.Resolver(configure=False)
            ns: list[dns.nameserver.Nameserver | str] = []
            for entry in nameservers:
                host, port = parse_nameserver(entry)
                ns.append(dns.nameserver.Do53Nameserver(host, port))
            self._r.nameservers = ns
        else:
            self._r = dns.asyncresolver.Resolver(configure=True)
        self._r.lifetime = timeout
        self._r.timeout = min(timeout, 2.0)
        if cache:
            self._r.cache = dns.resolver.LRUCache(50_000)

    async def query(self, name: str, rdtype: str) -> Answer:
        try:
            ans = await self._r.resolve(name, rdtype, search=False, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return Answer(name, rdtype, (), nxdomain=True)
        except dns.resolver.NoNameservers as exc:
            raise DnsError(
                f"{rdtype} {name}: no nameserver gave an answer (SERVFAIL or REFUSED)"
            ) from exc
        except (dns.exception.Timeout, dns.resolver.LifetimeTimeout) as exc:
            raise DnsError(f"{rdtype} {name}: timeout") from exc
        except dns.exception.DNSException as exc:
            raise DnsError(f"{rdtype} {name}: {exc}") from exc
        if ans.rrset is None:
            return Answer(name, rdtype, ())
        if rdtype == "TXT":
            records = tuple(_txt_text(rd) for rd in ans.rrset)
        else:
            records = tuple(rd.to_text() for rd in ans.rrset)
        return Answer(name, rdtype, records)


@dataclass
class StaticResolver:
    """An in-memory resolver for pure unit tests: {(name, type): [records]}.

    Names are matched case-insensitively without the trailing dot. A name listed under
    any type exists (NODATA for the others); a name listed nowhere is NXDOMAIN. Entries in
    ``failing`` raise DnsError (a temporary failure).
    """

    records: Mapping[tuple[str, str], list[str]] = field(default_factory=dict)
    failing: set[tuple[str, str]] = field(default_factory=set)
    queries: list[tuple[str, str]] = field(default_factory=list)

    async def query(self, name: str, rdtype: str) -> Answer:
        key = (name.lower().rstrip("."), rdtype.upper())
        self.queries.append(key)
        if key in self.failing:
            raise DnsError(f"{rdtype} {name}: SERVFAIL")
        recs = None
        for (n, t), v in self.records.items():
            if n.lower().rstrip(".") == key[0] and t.upper() == key[1]:
                recs = v
        if recs is not None:
            return Answer(name, rdtype, tuple(recs))
        exists = any(n.lower().rstrip(".") == key[0] for n, _ in self.records)
        return Answer(name, rdtype, (), nxdomain=not exists)


async def addresses(resolver: Resolver, name: str) -> list[str]:
    """The A and AAAA records of ``name``, both asked at once (normalised text)."""
    a, aaaa = await asyncio.gather(resolver.query(name, "A"), resolver.query(name, "AAAA"))
    return [str(ipaddress.ip_address(r)) for r in (*a.records, *aaaa.records)]


def reverse_name(ip: str) -> str:
    return dns.reversename.from_address(ip).to_text()


def mx_hosts(answer: Answer) -> list[tuple[int, str]]:
    """MX records sorted by preference (RFC 5321 §5.1)."""
    out: list[tuple[int, str]] = []
    for rec in answer.records:
        pref, _, host = rec.partition(" ")
        out.append((int(pref), host.rstrip(".").lower()))
    return sorted(out)
