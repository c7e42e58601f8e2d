"""DNS blocklists (DNSBL, RFC 5782) as data: what a list is and what its answers mean.

This module owns the Blocklist and Listing types, the lists we know (Spamhaus ZEN and DBL,
Barracuda, SpamCop, UCEPROTECT) and the defaults, the parser for the
``reputation.blocklists`` config key, the query name for an IP or domain
(``<reversed IP>.<zone>``, ``<domain>.<zone>``) and the reading of the A records found
there: a 127.0.0.0/8 return code the list documents is a listing; refusals (Spamhaus's
127.255.255.0/24 error range, e.g. 127.255.255.254 for queries through a public resolver,
the DBL's 127.0.1.255 for an IP, 127.0.0.1) and answers outside 127.0.0.0/8 (a resolver
that rewrites NXDOMAIN) are not. It is pure: no DNS lookups and nothing async, see
``blocklists`` for those.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from typing import Literal

Kind = Literal["ip", "domain"]
# listed: the answer is a listing; clean: NXDOMAIN/NODATA; refused: the list will not
# answer our resolver; unexpected: an answer that is no documented code; error: DnsError.
State = Literal["listed", "clean", "refused", "unexpected", "error"]


@dataclass(frozen=True)
class Blocklist:
    """One DNSBL zone and how to read its answers.

    ``listed``: the A records (return codes) that mean "listed"; empty means any
    127.0.0.0/8 answer that is not a refusal. ``refused``: codes of this list that mean
    "this list will not answer you" (besides REFUSED_CODES, which hold for every list).
    ``policy``: listed codes that say the IP should not send directly (Spamhaus PBL) —
    the fix is a relay, not a clean-up. ``meanings``: (code, text) as the list documents
    them. ``site``: where to look up and delist. ``ipv6``: the list answers IPv6 queries
    (RFC 5782 §2.4); IPv4-only lists are not asked about IPv6 addresses.
    """

    name: str
    zone: str
    kind: Kind
    listed: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()
    policy: tuple[str, ...] = ()
    meanings: tuple[tuple[str, str], ...] = ()
    site: str = ""
    ipv6: bool = True

    def meaning(self, code: str) -> str:
        return dict(self.meanings).get(code, "")


@dataclass(frozen=True, slots=True)
class Listing:
    """What one lookup says: ``codes`` are the A records that decided it, ``meaning``
    what they mean (or why the answer is unusable), ``reason`` the list's TXT record."""

    state: State
    codes: tuple[str, ...] = ()
    meaning: str = ""
    reason: str = ""

    @property
    def usable(self) -> bool:
        return self.state in ("listed", "clean")


# Spamhaus "DNSBL return codes" (spamhaus.org/news/article/788 and the DNSBL Usage FAQ):
# 127.255.255.0/24 is an error range that "should NOT be interpreted as any sort of
# reputation". We apply it to every list: no list uses it for listings.
ERROR_RANGE = ipaddress.IPv4Network("127.255.255.0/24")
REFUSED_CODES: dict[str, str] = {
    "127.255.255.252": "typo in the blocklist zone name (Spamhaus error code)",
    "127.255.255.254": "query via a public/open resolver: Spamhaus refuses to answer it",
    "127.255.255.255": "excessive number of queries from this resolver (Spamhaus error code)",
    # RFC 5782 §5: 127.0.0.1 MUST NOT be listed; lists such as URIBL answer it to
    # resolvers they block.
    "127.0.0.1": "127.0.0.1 never means listed (RFC 5782 §5): the list is blocking this resolver",
}
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")

_PBL = "PBL: the IP is in a range its owner says should not send mail directly (policy block list)"
_XBL = "XBL: the IP is infected or exploited (malware, open proxy, botnet)"
_SPAMHAUS_SITE = "https://check.spamhaus.org/"

# Spamhaus "Available Zones" (docs.spamhaus.com, datasets / 040-zones): ZEN = SBL + CSS +
# XBL + PBL (+ DROP and BCL). PBL (10, 11) is listed too: receivers that use ZEN reject
# it, so for an MTA that sends directly it is a problem.
ZEN = Blocklist(
    name="Spamhaus ZEN",
    zone="zen.spamhaus.org",
    kind="ip",
    listed=(*(f"127.0.0.{n}" for n in range(2, 12)), "127.0.0.30"),
    policy=("127.0.0.10", "127.0.0.11"),
    meanings=(
        ("127.0.0.2", "SBL: a spam source or spam operation listed by the Spamhaus team"),
        ("127.0.0.3", "CSS: an IP that sent low-reputation mail (automated listing)"),
        *((f"127.0.0.{n}", _XBL) for n in range(4, 8)),
        ("127.0.0.8", "SBL (a code Spamhaus documents as currently unused)"),
        ("127.0.0.9", "DROP: the IP is in a hijacked or spammer-run network"),
        ("127.0.0.10", _PBL + ", maintained by the IP's owner"),
        ("127.0.0.11", _PBL + ", maintained by Spamhaus"),
        ("127.0.0.30", "BCL: the IP is a botnet controller"),
    ),
    site=_SPAMHAUS_SITE,
)
# Same page: DBL codes 127.0.1.2-.6 (low reputation, phishing, malware, botnet C&C) and
# 127.0.1.102-.106 (abused legitimate domains); 127.0.1.255 = "IP queries not allowed".
DBL = Blocklist(
    name="Spamhaus DBL",
    zone="dbl.spamhaus.org",
    kind="domain",
    listed=tuple(f"127.0.1.{n}" for n in (*range(2, 100), *range(102, 107))),
    refused=("127.0.1.255",),
    meanings=(
        ("127.0.1.2", "a low-reputation (spam) domain"),
        ("127.0.1.4", "a phishing domain"),
        ("127.0.1.5", "a malware domain"),
        ("127.0.1.6", "a botnet command-and-control domain"),
        ("127.0.1.102", "an abused legitimate domain (used in spam)"),
        ("127.0.1.103", "an abused redirector or URL shortener"),
        ("127.0.1.104", "an abused legitimate domain (used in phishing)"),
        ("127.0.1.105", "an abused legitimate domain (used by malware)"),
        ("127.0.1.106", "an abused legitimate domain (hosting botnet C&C)"),
        ("127.0.1.255", "an IP address was queried against the DBL, which lists domains only"),
    ),
    site=_SPAMHAUS_SITE,
)
# Barracuda Central's BRBL usage notes (barracudacentral.org/rbl): 127.0.0.2, IPv4 only;
# it answers only resolvers registered with it (others get no answer: unusable).
BARRACUDA = Blocklist(
    "Barracuda BRBL",
    "b.barracudacentral.org",
    "ip",
    ("127.0.0.2",),
    meanings=(("127.0.0.2", "listed by Barracuda's reputation system"),),
    site="https://www.barracudacentral.org/rbl/removal-request",
    ipv6=False,
)
# SpamCop's blocking list page (spamcop.net/bl.shtml): 127.0.0.2, IPv4 only; entries
# expire by themselves once the reports stop.
SPAMCOP = Blocklist(
    "SpamCop",
    "bl.spamcop.net",
    "ip",
    ("127.0.0.2",),
    meanings=(("127.0.0.2", "reported by SpamCop users or spam traps"),),
    site="https://www.spamcop.net/bl.shtml",
    ipv6=False,
)
# UCEPROTECT (uceprotect.net): level 1 lists single IPs that hit its traps; 127.0.0.2.
# Known, not a default: add "dnsbl-1.uceprotect.net" to use it.
UCEPROTECT = Blocklist(
    "UCEPROTECT Level 1",
    "dnsbl-1.uceprotect.net",
    "ip",
    ("127.0.0.2",),
    meanings=(("127.0.0.2", "the IP sent mail to UCEPROTECT's spam traps"),),
    site="https://www.uceprotect.net/en/rblcheck.php",
    ipv6=False,
)

DEFAULT_BLOCKLISTS: tuple[Blocklist, ...] = (ZEN, DBL, BARRACUDA, SPAMCOP)
KNOWN_BLOCKLISTS: tuple[Blocklist, ...] = (*DEFAULT_BLOCKLISTS, UCEPROTECT)
_KNOWN = {bl.zone: bl for bl in KNOWN_BLOCKLISTS}
# Spamhaus Data Query Service: <key>.zen.dq.spamhaus.net answers like zen.spamhaus.org.
_DQS = {"zen": ZEN, "dbl": DBL}
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")


# ---------------------------------------------------------------------- configuration


def known(zone: str) -> Blocklist | None:
    """The rules of a list we know (also a Spamhaus DQS key zone), renamed to ``zone``."""
    if zone in _KNOWN:
        return _KNOWN[zone]
    labels = zone.split(".")
    if len(labels) == 5 and labels[2:] == ["dq", "spamhaus", "net"] and labels[1] in _DQS:
        template = _DQS[labels[1]]
        return replace(template, name=f"{template.name} (DQS)", zone=zone)
    return None


def _zone(text: str) -> str:
    zone = text.strip().lower().rstrip(".")
    if not zone:
        raise ValueError("empty zone")
    if len(zone) > 253 or not all(_LABEL.match(label) for label in zone.split(".")):
        raise ValueError(f"{zone!r} is not a DNS zone name")
    return zone


def _code(text: str) -> str:
    try:
        code = ipaddress.IPv4Address(text.strip())
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not an IPv4 return code") from None
    if code not in LOOPBACK:  # RFC 5782 §2.1: return codes, conventionally 127.0.0.2
        raise ValueError(f"return code {code} is not in 127.0.0.0/8")
    return str(code)


def parse_blocklist(entry: str) -> Blocklist:
    """``[ip:|domain:]ZONE[=CODE,...]`` → Blocklist. A zone we know keeps its rules
    (kind, codes, meanings) unless codes are given; any other zone is an IP list that
    counts every 127.0.0.0/8 answer but the refusal codes."""
    spec, eq, codes_text = entry.strip().partition("=")
    kind_text, colon, zone_text = spec.rpartition(":")
    kind_text = kind_text.strip().lower()
    if colon and kind_text not in ("ip", "domain"):
        raise ValueError(f"kind {kind_text!r} is not 'ip' or 'domain'")
    zone = _zone(zone_text)
    codes = tuple(_code(c) for c in codes_text.split(",")) if eq else ()
    base = known(zone)
    kind: Kind = "domain" if kind_text == "domain" else "ip"
    if base is None:
        return Blocklist(zone, zone, kind, codes)
    if colon and kind != base.kind:
        raise ValueError(f"{zone} lists {base.kind}s, not {kind}s")
    return replace(base, listed=codes or base.listed)


def parse_blocklists(entries: list[str]) -> tuple[Blocklist, ...]:
    """The ``reputation.blocklists`` config key → Blocklists (duplicates dropped).
    Raises ValueError naming the bad entry. An empty list gives () — the check then
    uses DEFAULT_BLOCKLISTS."""
    out: dict[tuple[str, str], Blocklist] = {}
    for entry in entries:
        try:
            bl = parse_blocklist(entry)
        except ValueError as exc:
            raise ValueError(f"blocklist entry {entry!r}: {exc}") from None
        out.setdefault((bl.kind, bl.zone), bl)
    return tuple(out.values())


# ---------------------------------------------------------------------- the protocol


def query_name(item: str, bl: Blocklist) -> str:
    """The name to look ``item`` up at in ``bl`` (RFC 5782), without the final dot."""
    if bl.kind == "domain":
        return f"{_domain_item(item)}.{bl.zone}"
    ip = ipaddress.ip_address(item)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv4Address):
        # RFC 5782 §2.1: the octets reversed, then the zone: 192.0.2.99 → 99.2.0.192.<zone>
        return ".".join(reversed(str(ip).split("."))) + f".{bl.zone}"
    # RFC 5782 §2.4: "a 32-component hex nibble-reversed IPv6 address" + the zone
    return ".".join(reversed(ip.exploded.replace(":", ""))) + f".{bl.zone}"


def _domain_item(item: str) -> str:
    name = item.strip().lower().rstrip(".")
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name  # RFC 5782 §2.2: the domain itself, then the zone
    raise ValueError(f"{item} is an IP address, not a domain")


def _canonical(answer: str) -> str:
    try:
        return str(ipaddress.ip_address(answer.strip()))
    except ValueError:
        return answer.strip()


def _in_loopback(code: str) -> bool:
    try:
        return ipaddress.ip_address(code) in LOOPBACK
    except ValueError:
        return False


def refusal(bl: Blocklist, code: str) -> str:
    """Why ``code`` is a refusal of our query, or "" if it is not one."""
    if code in bl.refused:
        return bl.meaning(code) or "the list refuses the query"
    if code in REFUSED_CODES:
        return REFUSED_CODES[code]
    if _in_loopback(code) and ipaddress.ip_address(code) in ERROR_RANGE:
        return "an error code (127.255.255.0/24 is Spamhaus's error range), not a listing"
    return ""


def is_listing(bl: Blocklist, code: str) -> bool:
    if bl.listed:
        return code in bl.listed
    return _in_loopback(code) and not refusal(bl, code)


def interpret(bl: Blocklist, answers: tuple[str, ...], txt: str | None = None) -> Listing:
    """Decide what the A records at a query name say (``txt``: the TXT record there)."""
    reason = txt or ""
    codes = tuple(dict.fromkeys(_canonical(a) for a in answers))
    if not codes:  # RFC 5782 §2.1: every entry has an A record; none is "not listed"
        return Listing("clean")
    listed = tuple(c for c in codes if is_listing(bl, c))
    if listed:
        meaning = " and ".join(f"{c} ({m})" if (m := bl.meaning(c)) else c for c in listed)
        return Listing("listed", listed, meaning, reason)
    refused = tuple(c for c in codes if refusal(bl, c))
    if refused:
        return Listing("refused", refused, "; ".join(refusal(bl, c) for c in refused), reason)
    return Listing("unexpected", codes, _unexpected(bl, codes), reason)


def _unexpected(bl: Blocklist, codes: tuple[str, ...]) -> str:
    shown = ", ".join(codes)
    if all(_in_loopback(c) for c in codes):
        return f"answered {shown}, a code {bl.name} does not document as a listing"
    # RFC 5782 §2.1: the A record is a code, "MUST NOT be used as an IP address"; a
    # routable address is the resolver's own answer to a name that does not exist.
    return (
        f"answered {shown}, which is not a 127.0.0.0/8 return code: the resolver rewrites "
        "answers for names that do not exist, so it cannot be used for blocklist lookups"
    )
