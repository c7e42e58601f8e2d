"""One inbound message's authentication: SPF, DKIM and ARC concurrently, then DMARC.

``authenticate`` never raises on hostile input: malformed headers, bad base64 or huge
fields all end up as result values. An unexpected exception inside one check is logged
and reported as that check's temperror (ARC: fail), so one bug cannot lose a message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from mailwarden.auth.arc import ArcResult, verify_arc
from mailwarden.auth.dkim import DkimResult, verify_dkim
from mailwarden.auth.dmarc import DmarcResult, check_dmarc, from_domain
from mailwarden.auth.spf import SpfResult, check_spf
from mailwarden.core.headers import read_headers
from mailwarden.dns.resolver import Resolver

log = logging.getLogger("mailwarden.auth")
T = TypeVar("T")


@dataclass(frozen=True)
class AuthVerdict:
    spf_mailfrom: SpfResult
    spf_helo: SpfResult
    dkim: list[DkimResult]
    dmarc: DmarcResult
    arc: ArcResult
    from_domain: str | None
    mail_from: str = ""  # the identities checked, for Authentication-Results
    helo: str = ""


async def _guarded(check: Awaitable[T], fallback: T, what: str) -> T:
    try:
        return await check
    except Exception:
        log.exception("%s check crashed; reporting %s", what, fallback)
        return fallback


def _headers(message: bytes) -> list[tuple[str, str]]:
    try:
        return read_headers(message)
    except Exception:  # the email package records defects; this is belt and braces
        log.exception("header parse failed")
        return []


async def authenticate(
    resolver: Resolver,
    *,
    ip: str,
    helo: str,
    mail_from: str,
    message: bytes,
    headers: list[tuple[str, str]] | None = None,
) -> AuthVerdict:
    """Run SPF (MAIL FROM and HELO), DKIM and ARC concurrently, then DMARC.

    ``headers`` (from ``read_headers``) spares a parse when the caller has them already.
    """
    if headers is None:
        headers = _headers(message)  # parsed once, shared by DKIM, ARC and the From lookup
    sender = mail_from.strip().removeprefix("<").removesuffix(">")
    spf_error = SpfResult("temperror", "", "internal error")
    (spf_mf, spf_helo), dkim, arc = await asyncio.gather(
        _guarded(check_spf(resolver, ip, sender, helo), (spf_error, spf_error), "SPF"),
        _guarded(verify_dkim(resolver, message, headers=headers), [], "DKIM"),
        _guarded(
            verify_arc(resolver, message, headers=headers),
            ArcResult("fail", "internal error", 0),
            "ARC",
        ),
    )
    domain, problem = from_domain(headers)
    if domain is None:  # RFC 7489 §6.6.1: no single From domain → no DMARC pass possible
        dmarc = DmarcResult("permerror", "", "none", "", False, False, None, problem)
    else:
        spf_domain = sender.rpartition("@")[2] if sender else helo  # RFC 7489 §3.1.2
        fallback = DmarcResult("temperror", domain, "none", "", False, False, None, "internal")
        dmarc = await _guarded(
            check_dmarc(resolver, domain, spf_mf, spf_domain, dkim), fallback, "DMARC"
        )
    return AuthVerdict(spf_mf, spf_helo, dkim, dmarc, arc, domain, sender, helo)
