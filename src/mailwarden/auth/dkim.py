"""DKIM (RFC 6376) verification and signing with dkimpy; keys come from our async Resolver.

dkimpy looks keys up synchronously, so verification goes in three steps: the
DKIM-Signature fields are parsed here (pure), every key record is fetched through the
Resolver, and dkimpy then verifies all signatures in one worker thread
(``asyncio.to_thread``) with a DNS function that only reads the prefetched map.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailwarden.auth import dkimpy_speedups
from mailwarden.core.errors import DnsError
from mailwarden.core.headers import read_headers
from mailwarden.dns.resolver import Resolver

dkimpy_speedups.install()

HeaderList = Sequence[tuple[str, str]]
KeyAnswer = str | None | DnsError  # a key record, no record, or a temporary DNS failure

MAX_SIGNATURES = 10  # signatures verified per message; more are ignored (hostile mail)
FUTURE_SLOP = 36_000  # seconds a t= may lie in the future (dkimpy's own allowance)
MIN_RSA_BITS = 1024  # RFC 8301 §3.2
ALGORITHMS = ("rsa-sha256", "ed25519-sha256", "rsa-sha1")  # RFC 6376 §3.3, RFC 8463
REQUIRED = ("v", "a", "b", "bh", "d", "h", "s")  # RFC 6376 §3.5

# dkimpy logs every failed signature at ERROR; our results carry the reasons instead.
DKIMPY_LOG = logging.getLogger("mailwarden.auth.dkimpy")
DKIMPY_LOG.setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class DkimResult:
    result: str  # pass|fail|neutral|temperror|permerror|none
    domain: str
    selector: str
    algorithm: str
    header_b: str  # first 8 characters of b=
    reason: str


@dataclass(frozen=True, slots=True)
class DkimSignature:
    domain: str
    selector: str
    algorithm: str
    b: str  # without whitespace
    signed: tuple[str, ...]
    timestamp: int | None
    expiration: int | None

    @property
    def key_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"  # RFC 6376 §3.6.2.1


class DkimSyntaxError(ValueError):
    pass


# ---------------------------------------------------------------- signature parsing
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_WSP = re.compile(r"\s+")
_WSP_B = re.compile(rb"\s+")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_DOMAIN = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_-]{1,63})*")
_CANON = re.compile(r"(simple|relaxed)(/(simple|relaxed))?")


def parse_tag_list(value: str) -> dict[str, str]:
    """RFC 6376 §3.2 tag=value list; whitespace around tags and values is dropped."""
    tags: dict[str, str] = {}
    specs = value.split(";")
    if specs and not specs[-1].strip():
        specs.pop()  # a trailing ";" is allowed
    for spec in specs:
        name, sep, val = spec.partition("=")
        name = name.strip()
        if not sep or not _TAG_NAME.fullmatch(name):
            raise DkimSyntaxError(f"invalid tag-spec {spec.strip()[:40]!r}")
        if name in tags:
            raise DkimSyntaxError(f"duplicate tag {name}=")  # RFC 6376 §3.2
        tags[name] = val.strip()
    return tags


def _b64(tags: Mapping[str, str], name: str) -> str:
    value = _WSP.sub("", tags[name])
    if not _BASE64.fullmatch(value) or len(value) % 4:
        raise DkimSyntaxError(f"{name}= is not base64")
    return value


def _number(tags: Mapping[str, str], name: str) -> int | None:
    value = tags.get(name)
    if value is not None and not (value.isdigit() and value.isascii() and len(value) <= 12):
        raise DkimSyntaxError(f"{name}= is not a number")
    return None if value is None else int(value)


def _check_tags(tags: Mapping[str, str], domain: str) -> None:
    """RFC 6376 §3.5 tag rules beyond presence."""
    if tags["v"] != "1":
        raise DkimSyntaxError(f"unsupported v={tags['v'][:10]}")
    if tags["a"].lower() not in ALGORITHMS:
        raise DkimSyntaxError(f"unknown algorithm a={tags['a'][:20]}")
    if not _CANON.fullmatch(tags.get("c", "simple").lower()):
        raise DkimSyntaxError("invalid c=")
    if "q" in tags and "dns/txt" not in [q.strip() for q in tags["q"].split(":")]:
        raise DkimSyntaxError("q= does not allow dns/txt")
    auid = tags.get("i", "@" + domain).rpartition("@")[2].lower()
    if auid != domain and not auid.endswith("." + domain):
        raise DkimSyntaxError("i= is not within d=")  # RFC 6376 §3.5 "i="
    _b64(tags, "bh")
    _number(tags, "l")


def parse_signature(value: str) -> DkimSignature:
    """Parse and check one DKIM-Signature field value (RFC 6376 §3.5, §6.1.1)."""
    tags = parse_tag_list(value)
    missing = [t for t in REQUIRED if t not in tags]
    if missing:
        raise DkimSyntaxError(f"missing {', '.join(missing)}")
    domain, selector = tags["d"].lower(), _WSP.sub("", tags["s"]).lower()
    if not _DOMAIN.fullmatch(domain) or not _DOMAIN.fullmatch(selector):
        raise DkimSyntaxError("invalid d= or s=")
    if len(selector) + len(domain) > 241:  # the key name must fit in 253 octets
        raise DkimSyntaxError("key name too long")
    _check_tags(tags, domain)
    signed = tuple(h.strip().lower() for h in tags["h"].split(":"))
    if "from" not in signed:  # RFC 6376 §5.4 / §6.1.1
        raise DkimSyntaxError("From is not signed")
    t, x = _number(tags, "t"), _number(tags, "x")
    if t is not None and x is not None and x < t:
        raise DkimSyntaxError("x= is before t=")  # RFC 6376 §3.5 "x="
    return DkimSignature(domain, selector, tags["a"].lower(), _b64(tags, "b"), signed, t, x)


def _early_result(value: str, now: float) -> DkimSignature | DkimResult:
    """A parsed signature worth verifying, or the result that makes verifying pointless."""
    try:
        sig = parse_signature(value)
    except DkimSyntaxError as exc:  # RFC 8601 §2.7.1: syntax errors → neutral
        return _unparsed_result(value, f"bad signature: {exc}")
    if sig.algorithm == "rsa-sha1":
        return _result(sig, "neutral", "rsa-sha1 is not accepted (RFC 8301 §3.1)")
    if sig.expiration is not None and sig.expiration < now:
        return _result(sig, "fail", "signature expired (x=)")  # RFC 6376 §6.1.1
    if sig.timestamp is not None and sig.timestamp > now + FUTURE_SLOP:
        return _result(sig, "neutral", "signature timestamp in the future (t=)")
    return sig


def _unparsed_result(value: str, reason: str) -> DkimResult:
    try:
        tags = parse_tag_list(value)
    except DkimSyntaxError:
        tags = {}
    b = _WSP.sub("", tags.get("b", ""))
    d, s, a = (tags.get(k, "")[:253] for k in "dsa")
    return DkimResult("neutral", d.lower(), s, a.lower(), b[:8], reason)


def _result(sig: DkimSignature, result: str, reason: str) -> DkimResult:
    return DkimResult(result, sig.domain, sig.selector, sig.algorithm, sig.b[:8], reason)


# ---------------------------------------------------------------------- keys (DNS)
async def fetch_keys(resolver: Resolver, names: Iterable[str]) -> dict[str, KeyAnswer]:
    """Fetch every key record concurrently: name → TXT text, None (no key) or DnsError."""
    unique = sorted(set(names))
    answers = await asyncio.gather(*(_fetch_key(resolver, n) for n in unique))
    return dict(zip(unique, answers, strict=True))


async def _fetch_key(resolver: Resolver, name: str) -> KeyAnswer:
    try:
        answer = await resolver.query(name, "TXT")
    except DnsError as exc:
        return exc
    if not answer.records:
        return None
    # RFC 6376 §3.6.2.2: with several records the verifier may pick one; prefer a key.
    return next((r for r in answer.records if "p=" in r), answer.records[0])


def dnsfunc_for(keys: Mapping[str, KeyAnswer]) -> Callable[..., bytes | None]:
    """A dkimpy ``dnsfunc`` that answers only from prefetched keys (never touches DNS)."""
    found = {n.lower(): k.encode() for n, k in keys.items() if isinstance(k, str)}

    def lookup(name: bytes | str, timeout: int = 5) -> bytes | None:
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        return found.get(text.lower().removesuffix("."))

    return lookup


@lru_cache(maxsize=1024)
def key_problem(record: str) -> tuple[str, str] | None:
    """(result, reason) when a key record cannot be used (RFC 6376 §3.6.1), else None."""
    try:
        tags = parse_tag_list(record)
    except DkimSyntaxError as exc:
        return "permerror", f"key record: {exc}"
    if "p" not in tags:
        return "permerror", "key record has no p="
    if not _WSP.sub("", tags["p"]):
        return "permerror", "key revoked (empty p=)"  # RFC 6376 §3.6.1
    try:
        _pk, bits, ktag, _tls = dkim.evaluate_pk(b"key", record.encode())
    except Exception as exc:  # dkimpy raises KeyFormatError, binascii.Error, …
        return "permerror", f"unusable key: {exc}"
    if ktag == b"rsa" and bits < MIN_RSA_BITS:
        return "permerror", f"RSA key of {bits} bits (RFC 8301 §3.2 wants {MIN_RSA_BITS})"
    return None


# ---------------------------------------------------------------------- verification
def _verify_all(
    message: bytes, jobs: Sequence[tuple[int, DkimSignature]], keys: Mapping[str, KeyAnswer]
) -> list[tuple[str, str]]:
    """Worker thread: one dkimpy parse of the message, then each signature in turn."""
    try:
        verifier = dkim.DKIM(message, logger=DKIMPY_LOG, minkey=MIN_RSA_BITS)
    except Exception as exc:  # dkimpy raises MessageFormatError (and worse) on junk
        return [("permerror", f"message not parseable for DKIM: {exc}")] * len(jobs)
    raw = [_WSP_B.sub(b"", v) for n, v in verifier.headers if n.lower() == b"dkim-signature"]
    lookup = dnsfunc_for(keys)
    out: list[tuple[str, str]] = []
    for idx, sig in jobs:
        if idx >= len(raw) or sig.b.encode() not in raw[idx]:  # both parsers must agree
            out.append(("permerror", "signature field not found by the verifier"))
        else:
            out.append(key_problem(str(keys[sig.key_name])) or _run_dkimpy(verifier, idx, lookup))
    return out


def _run_dkimpy(
    verifier: dkim.DKIM, idx: int, lookup: Callable[..., bytes | None]
) -> tuple[str, str]:
    try:
        ok = verifier.verify(idx=idx, dnsfunc=lookup)
    except dkim.ValidationError as exc:  # dkimpy's way of reporting a body hash mismatch
        if "body hash" in str(exc):
            return "fail", "body hash did not verify"
        return "neutral", str(exc)
    except Exception as exc:  # KeyFormatError, MessageFormatError, arithmetic on junk …
        return "permerror", f"verifier: {exc}"
    return ("pass", "signature verified") if ok else ("fail", "signature did not verify")


def _final(
    idx: int,
    item: DkimSignature | DkimResult,
    keys: Mapping[str, KeyAnswer],
    done: dict[int, tuple[str, str]],
) -> DkimResult:
    if isinstance(item, DkimResult):
        return item
    key = keys[item.key_name]
    if isinstance(key, DnsError):  # RFC 6376 §6.1.2: TEMPFAIL
        return _result(item, "temperror", f"key lookup {item.key_name}: {key}")
    if key is None:  # RFC 6376 §6.1.2: PERMFAIL (no key for signature)
        return _result(item, "permerror", f"no key at {item.key_name}")
    return _result(item, *done[idx])


async def verify_dkim(
    resolver: Resolver,
    message: bytes,
    *,
    headers: HeaderList | None = None,
    now: float | None = None,
) -> list[DkimResult]:
    """One result per DKIM-Signature (the first MAX_SIGNATURES), [] when there is none.

    ``headers`` (from ``read_headers``) spares a second header parse. Never raises on
    hostile input; the cryptography runs in a worker thread.
    """
    fields = read_headers(message) if headers is None else headers
    values = [v for n, v in fields if n.lower() == "dkim-signature"][:MAX_SIGNATURES]
    if not values:
        return []
    clock = time.time() if now is None else now
    items = [_early_result(v, clock) for v in values]
    keys = await fetch_keys(resolver, [s.key_name for s in items if isinstance(s, DkimSignature)])
    jobs = [
        (i, s)
        for i, s in enumerate(items)
        if isinstance(s, DkimSignature) and isinstance(keys[s.key_name], str)
    ]
    done: dict[int, tuple[str, str]] = {}
    if jobs:
        verdicts = await asyncio.to_thread(_verify_all, message, jobs, keys)
        done = {i: v for (i, _s), v in zip(jobs, verdicts, strict=True)}
    return [_final(i, item, keys, done) for i, item in enumerate(items)]


# ---------------------------------------------------------------------------- signing
@lru_cache(maxsize=64)
def _dkimpy_private_key(pem: bytes, algorithm: str) -> bytes:
    """dkimpy wants PKCS#1 PEM for RSA and, for Ed25519, the base64 of the raw 32-byte
    private key (seed), not PEM; convert from any PEM that ``cryptography`` loads."""
    key = serialization.load_pem_private_key(pem, password=None)
    if algorithm == "ed25519-sha256" and isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return base64.b64encode(raw)
    if algorithm == "rsa-sha256" and isinstance(key, rsa.RSAPrivateKey):
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    raise ValueError(f"a {type(key).__name__} cannot sign {algorithm}")


def sign(
    message: bytes,
    selector: str,
    domain: str,
    private_key_pem: bytes,
    algorithm: str = "rsa-sha256",
    headers: Sequence[str] | None = None,
) -> bytes:
    """The DKIM-Signature header field (CRLF-terminated) to prepend to ``message``.

    relaxed/relaxed (RFC 6376 §3.4), ``algorithm`` "rsa-sha256" or "ed25519-sha256"
    (RFC 8463). ``headers`` defaults to dkimpy's list of present RFC 6376 §5.4.1 fields;
    From is always listed once more than it occurs (over-signing, RFC 6376 §8.15).
    Raises ValueError on a bad key or a message without From.
    """
    key = _dkimpy_private_key(private_key_pem, algorithm)
    signer = dkim.DKIM(message, logger=DKIMPY_LOG, signature_algorithm=algorithm.encode())
    if headers is None:
        include = [h.lower() for h in signer.default_sign_headers()]
    else:
        include = [h.lower().encode() for h in headers if h.lower() != "from"]
        present = sum(1 for n, _v in signer.headers if n.lower() == b"from")
        include += [b"from"] * (present + 1)
    try:
        signature: bytes = signer.sign(
            selector.encode(),
            domain.encode(),
            key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=include,
        )
    except dkim.DKIMException as exc:
        raise ValueError(str(exc)) from exc
    return signature


def dkim_txt_record(key_pem: bytes) -> str:
    """The ``selector._domainkey`` TXT value for a key pair, from its private or public PEM.

    RSA publishes the DER SubjectPublicKeyInfo (RFC 6376 §3.6.1); Ed25519 publishes the
    raw 32-byte public key (RFC 8463 §4), both base64.
    """
    if b"PRIVATE KEY" in key_pem:
        public = serialization.load_pem_private_key(key_pem, password=None).public_key()
    else:
        public = serialization.load_pem_public_key(key_pem)
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
    if isinstance(public, rsa.RSAPublicKey):
        der = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
    raise ValueError(f"no DKIM key type for {type(public).__name__}")
