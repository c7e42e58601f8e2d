"""The CAPABILITY list: exactly what this server implements, by session state."""

from __future__ import annotations

# RFC 3501 and the extensions implemented by imap/commands/ (see docs/rfc.md).
_ALWAYS = ("IMAP4rev1", "SASL-IR", "LITERAL+", "ID", "ENABLE", "IDLE")
_AUTHENTICATED = (
    "NAMESPACE",
    "UIDPLUS",
    "MOVE",
    "UNSELECT",
    "CHILDREN",
    "SPECIAL-USE",
    "CREATE-SPECIAL-USE",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "CONDSTORE",
    "QRESYNC",
    "ESEARCH",
    "SEARCHRES",
    "SORT",
    "THREAD=REFERENCES",
    "THREAD=ORDEREDSUBJECT",
    "QUOTA",
    "QUOTA=RES-STORAGE",
    "STATUS=SIZE",
    "BINARY",
)


def capabilities(
    *, authenticated: bool, tls: bool, starttls: bool, auth_allowed: bool, appendlimit: int
) -> list[str]:
    caps = list(_ALWAYS)
    if authenticated:
        caps += _AUTHENTICATED
        caps.append(f"APPENDLIMIT={appendlimit}")  # RFC 7889
        return caps
    if starttls and not tls:
        caps.append("STARTTLS")
    if auth_allowed:
        caps += ["AUTH=PLAIN", "AUTH=LOGIN"]
    else:
        caps.append("LOGINDISABLED")  # RFC 3501 §6.2.3: no LOGIN before TLS
    return caps
