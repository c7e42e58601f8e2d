"""MX host names → mailbox provider ("gmail", "microsoft", ...), or the MX's own domain.

Pure: no awaits, no DNS (the caller passes the MX hosts it resolved, in preference order),
no I/O except reading the provider file once in ``ProviderMap.load``.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path

import yaml

__all__ = ["ProviderMap", "ProviderMapError", "default_provider_map", "registrable_domain"]

CACHE_SIZE = 10_000
PACKAGED_PROVIDERS = "rules/providers.yaml"
UNKNOWN = "unknown"

# Second-level labels under which registrations happen in many two-letter ccTLDs
# (co.uk, com.au, ne.jp, or.jp, gov.br, ...). An approximation of the public suffix list
# that is good enough to group MX hosts by operator.
_SECOND_LEVEL = frozenset(
    {"co", "com", "net", "org", "ac", "gov", "edu", "ne", "or", "go", "gob", "mil", "ltd", "plc"}
)
_PROVIDER_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class ProviderMapError(ValueError):
    """A provider file or mapping is malformed; the message names the bad entry."""


def _host(name: str) -> str:
    return name.strip().lower().removesuffix(".")


def registrable_domain(host: str) -> str:
    """ "mx1.mail.example.net." → "example.net", "mx.example.co.uk" → "example.co.uk";
    an IP literal is returned as it is, an empty name as "unknown"."""
    host = _host(host).strip("[]")
    if not host:
        return UNKNOWN
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    labels = host.split(".")
    keep = 3 if len(labels[-1]) == 2 and len(labels) >= 3 and labels[-2] in _SECOND_LEVEL else 2
    return ".".join(labels[-keep:])


def _parse_patterns(where: str, mapping: object) -> tuple[dict[str, str], dict[str, str]]:
    """{provider: [patterns]} → (exact host → provider, wildcard suffix → provider)."""
    if not isinstance(mapping, Mapping):
        raise ProviderMapError(f"{where}: expected a mapping of provider → host patterns")
    exact: dict[str, str] = {}
    suffixes: dict[str, str] = {}
    for provider, patterns in mapping.items():
        if not isinstance(provider, str) or not _PROVIDER_NAME.match(provider):
            raise ProviderMapError(
                f"{where}: bad provider name {provider!r} (lower case a-z0-9._-)"
            )
        if isinstance(patterns, str) or not isinstance(patterns, Sequence) or not patterns:
            raise ProviderMapError(
                f"{where}: provider {provider!r}: expected a non-empty list of host patterns, "
                f"got {patterns!r}"
            )
        for raw in patterns:
            key, table = _parse_pattern(where, provider, raw), exact
            if key.startswith("*."):
                key, table = key[2:], suffixes
            if table.get(key, provider) != provider:
                raise ProviderMapError(
                    f"{where}: provider {provider!r}: pattern {raw!r} is already "
                    f"mapped to {table[key]!r}"
                )
            table[key] = provider
    return exact, suffixes


def _parse_pattern(where: str, provider: str, raw: object) -> str:
    if not isinstance(raw, str):
        raise ProviderMapError(f"{where}: provider {provider!r}: pattern {raw!r} is not a string")
    pattern = _host(raw)
    labels = pattern.removeprefix("*.").split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise ProviderMapError(
            f"{where}: provider {provider!r}: bad host pattern {raw!r} "
            "(a host name, or '*.' and a domain for any name under it)"
        )
    return pattern


class _Table:
    """One source of patterns: exact names, and '*.' suffixes matched on label boundaries."""

    def __init__(self, exact: dict[str, str], suffixes: dict[str, str]) -> None:
        self.exact = exact
        self.suffixes = suffixes

    def lookup(self, host: str) -> str | None:
        if (found := self.exact.get(host)) is not None:
            return found
        labels = host.split(".")
        for i in range(1, len(labels) - 1):  # the longest (most specific) suffix first
            if (found := self.suffixes.get(".".join(labels[i:]))) is not None:
                return found
        return None


class ProviderMap:
    """Who runs a domain's mail, judged from its MX host names."""

    def __init__(self, tables: Sequence[_Table], *, cache_size: int = CACHE_SIZE) -> None:
        self._tables = tuple(tables)
        self._cached: Callable[[tuple[str, ...]], str] = functools.lru_cache(maxsize=cache_size)(
            self._provider_for
        )

    @classmethod
    def load(
        cls, path: Path | None = None, extra: Mapping[str, Sequence[str]] | None = None
    ) -> ProviderMap:
        """path None = packaged rules/providers.yaml ({provider: [host patterns]});
        extra = operator additions/overrides, checked first."""
        if path is None:
            packaged = resources.files("mailwarden.reputation").joinpath(PACKAGED_PROVIDERS)
            where, text = f"mailwarden.reputation/{PACKAGED_PROVIDERS}", packaged.read_text()
        else:
            where, text = str(path), path.read_text(encoding="utf-8")
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ProviderMapError(f"{where}: not valid YAML: {exc}") from None
        tables = [_Table(*_parse_patterns(where, data))]
        if extra is not None:
            tables.insert(0, _Table(*_parse_patterns("extra providers", extra)))
        return cls(tables)

    def provider_for(self, mx_hosts: Sequence[str]) -> str:
        """The provider of the first MX host (in preference order) that matches a pattern;
        else the registrable domain of the first host; "unknown" for no hosts. Cached."""
        return self._cached(tuple(mx_hosts))

    def _provider_for(self, mx_hosts: tuple[str, ...]) -> str:
        hosts = [h for h in (_host(m) for m in mx_hosts) if h]
        for host in hosts:
            for table in self._tables:
                if (found := table.lookup(host)) is not None:
                    return found
        return registrable_domain(hosts[0]) if hosts else UNKNOWN


@functools.cache
def default_provider_map() -> ProviderMap:
    """The packaged provider patterns, built once."""
    return ProviderMap.load()
