"""SPF records (RFC 7208 §4.6, §7, §12): pure parsing and macro expansion, cached.

No DNS here; ``spf.py`` evaluates parsed records against the resolver.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import quote

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}  # RFC 7208 §4.6.2


class SpfSyntaxError(ValueError):
    """The record breaks the RFC 7208 §12 grammar: check_host() returns permerror."""


@dataclass(frozen=True, slots=True)
class Mechanism:
    text: str
    qualifier: str
    kind: str  # all|include|a|mx|ptr|ip4|ip6|exists
    domain_spec: str | None = None
    cidr4: int | None = None
    cidr6: int | None = None
    network: Network | None = None


@dataclass(frozen=True, slots=True)
class SpfRecord:
    mechanisms: tuple[Mechanism, ...]
    redirect: str | None = None
    exp: str | None = None


# ------------------------------------------------------------------ macros, RFC 7208 §7
class MacroToken(NamedTuple):
    letter: str  # "" for literal text, "%" for %% %_ %-, else the macro letter as written
    text: str
    keep: int  # 0 = all parts
    reverse: bool
    delimiters: str


_MACRO = re.compile(r"%\{([A-Za-z])(\d*)([rR]?)([.\-+,/_=]*)\}|%%|%_|%-|[\x21-\x24\x26-\x7e]+| +")
_ESCAPES = {"%%": "%", "%_": " ", "%-": "%20"}  # RFC 7208 §7.2


@lru_cache(maxsize=4096)
def macro_tokens(text: str, explain: bool = False) -> tuple[MacroToken, ...]:
    """Tokenise a macro-string (or an explain-string when ``explain``); raise on bad syntax."""
    letters = "slodiphvcrt" if explain else "slodiphv"  # RFC 7208 §7.2: c r t only in exp
    out: list[MacroToken] = []
    pos = 0
    while pos < len(text):
        m = _MACRO.match(text, pos)
        if m is None or (m[0][0] == " " and not explain):
            raise SpfSyntaxError(f"invalid macro-string near {text[pos : pos + 16]!r}")
        pos = m.end()
        if m[1] is None:
            esc = _ESCAPES.get(m[0])
            out.append(MacroToken("%" if esc else "", esc or m[0], 0, False, ""))
            continue
        if m[1].lower() not in letters:
            raise SpfSyntaxError(f"macro letter {m[1]!r} not allowed here (RFC 7208 §7.2)")
        digits = m[2].lstrip("0")
        if m[2] and not digits:
            raise SpfSyntaxError("macro transformer digit must be non-zero (RFC 7208 §7.3)")
        out.append(MacroToken(m[1], "", int(digits[:6] or 0), bool(m[3]), m[4] or "."))
    return tuple(out)


def expand(tokens: tuple[MacroToken, ...], values: Mapping[str, str]) -> str:
    """RFC 7208 §7.3: substitute, split on delimiters, reverse, keep right parts, escape."""
    parts: list[str] = []
    for tok in tokens:
        if tok.letter in ("", "%"):
            parts.append(tok.text)
            continue
        pieces = re.split(f"[{re.escape(tok.delimiters)}]", values[tok.letter.lower()])
        if tok.reverse:
            pieces.reverse()
        if tok.keep:
            pieces = pieces[-tok.keep :]
        value = ".".join(pieces)
        parts.append(quote(value, safe="") if tok.letter.isupper() else value)  # §7.3 URL
    return "".join(parts)


# ------------------------------------------------------------- record parser, §4.6 / §12
_VCHARS = re.compile(r"[\x21-\x7e]+")
_MODIFIER = re.compile(r"([A-Za-z][A-Za-z0-9_.\-]*)=(.*)", re.S)
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_DUAL_CIDR = re.compile(
    r"(?::(?P<dom>.*?))?(?:/(?P<c4>0|[1-9]\d*))?(?://(?P<c6>0|[1-9]\d*))?", re.S
)
_NETWORK = re.compile(r":([0-9A-Fa-f:.]+)(?:/(0|[1-9]\d*))?")
_TOPLABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_ALPHA_OR_DASH = re.compile(r"[A-Za-z-]")


def _domain_spec(spec: str) -> str:
    """RFC 7208 §7.1: domain-spec = macro-string domain-end; domain-end is "." toplabel or
    a macro-expand. Syntax is checked before expansion, never after."""
    tokens = macro_tokens(spec)
    if not tokens:
        raise SpfSyntaxError("empty domain-spec")
    if tokens[-1].letter == "":
        _head, dot, top = tokens[-1].text.removesuffix(".").rpartition(".")
        if not (dot and _TOPLABEL.fullmatch(top) and _ALPHA_OR_DASH.search(top)):
            raise SpfSyntaxError(f"domain-spec {spec!r} does not end in a valid top label")
    return spec


def _cidr(text: str | None, maximum: int) -> int | None:
    if text is not None and int(text) > maximum:
        raise SpfSyntaxError(f"CIDR length /{text} > {maximum} (RFC 7208 §5.6)")
    return None if text is None else int(text)


def _network(kind: str, rest: str) -> Network:
    m = _NETWORK.fullmatch(rest)
    try:
        if m is None:
            raise ValueError(rest)
        addr: IP = ipaddress.IPv4Address(m[1]) if kind == "ip4" else ipaddress.IPv6Address(m[1])
    except ValueError as exc:
        raise SpfSyntaxError(f"invalid {kind} network {rest!r} (RFC 7208 §5.6)") from exc
    bits = addr.max_prefixlen
    length = _cidr(m[2], bits)
    return ipaddress.ip_network((addr, bits if length is None else length), strict=False)


def _mechanism(term: str) -> Mechanism:
    """RFC 7208 §5: one directive, [qualifier] mechanism."""
    qualifier = term[0] if term[0] in QUALIFIERS else "+"
    body = term[1:] if term[0] in QUALIFIERS else term
    m = _NAME.match(body)
    kind, rest = (m[0].lower(), body[m.end() :]) if m else ("", body)
    if kind == "all" and not rest:
        return Mechanism(term, qualifier, kind)
    if kind in ("include", "exists") and rest.startswith(":"):
        return Mechanism(term, qualifier, kind, _domain_spec(rest[1:]))
    if kind == "ptr" and (not rest or rest.startswith(":")):
        return Mechanism(term, qualifier, kind, _domain_spec(rest[1:]) if rest else None)
    if kind in ("ip4", "ip6"):
        return Mechanism(term, qualifier, kind, network=_network(kind, rest))
    cidr = _DUAL_CIDR.fullmatch(rest) if kind in ("a", "mx") else None
    if cidr is None:
        raise SpfSyntaxError(f"invalid term {term!r}")
    dom = None if cidr["dom"] is None else _domain_spec(cidr["dom"])
    return Mechanism(term, qualifier, kind, dom, _cidr(cidr["c4"], 32), _cidr(cidr["c6"], 128))


def _modifier(mods: dict[str, str], name: str, value: str) -> None:
    if name in ("redirect", "exp"):
        if name in mods:  # RFC 7208 §6: each at most once
            raise SpfSyntaxError(f"{name}= appears more than once (RFC 7208 §6)")
        mods[name] = _domain_spec(value)
    else:
        macro_tokens(value)  # RFC 7208 §6 / A: unknown modifiers are ignored but checked


@lru_cache(maxsize=4096)
def parse_record(text: str) -> SpfRecord:
    """Parse one selected SPF record (RFC 7208 §4.6, §12). Raise SpfSyntaxError."""
    terms = [t for t in text.split(" ") if t]  # §4.6.1: terms are separated by SP only
    if not terms or terms[0].lower() != "v=spf1":
        raise SpfSyntaxError("not a v=spf1 record")
    mechanisms: list[Mechanism] = []
    mods: dict[str, str] = {}
    for term in terms[1:]:
        if not _VCHARS.fullmatch(term):  # §3.1 (7-bit ASCII), §4.6.1 (no control chars)
            raise SpfSyntaxError(f"invalid characters in term {term!r}")
        mod = _MODIFIER.fullmatch(term)
        if mod:
            _modifier(mods, mod[1].lower(), mod[2])
        else:
            mechanisms.append(_mechanism(term))
    return SpfRecord(tuple(mechanisms), mods.get("redirect"), mods.get("exp"))


def is_spf_record(txt: str) -> bool:
    """RFC 7208 §4.5: "v=spf1" (any case) followed by a space or the end of the record."""
    return txt[:6].lower() == "v=spf1" and txt[6:7] in ("", " ")


_LABEL = re.compile(r"[a-z0-9_-]{1,63}")


def check_domain(domain: str) -> str | None:
    """RFC 7208 §4.3: a usable multi-label domain (lower case, A-labels), or None."""
    name = domain.strip().removesuffix(".").lower()
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or not all(_LABEL.fullmatch(x) for x in labels):
        return None
    return name


def query_name(expanded: str) -> str | None:
    """RFC 7208 §7.3: drop the trailing dot, truncate labels on the left to 253 chars.
    Names that still cannot be a DNS name (empty or long labels) are treated as absent."""
    name = expanded.removesuffix(".")
    while len(name) > 253 and "." in name:
        name = name.split(".", 1)[1]
    if not name.isascii() or len(name) > 253 or not all(0 < len(x) < 64 for x in name.split(".")):
        return None
    return name
