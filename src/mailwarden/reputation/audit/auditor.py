"""Run every check of one domain concurrently and score the result.

Each check is ``async def check(target, dns) -> CheckResult``; ``dns`` is the audit's
CachingResolver, so MX, A and TXT answers that several checks need are asked for once.
A temporary DNS failure makes a check "warn" (we could not tell), never "fail": a pass
that turns into a fail raises an alert, and a flaky resolver must not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from mailwarden.core.errors import DnsError
from mailwarden.dns.resolver import Resolver
from mailwarden.reputation.audit import (
    blocklists,
    dane,
    dns_checks,
    host_checks,
    mailboxes,
    mta_sts,
    spf_check,
    tls_check,
)
from mailwarden.reputation.audit.cache import CachingResolver
from mailwarden.reputation.audit.model import AuditReport, AuditTarget, CheckResult, score

log = logging.getLogger("mailwarden.audit")
Check = Callable[[AuditTarget, CachingResolver], Awaitable[CheckResult]]
CHECK_TIMEOUT = 20.0  # seconds for any one check (each lookup also has dns.timeout)

CHECKS: dict[str, Check] = {
    "mx": dns_checks.check_mx,
    "spf": spf_check.check_spf,
    "dkim": dns_checks.check_dkim,
    "dmarc": dns_checks.check_dmarc,
    "rdns": host_checks.check_rdns,
    "helo": host_checks.check_helo,
    "tls": tls_check.check_tls,
    "mta_sts": mta_sts.check_mta_sts,
    "dane": dane.check_dane,
    "mailboxes": mailboxes.check_mailboxes,
    "blocklists": blocklists.check_blocklists,
}


async def _run(name: str, check: Check, target: AuditTarget, dns: CachingResolver) -> CheckResult:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            return await check(target, dns)
    except DnsError as exc:
        detail = f"could not check: DNS lookup failed ({exc})"
    except TimeoutError:
        detail = f"could not check within {CHECK_TIMEOUT:.0f} s"
    except Exception as exc:
        log.exception("audit check %s of %s failed", name, target.domain)
        detail = f"could not check: {type(exc).__name__}: {exc}"
    return CheckResult(name, "warn", detail, checked=False)


async def audit(
    target: AuditTarget, resolver: Resolver, only: Sequence[str] | None = None
) -> AuditReport:
    """All checks (or ``only`` these) of ``target.domain`` at once, scored."""
    dns = CachingResolver(resolver)
    started = time.perf_counter()
    names = [n for n in CHECKS if only is None or n in only]
    results = await asyncio.gather(*(_run(n, CHECKS[n], target, dns) for n in names))
    return AuditReport(
        domain=target.domain,
        score=score(results),
        checks=tuple(results),
        queries=dns.queries,
        lookups=dns.lookups,
        seconds=time.perf_counter() - started,
    )
