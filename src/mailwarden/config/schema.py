"""The configuration schema. Every key is documented here; docs/config.md is generated from it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mailwarden.core.address import normalize_domain
from mailwarden.dns.resolver import parse_nameserver


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Listener(_Strict):
    """One listening socket."""

    protocol: Literal["smtp", "submission", "imap", "http"] = Field(
        description="What is served: smtp (inbound MX), submission, imap or http."
    )
    address: str = Field("127.0.0.1", description="Address to bind (0.0.0.0 or :: for all).")
    port: int = Field(ge=0, le=65535, description="TCP port; 0 picks a free port.")
    tls: Literal["none", "starttls", "implicit"] = Field(
        "starttls",
        description="none, starttls (offered after connect) or implicit (TLS on connect).",
    )
    enabled: bool = Field(True, description="Set false to keep the listener defined but closed.")


def default_listeners() -> dict[str, Listener]:
    return {
        "mx": Listener(protocol="smtp", port=2525, tls="starttls"),
        "submission": Listener(protocol="submission", port=2587, tls="starttls"),
        "submissions": Listener(protocol="submission", port=2465, tls="implicit"),
        "imap": Listener(protocol="imap", port=2143, tls="starttls"),
        "imaps": Listener(protocol="imap", port=2993, tls="implicit"),
        "http": Listener(protocol="http", port=8025, tls="none"),
    }


class StorageSettings(_Strict):
    url: str = Field(
        "",
        description="Database URL. Empty: SQLite file mailwarden.db in data_dir (sqlite:///PATH). "
        "PostgreSQL: postgresql+asyncpg://user@host/db.",
    )
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        "FULL", description="SQLite synchronous pragma; FULL fsyncs the WAL on every commit."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v and not v.startswith(("sqlite:///", "sqlite+aiosqlite:///", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite:/// or postgresql+asyncpg://")
        return v


class TlsSettings(_Strict):
    cert: Path | None = Field(
        None, description="PEM certificate chain. Empty: data_dir/tls/cert.pem."
    )
    key: Path | None = Field(None, description="PEM private key. Empty: data_dir/tls/key.pem.")


class DnsSettings(_Strict):
    nameservers: list[str] = Field(
        default_factory=list,
        description='Resolvers as "host:port" (e.g. "127.0.0.1:53"). Empty: the system resolver.',
    )
    timeout: float = Field(
        5.0, gt=0, le=60, description="Seconds before a lookup is a temporary error."
    )
    cache: bool = Field(True, description="Cache answers for their TTL.")

    @field_validator("nameservers")
    @classmethod
    def _ns(cls, v: list[str]) -> list[str]:
        for entry in v:
            try:
                parse_nameserver(entry)
            except ValueError as exc:
                raise ValueError(f"{entry!r} is not host:port with an IP address ({exc})") from exc
        return v


class LimitSettings(_Strict):
    # RFC 5321 §4.5.3.1.7: at least 64 KB must be accepted; 25 MiB is common practice.
    max_message_size: int = Field(
        26_214_400, ge=65_536, description="Bytes; larger gets 552 5.3.4."
    )
    # RFC 5321 §4.5.3.1.8: at least 100 recipients must be accepted.
    max_recipients: int = Field(100, ge=1, description="RCPT TO per message; more gets 452 4.5.3.")
    max_connections_per_ip: int = Field(
        20, ge=1, description="Concurrent SMTP sessions per client IP."
    )
    max_connections: int = Field(1000, ge=1, description="Concurrent SMTP sessions in total.")
    # RFC 5321 §4.5.3.2.7: a server should wait at least 5 minutes for the next command.
    idle_timeout: float = Field(300.0, gt=0, description="Seconds an SMTP session may stay silent.")
    # Command lines are limited by aiosmtpd to 512 octets plus extension allowances
    # (RFC 5321 §4.5.3.1.4); a message's header section is limited here.
    max_header_size: int = Field(
        1_048_576, ge=16_384, description="Bytes of header section allowed."
    )


class InboundSettings(_Strict):
    dmarc_reject: Literal["reject", "quarantine", "accept"] = Field(
        "reject", description="What to do with mail failing DMARC under p=reject."
    )
    dmarc_quarantine: Literal["quarantine", "accept"] = Field(
        "quarantine", description="What to do with mail failing DMARC under p=quarantine (Junk)."
    )
    bare_newline: Literal["reject", "normalize"] = Field(
        "reject",
        description="Bare CR or LF in DATA (SMTP smuggling): reject with 550 5.5.2, "
        "or normalise to CRLF.",
    )
    default_quota: int = Field(
        0, ge=0, description="Default mailbox quota in bytes for new users; 0 means unlimited."
    )


class Settings(_Strict):
    hostname: str = Field(
        description="Fully-qualified host name used in banners, EHLO and Received."
    )
    data_dir: Path = Field(Path("./data"), description="Where the database, blobs and keys live.")
    storage: StorageSettings = Field(default_factory=StorageSettings)
    tls: TlsSettings = Field(default_factory=TlsSettings)
    dns: DnsSettings = Field(default_factory=DnsSettings)
    listeners: dict[str, Listener] = Field(
        default_factory=default_listeners, description="Named listeners."
    )
    limits: LimitSettings = Field(default_factory=LimitSettings)
    inbound: InboundSettings = Field(default_factory=InboundSettings)
    workers: int = Field(
        1,
        ge=0,
        le=64,
        description="Server processes sharing the listeners; 0 means one per CPU core.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level."
    )

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, v: str) -> str:
        d = normalize_domain(v)
        if "." not in d:
            raise ValueError("must be a fully-qualified domain name")
        return d

    @model_validator(mode="after")
    def _ports_unique(self) -> Settings:
        seen: dict[tuple[str, int], str] = {}
        for name, lst in self.listeners.items():
            if not lst.enabled or lst.port == 0:
                continue
            key = (lst.address, lst.port)
            if key in seen:
                raise ValueError(f"listeners.{name}: port {lst.port} already used by {seen[key]}")
            seen[key] = name
        return self

    @property
    def log_level_number(self) -> int:
        return int(getattr(logging, self.log_level))

    def resolved_data_dir(self, base: Path) -> Path:
        return self.data_dir if self.data_dir.is_absolute() else (base / self.data_dir).resolve()
