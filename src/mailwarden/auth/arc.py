"""ARC chain validation (RFC 8617 §5.2) with dkimpy, keys prefetched on our async Resolver.

As for DKIM: the ARC-Seal and ARC-Message-Signature selectors are read here, their keys
fetched through the Resolver, and ``dkim.arc_verify`` runs in a worker thread with a DNS
function that only reads the prefetched map.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import dkim

from mailwarden.auth.dkim import (
    DKIMPY_LOG,
    DkimSyntaxError,
    HeaderList,
    KeyAnswer,
    dnsfunc_for,
    fetch_keys,
    parse_tag_list,
)
from mailwarden.core.errors import DnsError
from mailwarden.core.headers import read_headers
from mailwarden.dns.resolver import Resolver

MAX_ARC_SETS = 50  # RFC 8617 §4.2.1: at most 50 sets; more → the chain fails
_ARC_FIELDS = ("arc-seal", "arc-message-signature", "arc-authentication-results")
_SIGNED = ("arc-seal", "arc-message-signature")
_CV = {b"pass": "pass", b"fail": "fail", b"none": "none"}


@dataclass(frozen=True)
class ArcResult:
    result: str  # none|pass|fail
    reason: str
    instances: int


def key_names(fields: HeaderList) -> set[str]:
    """``s._domainkey.d`` of every ARC-Seal and ARC-Message-Signature that parses."""
    names: set[str] = set()
    for name, value in fields:
        if name.lower() not in _SIGNED:
            continue
        try:
            tags = parse_tag_list(value)
        except DkimSyntaxError:
            continue  # dkimpy will fail this set; nothing to fetch
        selector, domain = tags.get("s", "").lower(), tags.get("d", "").lower()
        name_ok = selector and domain and len(selector) + len(domain) <= 241
        if name_ok and (selector + domain).isascii() and " " not in selector + domain:
            names.add(f"{selector}._domainkey.{domain}")
    return names


def _arc_in_thread(message: bytes, keys: Mapping[str, KeyAnswer]) -> tuple[str, str]:
    try:
        cv, _sets, reason = dkim.arc_verify(message, logger=DKIMPY_LOG, dnsfunc=dnsfunc_for(keys))
    except Exception as exc:  # arc_verify catches DKIMException only
        return "fail", f"verifier: {exc}"
    if cv is None:  # RFC 8617 §5.2 step 2: a seal says cv=fail, the chain stays failed
        return "fail", str(reason)
    return _CV.get(cv, "fail"), str(reason)


async def verify_arc(
    resolver: Resolver, message: bytes, *, headers: HeaderList | None = None
) -> ArcResult:
    """Validate the ARC chain (RFC 8617 §5.2). Never raises on hostile input.

    ``headers`` (from ``read_headers``) spares a second header parse. A temporary DNS
    failure for a key makes that signature fail; the reason says so.
    """
    fields = read_headers(message) if headers is None else headers
    arc = [(n, v) for n, v in fields if n.lower() in _ARC_FIELDS]
    if not arc:  # RFC 8617 §5.2 step 1
        return ArcResult("none", "no ARC header fields", 0)
    instances = sum(1 for n, _v in arc if n.lower() == "arc-seal")
    if instances > MAX_ARC_SETS:
        return ArcResult("fail", f"{instances} ARC sets, more than {MAX_ARC_SETS}", instances)
    keys = await fetch_keys(resolver, key_names(arc))
    result, reason = await asyncio.to_thread(_arc_in_thread, message, keys)
    failed = [f"{n}: {k}" for n, k in keys.items() if isinstance(k, DnsError)]
    if result == "fail" and failed:
        reason = f"{reason}; temporary DNS failure for {'; '.join(failed)}"
    return ArcResult(result, reason, instances)
