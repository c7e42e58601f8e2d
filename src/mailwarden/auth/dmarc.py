"""DMARC (RFC 7489): record parsing, policy discovery, identifier alignment.

The record parser, ``from_domain`` and the alignment checks are pure. The public suffix
list is loaded once, lazily, in a worker thread (``load_psl``; loading takes ~50 ms).
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import getaddresses

from publicsuffixlist import PublicSuffixList

from mailwarden.auth.dkim import DkimResult, HeaderList
from mailwarden.auth.spf import SpfResult
from mailwarden.auth.spf_record import check_domain
from mailwarden.core.errors import DnsError
from mailwarden.dns.resolver import Answer, Resolver

POLICIES = ("none", "quarantine", "reject")
_WEAKER = {"reject": "quarantine", "quarantine": "none", "none": "none"}  # RFC 7489 §6.3 pct
_VERSION = re.compile(r"\s*[vV]\s*=\s*DMARC1\s*(;|$)")  # RFC 7489 §6.4: first tag; "DMARC1" exact
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s!,]+(![0-9]+[kmgtKMGT]?)?")  # §6.4 dmarc-uri
_FO = re.compile(r"[01ds](:[01ds])*")


@dataclass(frozen=True)
class DmarcRecord:
    p: str
    sp: str | None = None
    np: str | None = None  # RFC 9091: policy for non-existent subdomains
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100
    rua: tuple[str, ...] = ()
    ruf: tuple[str, ...] = ()
    fo: str = "0"
    rf: str = "afrf"
    ri: int = 86400
    problems: tuple[str, ...] = ()  # tags that were ignored or replaced by defaults


@dataclass(frozen=True)
class DmarcResult:
    result: str  # pass|fail|none|temperror|permerror
    from_domain: str
    policy: str  # none|quarantine|reject: p, sp or np as applicable; after pct on fail
    org_domain: str
    spf_aligned: bool
    dkim_aligned: bool
    record: DmarcRecord | None
    reason: str


class DmarcRecordError(ValueError):
    """Not a usable DMARC record: RFC 7489 §6.6.3 says apply no DMARC processing."""


# ------------------------------------------------------------------ record, RFC 7489 §6.3
def _tags(text: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for spec in text.split(";"):
        name, sep, value = spec.partition("=")
        if sep:
            tags.setdefault(name.strip().lower(), value.strip())  # first one wins
    return tags


def _uris(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(u for u in (x.strip() for x in value.split(",")) if _URI.fullmatch(u))


def _choice(
    tags: dict[str, str], name: str, allowed: Sequence[str], problems: list[str]
) -> str | None:
    value = tags.get(name)
    if value is None or value.lower() in allowed:
        return None if value is None else value.lower()
    problems.append(f"invalid {name}={value[:20]}")
    return None


def _int(tags: dict[str, str], name: str, low: int, high: int, problems: list[str]) -> int | None:
    value = tags.get(name)
    if value is None:
        return None
    if value.isdigit() and value.isascii() and low <= int(value[:12]) <= high:
        return int(value)
    problems.append(f"invalid {name}={value[:20]}")
    return None


def parse_record(text: str) -> DmarcRecord:
    """Parse a DMARC TXT record (RFC 7489 §6.3, §6.4). Raise DmarcRecordError.

    RFC 7489 §6.6.3: a missing or invalid p (or an invalid sp) makes the record unusable,
    unless rua names a valid URI: then the record acts as "v=DMARC1; p=none". Bad values
    of other tags fall back to their defaults and are listed in ``problems``.
    """
    if not _VERSION.match(text):
        raise DmarcRecordError("record does not start with v=DMARC1")
    tags = _tags(text)
    problems: list[str] = []
    rua = _uris(tags.get("rua"))
    p = _choice(tags, "p", POLICIES, problems)
    sp = _choice(tags, "sp", POLICIES, problems)
    if p is None or ("sp" in tags and sp is None):
        if not rua:
            raise DmarcRecordError("missing or invalid p= (or invalid sp=) and no rua")
        return DmarcRecord("none", rua=rua, problems=(*problems, "acting as p=none"))
    adkim = _choice(tags, "adkim", ("r", "s"), problems) or "r"
    aspf = _choice(tags, "aspf", ("r", "s"), problems) or "r"
    fo = tags.get("fo", "0")
    if not _FO.fullmatch(fo):
        problems.append(f"invalid fo={fo[:20]}")
        fo = "0"
    pct = _int(tags, "pct", 0, 100, problems)
    ri = _int(tags, "ri", 0, 2**32 - 1, problems)
    np = _choice(tags, "np", POLICIES, problems)
    return DmarcRecord(
        p=p,
        sp=sp,
        np=np,
        adkim=adkim,
        aspf=aspf,
        pct=100 if pct is None else pct,
        rua=rua,
        ruf=_uris(tags.get("ruf")),
        fo=fo,
        rf=tags.get("rf", "afrf").lower(),
        ri=86400 if ri is None else ri,
        problems=tuple(problems),
    )


# --------------------------------------------------------- From domain, RFC 7489 §6.6.1
def from_domain(message_headers: HeaderList) -> tuple[str | None, str]:
    """The RFC5322.From domain, or (None, why not) when DMARC cannot identify one."""
    values = [v for n, v in message_headers if n.lower() == "from"]
    if len(values) != 1:
        return None, "no From header field" if not values else "multiple From header fields"
    addresses = [a for _name, a in getaddresses([values[0]]) if a]
    if len(addresses) != 1:
        return None, "no address in From" if not addresses else "multiple addresses in From"
    domain = check_domain(addresses[0].rpartition("@")[2].strip().strip("<>[]"))
    if "@" not in addresses[0] or domain is None:
        return None, f"invalid From address {addresses[0][:80]!r}"
    return domain, ""


# ------------------------------------------------------ organizational domain, §3.2
_PSL: list[PublicSuffixList] = []
_PSL_LOCK = threading.Lock()


def _load_psl_sync() -> PublicSuffixList:
    with _PSL_LOCK:
        if not _PSL:
            _PSL.append(PublicSuffixList())
        return _PSL[0]


async def load_psl() -> PublicSuffixList:
    """The public suffix list, loaded once off the event loop (call at start-up to warm)."""
    return _PSL[0] if _PSL else await asyncio.to_thread(_load_psl_sync)


def organizational_domain(domain: str, psl: PublicSuffixList) -> str:
    """RFC 7489 §3.2: the public suffix plus one label (a public suffix maps to itself)."""
    org: str | None = psl.privatesuffix(domain.lower().removesuffix("."))
    return org or domain.lower().removesuffix(".")


def is_aligned(auth_domain: str, from_dom: str, mode: str, psl: PublicSuffixList) -> bool:
    """RFC 7489 §3.1.1/§3.1.2: strict = same name; relaxed = same organizational domain."""
    auth = auth_domain.lower().removesuffix(".")
    if not auth or auth == from_dom:
        return bool(auth)
    return mode != "s" and organizational_domain(auth, psl) == organizational_domain(from_dom, psl)


# ----------------------------------------------------------- discovery, RFC 7489 §6.6.3
async def _records(resolver: Resolver, domain: str) -> list[str]:
    answer = await resolver.query(f"_dmarc.{domain}", "TXT")
    return [r for r in answer.records if _VERSION.match(r)]


async def _exists(resolver: Resolver, domain: str) -> bool:
    """RFC 9091 §2.1: a name with no A, AAAA or MX records (or NXDOMAIN) does not exist."""
    queries = (resolver.query(domain, t) for t in ("A", "AAAA", "MX"))
    answers = await asyncio.gather(*queries, return_exceptions=True)
    return any(not isinstance(a, Answer) or a.records for a in answers)  # errors: exists


async def _policy(resolver: Resolver, record: DmarcRecord, from_dom: str, at: str) -> str:
    if at == from_dom:
        return record.p
    if record.np is not None and not await _exists(resolver, from_dom):
        return record.np  # RFC 9091 §4.1
    return record.sp or record.p  # RFC 7489 §6.3 "sp"


def _none(from_dom: str, org: str, result: str, reason: str) -> DmarcResult:
    return DmarcResult(result, from_dom, "none", org, False, False, None, reason)


async def _discover(resolver: Resolver, from_dom: str, org: str) -> tuple[list[str], str]:
    """RFC 7489 §6.6.3 steps 1–3: the From domain's records, else its org domain's."""
    found = await _records(resolver, from_dom)
    if found or org == from_dom:
        return found, from_dom
    return await _records(resolver, org), org


def _verdict(
    record: DmarcRecord,
    policy: str,
    from_dom: str,
    org: str,
    aligned: tuple[bool, bool],
    *,
    rand: Callable[[], float],
) -> DmarcResult:
    spf_ok, dkim_ok = aligned
    if spf_ok or dkim_ok:  # RFC 7489 §4.2: one aligned pass is enough
        why = " and ".join(n for n, ok in (("SPF", spf_ok), ("DKIM", dkim_ok)) if ok)
        return DmarcResult("pass", from_dom, policy, org, spf_ok, dkim_ok, record, f"aligned {why}")
    reason = "no aligned SPF or DKIM pass"
    if rand() * 100 >= record.pct:  # RFC 7489 §6.6.4: message not sampled → weaker policy
        policy, reason = _WEAKER[policy], f"{reason}; not sampled (pct={record.pct})"
    return DmarcResult("fail", from_dom, policy, org, False, False, record, reason)


async def check_dmarc(
    resolver: Resolver,
    from_domain: str,
    spf: SpfResult,
    mail_from_domain: str,
    dkim: list[DkimResult],
    *,
    rand: Callable[[], float] = random.random,
) -> DmarcResult:
    """Evaluate DMARC (RFC 7489 §6.6) for the RFC5322.From domain. Never raises.

    ``mail_from_domain`` is the domain SPF checked (the HELO domain for a null MAIL FROM,
    RFC 7489 §3.1.2); it counts only when ``spf`` passed.
    """
    psl = await load_psl()
    from_dom = check_domain(from_domain) or ""
    if not from_dom:
        return _none(from_domain, "", "permerror", f"invalid From domain {from_domain[:80]!r}")
    org = organizational_domain(from_dom, psl)
    try:
        found, at = await _discover(resolver, from_dom, org)
        if len(found) != 1:  # RFC 7489 §6.6.3 step 5
            if not found:
                return _none(from_dom, org, "none", "no DMARC record")
            return _none(from_dom, org, "permerror", f"{len(found)} DMARC records at _dmarc.{at}")
        record = parse_record(found[0])
        policy = await _policy(resolver, record, from_dom, at)
    except DnsError as exc:
        return _none(from_dom, org, "temperror", f"DMARC record lookup: {exc}")
    except DmarcRecordError as exc:  # RFC 7489 §6.6.3 step 6: no DMARC processing
        return _none(from_dom, org, "none", f"_dmarc.{at}: {exc}")
    spf_ok = spf.result == "pass" and is_aligned(mail_from_domain, from_dom, record.aspf, psl)
    dkim_ok = any(
        r.result == "pass" and is_aligned(r.domain, from_dom, record.adkim, psl) for r in dkim
    )
    return _verdict(record, policy, from_dom, org, (spf_ok, dkim_ok), rand=rand)
