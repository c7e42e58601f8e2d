"""A fast DKIM signer (RFC 6376, RFC 8463) on ``cryptography`` (OpenSSL).

dkimpy does RSA in pure Python (about 8 ms per RSA-2048 signature); OpenSSL takes about
0.3 ms. This module only signs; verification stays with dkimpy in ``auth/dkim.py``.

* relaxed/relaxed canonicalization only (RFC 6376 §3.4.2, §3.4.4); no ``l=``.
* The body is canonicalized and hashed once, and ``bh=`` is shared by all keys.
* ``sign_message`` returns one DKIM-Signature field per key, **in the order of** ``keys``
  (the first key's field comes first). Each field is CRLF-terminated and folded so that no
  line is longer than 76 characters (a d= or s= name that is longer than that cannot be
  folded). Prepend the returned bytes to the message. The signatures are independent: none
  signs another DKIM-Signature field, so their order does not matter to verifiers.
* **Input must use CRLF line endings.** A bare LF or a bare CR anywhere in the message
  raises ValueError (RFC 5322 §2.3 and RFC 5321 §2.3.8 forbid them). Guessing what a
  receiver will see after some relay has "repaired" the line endings is how signatures get
  broken, so the caller has to normalise first.
* A non-empty body without a final CRLF is canonicalized with the CRLF added first
  (RFC 6376 §3.4.4), so whitespace at the end of its last line is dropped like on every
  other line. That is the message receivers see, since SMTP ends DATA with CRLF. (Verifiers
  disagree about such an unterminated last line when it ends in whitespace: dkimpy keeps
  one SP, OpenDKIM does yet something else. With the CRLF added, all of them agree.)
* Header bytes are used as they are, 8-bit included. Obsolete folding (RFC 5322 §4.2,
  whitespace-only continuation lines) is fine. Whitespace between a field name and its
  colon (obsolete syntax, RFC 5322 §4.5.8) raises ValueError: dkimpy cannot parse such a
  field (and skips a "From :" line as an mbox separator), so no verifier would agree.
* Pure: no I/O, no clock (``t=`` comes from ``timestamp``), no awaits. Get the public
  ``selector._domainkey`` TXT value with ``mailwarden.auth.dkim.dkim_txt_record(pem)``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils

RSA_SHA256 = "rsa-sha256"  # RFC 6376 §3.3.1
ED25519_SHA256 = "ed25519-sha256"  # RFC 8463 §3
ALGORITHMS = (RSA_SHA256, ED25519_SHA256)
MIN_RSA_BITS = 1024  # RFC 8301 §3.2: signers MUST use at least 1024 bits
RSA_BITS = 2048  # RFC 8301 §3.2: signers SHOULD use at least 2048 bits
FOLD_WIDTH = 76  # RFC 5322 §2.1.1: lines SHOULD be at most 78 characters
B64_CHUNK = 4  # b= may be folded between any two base64 characters (RFC 6376 §3.5)

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

# RFC 6376 §5.4.1: the fields that SHOULD be signed, plus MIME, list and feedback fields.
DEFAULT_HEADERS: tuple[str, ...] = (
    "From", "Sender", "Reply-To", "Subject", "Date", "To", "Cc", "Message-ID",
    "In-Reply-To", "References", "MIME-Version", "Content-Type",
    "Content-Transfer-Encoding", "Content-ID", "Content-Description", "Content-Language",
    "Resent-Date", "Resent-From", "Resent-Sender", "Resent-To", "Resent-Cc",
    "Resent-Message-ID", "List-Id", "List-Help", "List-Unsubscribe", "List-Subscribe",
    "List-Post", "List-Owner", "List-Archive", "List-Unsubscribe-Post", "Feedback-ID",
    "Autocrypt", "Disposition-Notification-To",
)  # fmt: skip
# Over-signed (listed once more than they occur, even when absent) so that a field added
# later breaks the signature (RFC 6376 §8.15): the RFC 5322 §3.6 singletons, the MIME
# fields that decide how the body is shown, and one-click unsubscribe (RFC 8058 §4).
OVERSIGNED = frozenset(
    {
        "from", "sender", "reply-to", "subject", "date", "to", "cc", "message-id",
        "in-reply-to", "references", "mime-version", "content-type",
        "content-transfer-encoding", "list-unsubscribe", "list-unsubscribe-post",
    }
)  # fmt: skip
# RFC 6376 §5.4: these change in transit (or must stay secret) and are never signed.
NEVER_SIGNED = frozenset({"dkim-signature", "received", "return-path", "bcc", "resent-bcc"})

_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")  # RFC 5322 §3.6.8 ftext
_HEADER_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")  # RFC 6376 §3.5 d=, §3.1 selector


@dataclass(frozen=True)
class SigningKey:
    selector: str
    domain: str
    algorithm: str  # "rsa-sha256" | "ed25519-sha256"
    private_key: PrivateKey  # loaded once, reused for every message

    def __post_init__(self) -> None:
        for what, name in (("selector", self.selector), ("domain", self.domain)):
            if not _DOMAIN.fullmatch(name) or len(name) > 253:
                raise ValueError(f"invalid DKIM {what} {name!r}")
        if self.algorithm != _algorithm_of(self.private_key):
            raise ValueError(f"a {type(self.private_key).__name__} cannot sign {self.algorithm}")


def _algorithm_of(key: object) -> str:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return ED25519_SHA256
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA key of {key.key_size} bits (RFC 8301 §3.2: >= 1024)")
        return RSA_SHA256
    raise ValueError(f"no DKIM algorithm for a {type(key).__name__}")


def load_signing_key(selector: str, domain: str, pem: bytes) -> SigningKey:
    """Parse an unencrypted PEM private key (PKCS#8 or PKCS#1); the key type sets a=."""
    try:
        # Our keys come from our own database; the RSA consistency check costs ~40 ms.
        key = serialization.load_pem_private_key(
            pem, password=None, unsafe_skip_rsa_key_validation=True
        )
    except (TypeError, UnsupportedAlgorithm) as exc:  # encrypted, or an unknown key type
        raise ValueError(f"unusable DKIM private key: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise ValueError(f"no DKIM algorithm for a {type(key).__name__}")
    return SigningKey(selector, domain, _algorithm_of(key), key)


def generate_key(algorithm: str) -> bytes:
    """A new private key as unencrypted PKCS#8 PEM: RSA-2048 (e=65537) or Ed25519."""
    key: PrivateKey
    if algorithm == RSA_SHA256:
        key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    elif algorithm == ED25519_SHA256:
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"unknown DKIM algorithm {algorithm!r} (use one of {ALGORITHMS})")
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


# ------------------------------------------------------------------------ the message
Field = tuple[bytes, bytes]  # raw name (before the colon), raw value (CRLFs of folding kept)


def _check_line_endings(message: bytes) -> None:
    crlf = message.count(b"\r\n")
    if message.count(b"\n") != crlf or message.count(b"\r") != crlf:
        raise ValueError("message has a bare CR or LF; DKIM signing needs CRLF line endings")


def split_message(message: bytes) -> tuple[list[Field], bytes]:
    """Header fields and body (RFC 5322 §2.1: the first empty line separates them)."""
    _check_line_endings(message)
    if message.startswith(b"\r\n"):
        return [], message[2:]
    end = message.find(b"\r\n\r\n")
    if end < 0:
        return _fields(message), b""
    return _fields(message[: end + 2]), message[end + 4 :]


def _fields(head: bytes) -> list[Field]:
    fields: list[list[bytes]] = []
    for line in head.removesuffix(b"\r\n").split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):  # RFC 5322 §2.2.3 folding (obs-FWS: even WSP-only)
            if not fields:
                raise ValueError("message starts with a continuation line")
            fields[-1][1] += b"\r\n" + line
            continue
        name, colon, value = line.partition(b":")
        if not colon or not _FIELD_NAME.fullmatch(name):  # also obs-optional (§4.5.8) WSP
            raise ValueError(f"malformed header line {line[:40]!r}")
        fields.append([name, value])
    return [(name, value) for name, value in fields]


def _key(name: bytes) -> str:
    return name.lower().decode("ascii")


def _one_space(data: bytes) -> bytes:
    """Every run of WSP (SP, HTAB) becomes one SP. bytes.replace runs at C speed, where
    a regular expression costs about 1 ms per 100 KB even when it changes nothing."""
    if b"\t" in data:
        data = data.replace(b"\t", b" ")
    while b"  " in data:  # each pass halves every run
        data = data.replace(b"  ", b" ")
    return data


def relaxed_header(name: bytes, value: bytes) -> bytes:
    """RFC 6376 §3.4.2: lower-case name, unfold, WSP runs to one SP, strip the value."""
    value = _one_space(value.replace(b"\r\n", b"")).strip(b" ")
    return name.lower() + b":" + value + b"\r\n"  # (no WSP around the colon, §3.4.2)


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376 §3.4.4 relaxed body canonicalization (CRLF-only input)."""
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"  # §3.4.4: "If the body is non-empty but does not end with a CRLF"
    body = _one_space(body)  # §3.4.4 b: runs of WSP become one SP
    body = body.replace(b" \r\n", b"\r\n")  # §3.4.4 a: WSP at line ends (now one SP)
    body = body.rstrip(b"\r\n")  # §3.4.4 c: empty lines at the end (only CRLF pairs here)
    return body + b"\r\n" if body else b""  # an empty body stays empty


def body_hash(body: bytes) -> str:
    """bh= (RFC 6376 §3.7): base64 of SHA-256 over the canonical body, no l=."""
    return base64.b64encode(hashlib.sha256(relaxed_body(body)).digest()).decode("ascii")


# ---------------------------------------------------------------- header field choice
def signed_names(fields: Sequence[Field], headers: Sequence[str] | None = None) -> list[str]:
    """The h= list: each wanted field as often as it occurs, over-signed ones once more.

    Raises ValueError unless there is exactly one From (RFC 5322 §3.6, RFC 6376 §5.4).
    """
    counts: dict[str, int] = {}
    for name, _value in fields:
        counts[_key(name)] = counts.get(_key(name), 0) + 1
    if counts.get("from", 0) != 1:
        raise ValueError(f"message has {counts.get('from', 0)} From fields; DKIM needs one")
    names: list[str] = []
    for wanted in _wanted(headers):
        extra = 1 if wanted in OVERSIGNED else 0  # RFC 6376 §8.15
        names += [wanted] * (counts.get(wanted, 0) + extra)
    return names


def _wanted(headers: Sequence[str] | None) -> list[str]:
    wanted = ["from"]  # RFC 6376 §5.4: From MUST be signed
    for header in DEFAULT_HEADERS if headers is None else headers:
        name = header.strip().lower()
        if not _HEADER_NAME.fullmatch(name) or name in NEVER_SIGNED:
            raise ValueError(f"cannot sign header field {header!r}")
        if name not in wanted:
            wanted.append(name)
    return wanted


def header_data(fields: Sequence[Field], names: Sequence[str]) -> bytes:
    """The signed fields, canonicalized, in h= order (RFC 6376 §3.7, §5.4.2): a name
    listed n times takes the n bottom-most instances, bottom-most first; names listed
    beyond the instances present (over-signing) contribute nothing."""
    instances: dict[str, list[Field]] = {}
    for field in fields:
        instances.setdefault(_key(field[0]), []).append(field)
    out: list[bytes] = []
    for name in names:
        left = instances.get(name)
        if left:
            out.append(relaxed_header(*left.pop()))
    return b"".join(out)


# ------------------------------------------------------------------- the signature field
Words = list[tuple[str, str]]  # (joiner used when the word stays on the line, word)


def _fold(words: Iterable[tuple[str, str]], lines: list[str]) -> None:
    """Append words to the field in ``lines``, folding (RFC 5322 §2.2.3) with CRLF SP
    before a word that would pass FOLD_WIDTH. The SP is FWS, which RFC 6376 §3.5 allows
    between tags, after ":" in h= and inside base64 (b=)."""
    for joiner, word in words:
        if len(lines[-1]) + len(joiner) + len(word) <= FOLD_WIDTH:
            lines[-1] += joiner + word
        else:
            lines.append(" " + word)


def _list_words(tag: str, items: Sequence[str], sep: str, end: str) -> Words:
    last = len(items) - 1
    words = [("", item + (end if i == last else sep)) for i, item in enumerate(items)]
    return [(" ", tag + "=" + words[0][1]), *words[1:]]


def _b64_words(value: str) -> Words:
    """Base64 in chunks that may be folded apart (FWS inside base64, RFC 6376 §3.5 b=)."""
    return [("", value[i : i + B64_CHUNK]) for i in range(0, len(value), B64_CHUNK)]


def _tag_words(key: SigningKey, timestamp: int, names: Sequence[str], bh: str) -> Words:
    """v, a, c, d, s, t, h and bh (RFC 6376 §3.5), in that order, then an empty b=."""
    tags = (f"v=1; a={key.algorithm}; c=relaxed/relaxed; d={key.domain};"
            f" s={key.selector}; t={timestamp};")  # fmt: skip
    words: Words = [(" ", tag) for tag in tags.split(" ")]
    words += _list_words("h", names, ":", ";")
    return [*words, (" ", f"bh={bh};"), (" ", "b=")]  # bh= (44 characters) fits a line


def _sign(key: SigningKey, data: bytes) -> bytes:
    digest = hashlib.sha256(data).digest()  # RFC 6376 §3.7: the hash of the header data
    if isinstance(key.private_key, ed25519.Ed25519PrivateKey):
        return key.private_key.sign(digest)  # RFC 8463 §3: Ed25519 signs the SHA-256 hash
    # RFC 6376 §3.3.1: RSASSA-PKCS1-v1_5 with SHA-256 (the digest is already computed).
    return key.private_key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))


def _signature_field(
    key: SigningKey, signed: bytes, names: Sequence[str], bh: str, timestamp: int
) -> bytes:
    lines = ["DKIM-Signature:"]
    _fold(_tag_words(key, timestamp, names, bh), lines)
    unsigned = "\r\n".join(lines).encode("ascii")
    # RFC 6376 §3.7: the field itself, with b= empty, canonicalized and without its CRLF.
    own = relaxed_header(*unsigned.split(b":", 1))[:-2]
    b = base64.b64encode(_sign(key, signed + own)).decode("ascii")
    _fold(_b64_words(b), lines)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def sign_message(
    message: bytes,
    keys: Sequence[SigningKey],
    *,
    timestamp: int,
    headers: Sequence[str] | None = None,
) -> bytes:
    """DKIM-Signature fields (one per key, in ``keys`` order) to prepend to ``message``.

    ``headers`` replaces DEFAULT_HEADERS as the candidate fields; From is always signed.
    Raises ValueError for no or several From fields, bare CR/LF, malformed header lines,
    no keys or a negative timestamp.
    """
    if not keys:
        raise ValueError("no signing keys")
    if not isinstance(timestamp, int) or timestamp < 0:
        raise ValueError(f"t= must be a non-negative integer, not {timestamp!r}")
    fields, body = split_message(message)
    names = signed_names(fields, headers)
    signed = header_data(fields, names)
    bh = body_hash(body)  # once for all keys: every signature uses relaxed body
    return b"".join(_signature_field(k, signed, names, bh, timestamp) for k in keys)
