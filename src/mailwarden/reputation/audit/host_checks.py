"""Reverse DNS (PTR and forward-confirmed rDNS) of our sending IPs, and our EHLO name.

Receivers look up the PTR of the connecting IP and resolve that name back (FCrDNS,
RFC 8601 §3 "iprev"); many refuse or score down mail from an IP without it. Gmail and
Microsoft require it of bulk senders.
"""

from __future__ import annotations

import asyncio
import ipaddress

from mailwarden.dns.resolver import addresses, reverse_name
from mailwarden.reputation.audit.cache import CachingResolver
from mailwarden.reputation.audit.model import AuditTarget, CheckResult


async def sending_ips(target: AuditTarget, dns: CachingResolver) -> tuple[list[str], str]:
    """Our sending IPs and where they came from: the configuration, or else the
    addresses of our host name (what the system most likely sends from)."""
    if target.sending_ips:
        return [str(ipaddress.ip_address(ip)) for ip in target.sending_ips], "configured"
    return await addresses(dns, target.hostname), f"the addresses of {target.hostname}"


async def ptr_names(dns: CachingResolver, ip: str) -> list[str]:
    answer = await dns.query(reverse_name(ip), "PTR")
    return [r.rstrip(".").lower() for r in answer.records]


async def confirmed_names(dns: CachingResolver, ip: str) -> tuple[list[str], list[str]]:
    """(PTR names of ``ip``, those of them that resolve back to ``ip``)."""
    names = await ptr_names(dns, ip)
    forward = await asyncio.gather(*(addresses(dns, n) for n in names))
    return names, [n for n, addrs in zip(names, forward, strict=True) if ip in addrs]


def _ptr_fix(ip: str, hostname: str) -> str:
    return (
        f"ask whoever owns {ip} (your hosting provider's control panel, usually) to set its "
        f"PTR record to {hostname}, and make sure {hostname} has an "
        f"{'AAAA' if ':' in ip else 'A'} record {ip}:\n"
        f"{reverse_name(ip).rstrip('.')}. IN PTR {hostname}.\n"
        f"{hostname}. IN {'AAAA' if ':' in ip else 'A'} {ip}"
    )


async def check_rdns(target: AuditTarget, dns: CachingResolver) -> CheckResult:
    ips, source = await sending_ips(target, dns)
    if not ips:
        return CheckResult(
            "rdns",
            "fail",
            f"no sending IP: none is configured and {target.hostname} has no A/AAAA record",
            f"publish {target.hostname}. IN A <your server's public IP> "
            "or set delivery.source_address",
        )
    results = await asyncio.gather(*(confirmed_names(dns, ip) for ip in ips))
    lines, fixes = [], []
    for ip, (names, confirmed) in zip(ips, results, strict=True):
        if confirmed:
            lines.append(f"{ip}: PTR {confirmed[0]} resolves back to {ip}")
        elif names:
            lines.append(f"{ip}: PTR {', '.join(names)} does not resolve back to {ip}")
            fixes.append(_ptr_fix(ip, target.helo_name))
        else:
            lines.append(f"{ip}: no PTR record")
            fixes.append(_ptr_fix(ip, target.helo_name))
    detail = f"sending IPs ({source}): " + "; ".join(lines)
    if fixes:
        return CheckResult("rdns", "fail", detail, "\n".join(fixes))
    return CheckResult("rdns", "pass", detail)


async def check_helo(target: AuditTarget, dns: CachingResolver) -> CheckResult:
    """The EHLO name should be the (forward-confirmed) PTR name of the IP we send from
    (RFC 5321 §4.1.4 asks for a name that resolves to the client; receivers compare it
    with the PTR)."""
    ips, _ = await sending_ips(target, dns)
    if not ips:
        return CheckResult("helo", "skip", "no sending IP to compare the EHLO name with")
    helo = target.helo_name.lower()
    results = await asyncio.gather(*(confirmed_names(dns, ip) for ip in ips))
    forward = await addresses(dns, helo)
    bad = []
    for ip, (_, confirmed) in zip(ips, results, strict=True):
        if helo not in confirmed:
            shown = ", ".join(confirmed) or "no confirmed PTR name"
            bad.append(f"{ip} (its reverse DNS is {shown})")
    if not bad:
        return CheckResult("helo", "pass", f"EHLO {helo} matches the reverse DNS of {ips[0]}")
    if not forward:
        detail = f"EHLO name {helo} does not resolve; it does not match " + "; ".join(bad)
    else:
        detail = f"EHLO name {helo} does not match the reverse DNS of " + "; ".join(bad)
    names = {n for _, confirmed in results for n in confirmed}
    fix = (
        f"set delivery.helo_name to {sorted(names)[0]}"
        if len(names) == 1
        else f"set the PTR of every sending IP to {helo} (see the rdns check)"
    )
    return CheckResult("helo", "fail", detail, fix)
