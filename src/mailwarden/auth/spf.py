"""SPF (RFC 7208): check_host() on the async Resolver seam.

``parse_record``, ``macro_tokens`` and ``expand`` are pure (and cached); ``_Evaluation``
does the DNS. Limits (RFC 7208 §4.6.4): 10 DNS-querying terms, 2 void lookups, 10 MX and
10 PTR names per lookup, and an overall time budget after which the result is temperror.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

from mailwarden.auth.spf_record import (
    QUALIFIERS,
    MacroToken,
    Mechanism,
    SpfRecord,
    SpfSyntaxError,
    check_domain,
    expand,
    is_spf_record,
    macro_tokens,
    parse_record,
    query_name,
)
from mailwarden.core.errors import DnsError
from mailwarden.dns.resolver import Answer, Resolver, reverse_name

__all__ = ["SpfRecord", "SpfResult", "SpfSyntaxError", "check_host", "check_spf", "parse_record"]

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
T = TypeVar("T")

MAX_TERMS = 10  # RFC 7208 §4.6.4: mechanisms and modifiers that query DNS
MAX_VOID = 2  # RFC 7208 §4.6.4: void lookups (SHOULD, default two)
MAX_MX = 10  # RFC 7208 §4.6.4: MX records per "mx" mechanism, else permerror
MAX_PTR = 10  # RFC 7208 §4.6.4: PTR names looked at, the rest ignored
TIME_LIMIT = 20.0  # RFC 7208 §4.6.4: "at least 20 seconds", then temperror


@dataclass(frozen=True)
class SpfResult:
    result: str  # pass|fail|softfail|neutral|none|temperror|permerror
    domain: str
    reason: str
    explanation: str | None = None
    lookups: int = 0


def _parse_ips(records: tuple[str, ...]) -> list[IP]:
    out: list[IP] = []
    for rec in records:
        try:
            out.append(ipaddress.ip_address(rec.strip()))
        except ValueError:
            continue
    return out


async def _gather(*aws: Awaitable[T]) -> list[T]:
    """asyncio.gather that lets every task finish, then raises the first error."""
    done = await asyncio.gather(*aws, return_exceptions=True)
    for item in done:
        if isinstance(item, BaseException):
            raise item
    return done  # type: ignore[return-value]


# ----------------------------------------------------------- evaluation, RFC 7208 §4–§6
class _Outcome(NamedTuple):
    result: str
    reason: str
    explanation: str | None = None


class _Abort(Exception):
    def __init__(self, result: str, reason: str) -> None:
        super().__init__(reason)
        self.result = result
        self.reason = reason


class _Evaluation:
    def __init__(self, resolver: Resolver, ip: IP, sender: str, helo: str, receiver: str):
        local, _, domain = sender.rpartition("@")
        local = local or "postmaster"  # RFC 7208 §4.3
        self.resolver = resolver
        self.ip = ip
        self.lookups = 0
        self.voids = 0
        self._validated: list[str] | None = None
        self.values = {  # RFC 7208 §7.2 (d and p are per-domain, filled in later)
            "s": f"{local}@{domain}",
            "l": local,
            "o": domain,
            "h": helo,
            "i": ".".join(ip.exploded.replace(":", "")) if ip.version == 6 else str(ip),
            "c": str(ip),
            "v": "in-addr" if ip.version == 4 else "ip6",
            "r": receiver,
            "t": str(int(time.time())),
        }

    async def check_host(self, domain: str) -> _Outcome:
        name = check_domain(domain)
        if name is None:  # RFC 7208 §4.3: malformed or single-label → none
            return _Outcome("none", f"{domain!r} is not a valid domain (RFC 7208 §4.3)")
        try:
            text = await self._record(name)
            if text is None:
                return _Outcome("none", f"no SPF record at {name}")
            return await self._evaluate(parse_record(text), name)
        except SpfSyntaxError as exc:
            return _Outcome("permerror", f"{name}: {exc}")
        except _Abort as exc:
            return _Outcome(exc.result, exc.reason)

    async def _record(self, name: str) -> str | None:
        answer = await self._query(name, "TXT")  # RFC 7208 §4.4
        records = [r for r in answer.records if is_spf_record(r)]
        if len(records) > 1:  # RFC 7208 §4.5
            raise _Abort("permerror", f"{name} publishes {len(records)} SPF records (§4.5)")
        return records[0] if records else None

    async def _evaluate(self, record: SpfRecord, domain: str) -> _Outcome:
        for mech in record.mechanisms:  # RFC 7208 §4.6.2: first match wins
            if await self._matches(mech, domain):
                result = QUALIFIERS[mech.qualifier]
                exp = None
                if result == "fail" and record.exp is not None:
                    exp = await self._explain(record.exp, domain)
                return _Outcome(result, f"{domain}: matched {mech.text}", exp)
        if record.redirect is None:
            return _Outcome("neutral", f"{domain}: no mechanism matched (RFC 7208 §4.7)")
        self._count()  # RFC 7208 §4.6.4: redirect counts as a DNS-querying term
        target = await self._target(record.redirect, domain)
        out = await self.check_host(target) if target else _Outcome("none", "malformed name")
        if out.result == "none":  # RFC 7208 §6.1
            return _Outcome("permerror", f"{domain}: redirect={target}: {out.reason}")
        return out  # RFC 7208 §6.2: the target's own exp= applies, ours does not

    async def _matches(self, mech: Mechanism, domain: str) -> bool:
        if mech.kind == "all":
            return True
        if mech.network is not None:  # RFC 7208 §5.6; version check: ipaddress would not
            return self.ip.version == mech.network.version and self.ip in mech.network
        self._count()
        target: str | None = domain
        if mech.domain_spec is not None:
            target = await self._target(mech.domain_spec, domain)
        if mech.kind == "include":
            return await self._include(target)
        if target is None:  # a target that cannot be a DNS name does not exist
            return False
        if mech.kind == "a":
            return self._any_in(await self._addresses(target, void=True), mech)
        if mech.kind == "mx":
            return await self._mx(target, mech)
        if mech.kind == "ptr":
            return await self._ptr(target)
        answer = await self._query(target, "A")  # RFC 7208 §5.7: always A, also for IPv6
        self._void(answer, target)
        return bool(answer.records)

    async def _include(self, target: str | None) -> bool:
        out = await self.check_host(target) if target else _Outcome("none", "malformed name")
        if out.result in ("pass", "fail", "softfail", "neutral"):  # RFC 7208 §5.2 table
            return out.result == "pass"
        result = "temperror" if out.result == "temperror" else "permerror"
        nested = out.reason.startswith("include:")  # keep only the innermost include
        raise _Abort(result, out.reason if nested else f"include:{target}: {out.reason}")

    async def _mx(self, target: str, mech: Mechanism) -> bool:
        answer = await self._query(target, "MX")  # RFC 7208 §5.4
        self._void(answer, target)
        if len(answer.records) > MAX_MX:
            raise _Abort("permerror", f"{target} has more than {MAX_MX} MX records (§4.6.4)")
        hosts = [h.removesuffix(".") for r in answer.records for h in r.split()[1:2]]
        found = await _gather(*(self._addresses(h) for h in hosts if h))
        return any(self._any_in(addrs, mech) for addrs in found)

    async def _ptr(self, target: str) -> bool:
        suffix = target.lower()  # RFC 7208 §5.5
        names = await self._validated_names(void=True)
        return any(n == suffix or n.endswith("." + suffix) for n in names)

    async def _validated_names(self, void: bool) -> list[str]:
        """RFC 7208 §5.5: PTR names of the client whose A/AAAA records lead back to it."""
        if self._validated is not None:
            return self._validated
        try:
            answer = await self.resolver.query(reverse_name(str(self.ip)), "PTR")
        except DnsError:  # RFC 7208 §5.5: a failed PTR lookup means no match
            answer = Answer("", "PTR")
        if void:
            self._void(answer, "PTR")
        names = [r.removesuffix(".").lower() for r in answer.records[:MAX_PTR]]  # §4.6.4
        checks = await asyncio.gather(*(self._leads_back(n) for n in names))
        self._validated = [n for n, ok in zip(names, checks, strict=True) if ok]
        return self._validated

    async def _leads_back(self, name: str) -> bool:
        if query_name(name) is None:
            return False
        try:
            answer = await self.resolver.query(name, "A" if self.ip.version == 4 else "AAAA")
        except DnsError:  # RFC 7208 §5.5: skip names whose address lookup fails
            return False
        return self.ip in _parse_ips(answer.records)

    async def _explain(self, spec: str, domain: str) -> str | None:
        """RFC 7208 §6.2: any problem with the explanation means "no exp=" at all."""
        target = await self._target(spec, domain)
        if target is None:
            return None
        try:
            answer = await self.resolver.query(target, "TXT")
            if len(answer.records) != 1 or not answer.records[0].isascii():
                return None
            tokens = macro_tokens(answer.records[0], explain=True)
        except (DnsError, SpfSyntaxError):
            return None
        return expand(tokens, await self._values(tokens, domain))

    async def _target(self, spec: str, domain: str) -> str | None:
        tokens = macro_tokens(spec)
        return query_name(expand(tokens, await self._values(tokens, domain)))

    async def _values(self, tokens: tuple[MacroToken, ...], domain: str) -> dict[str, str]:
        values = dict(self.values, d=domain)
        if any(t.letter.lower() == "p" for t in tokens):
            values["p"] = await self._p_macro(domain)
        return values

    async def _p_macro(self, domain: str) -> str:
        """RFC 7208 §7.3 "p": the domain itself, else a subdomain, else any validated name."""
        names = await self._validated_names(void=False)
        ranked = sorted(names, key=lambda n: (n != domain, not n.endswith("." + domain)))
        return ranked[0] if ranked else "unknown"

    def _any_in(self, addrs: list[IP], mech: Mechanism) -> bool:
        """RFC 7208 §5.3: match when the client is within the CIDR of any address."""
        length = mech.cidr4 if self.ip.version == 4 else mech.cidr6
        bits = self.ip.max_prefixlen if length is None else length
        net = ipaddress.ip_network((self.ip, bits), strict=False)
        return any(a.version == net.version and a in net for a in addrs)

    async def _addresses(self, name: str, void: bool = False) -> list[IP]:
        answer = await self._query(name, "A" if self.ip.version == 4 else "AAAA")
        if void:
            self._void(answer, name)
        return _parse_ips(answer.records)

    async def _query(self, name: str, rdtype: str) -> Answer:
        try:
            return await self.resolver.query(name, rdtype)
        except DnsError as exc:  # RFC 7208 §5: DNS errors other than NXDOMAIN → temperror
            raise _Abort("temperror", f"{rdtype} {name}: {exc}") from exc

    def _count(self) -> None:
        self.lookups += 1
        if self.lookups > MAX_TERMS:
            raise _Abort("permerror", f"more than {MAX_TERMS} DNS lookups (RFC 7208 §4.6.4)")

    def _void(self, answer: Answer, name: str) -> None:
        if not answer.records:
            self.voids += 1
            if self.voids > MAX_VOID:
                raise _Abort("permerror", f"over {MAX_VOID} void lookups, at {name} (§4.6.4)")


def _client_ip(ip: str) -> IP:
    addr = ipaddress.ip_address(ip.strip().removeprefix("[").removesuffix("]"))
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped  # RFC 7208 §5: IPv4-mapped IPv6 is an IPv4 client
    return addr


async def check_host(
    resolver: Resolver, ip: str, domain: str, sender: str, helo: str, *, receiver: str = "unknown"
) -> SpfResult:
    """RFC 7208 §4: the SPF result of ``domain`` for a client at ``ip``. Never raises."""
    try:
        addr = _client_ip(ip)
    except ValueError:
        return SpfResult("permerror", domain.lower(), f"invalid client IP {ip!r}")
    ev = _Evaluation(resolver, addr, sender, helo, receiver)
    try:
        async with asyncio.timeout(TIME_LIMIT):
            out = await ev.check_host(domain)
    except TimeoutError:
        out = _Outcome("temperror", f"SPF evaluation took over {TIME_LIMIT:.0f} s (§4.6.4)")
    return SpfResult(out.result, domain.lower(), out.reason, out.explanation, ev.lookups)


async def check_spf(
    resolver: Resolver, ip: str, mail_from: str, helo: str, *, receiver: str = "unknown"
) -> tuple[SpfResult, SpfResult]:
    """(MAIL FROM result, HELO result). A null reverse-path is checked as postmaster@HELO
    (RFC 7208 §2.4), so both results are then the same evaluation."""
    helo_check = check_host(resolver, ip, helo, f"postmaster@{helo}", helo, receiver=receiver)
    sender = mail_from.strip().removeprefix("<").removesuffix(">")
    if not sender:
        result = await helo_check
        return result, result
    domain = sender.rpartition("@")[2]
    mailfrom_check = check_host(resolver, ip, domain, sender, helo, receiver=receiver)
    return await asyncio.gather(mailfrom_check, helo_check)
