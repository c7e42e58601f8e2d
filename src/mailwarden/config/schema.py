"""The configuration schema. Every key is documented here; docs/config.md is generated from it."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mailwarden.core.address import normalize_domain
from mailwarden.delivery.transports import parse_transport
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


class DeliverySettings(_Strict):
    """The outbound queue and its SMTP client."""

    transports: dict[str, str] = Field(
        default_factory=dict,
        description="Recipient domain (or * for all others) → next hop URL, instead of MX: "
        "smtp://host[:port], smtp+starttls://user:pass@host:587, smtps://user:pass@host:465.",
    )
    mx_port: int = Field(
        25, ge=1, le=65535, description="Port for delivery to MX hosts (25; change for tests)."
    )
    helo_name: str = Field("", description="Name sent in EHLO. Empty: hostname.")
    source_address: str = Field(
        "", description="Local IP to send from (must match SPF and PTR). Empty: any."
    )
    source_addresses: list[str] = Field(
        default_factory=list,
        description="Several local IPs to send from (each must match SPF and PTR); each "
        "gets its own lanes and warm-up, and mail over a cold IP's warm-up cap goes out "
        "from a warm one. Overrides source_address.",
    )
    concurrency: int = Field(50, ge=1, description="Outbound SMTP sessions at once, in total.")
    per_destination: int = Field(
        10, ge=1, description="Outbound SMTP sessions at once to one destination domain."
    )
    # RFC 5321 §4.5.3.1.8: a client may send at most 100 RCPT per transaction.
    max_rcpts_per_transaction: int = Field(
        50, ge=1, le=1000, description="Recipients per SMTP transaction."
    )
    connect_timeout: float = Field(30.0, gt=0, description="Seconds to connect and get a greeting.")
    # RFC 5321 §4.5.3.2: 5 min for most replies, 10 min after the final dot.
    command_timeout: float = Field(300.0, gt=0, description="Seconds to wait for a reply.")
    reuse_idle: float = Field(
        5.0, ge=0, description="Seconds an idle outbound connection is kept for reuse."
    )
    retry_initial: float = Field(
        300.0, gt=0, description="Seconds before the first retry after a temporary failure."
    )
    retry_max: float = Field(14_400.0, gt=0, description="Longest wait between retries.")
    retry_factor: float = Field(2.0, ge=1, description="Each wait is this times the last.")
    max_lifetime: float = Field(
        432_000.0, gt=0, description="Seconds before an undeliverable message bounces (5 days)."
    )
    poll_interval: float = Field(
        1.0, gt=0, le=60, description="Seconds between looks at the queue for due work."
    )
    bounce_prefix: str = Field(
        "bounces",
        description="Local part of the VERP Return-Path (bounces+TOKEN@sender-domain).",
    )

    @field_validator("transports")
    @classmethod
    def _transports(cls, v: dict[str, str]) -> dict[str, str]:
        for key, url in v.items():
            if key != "*":
                try:
                    normalize_domain(key)
                except ValueError as exc:
                    raise ValueError(f"{key!r} is not a domain or * ({exc})") from None
            try:
                parse_transport(url)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        return v

    @field_validator("source_address")
    @classmethod
    def _source(cls, v: str) -> str:
        if v:
            ipaddress.ip_address(v)
        return v

    @field_validator("source_addresses")
    @classmethod
    def _sources(cls, v: list[str]) -> list[str]:
        for ip in v:
            ipaddress.ip_address(ip)
        if len(set(v)) != len(v):
            raise ValueError("an address is listed twice")
        return v

    @property
    def sending_ips(self) -> list[str]:
        """The configured sending IPs; empty: whatever the system picks."""
        return list(self.source_addresses) or ([self.source_address] if self.source_address else [])


class SubmissionSettings(_Strict):
    """Mail from people and apps (587, 465)."""

    relay_networks: list[str] = Field(
        default_factory=list,
        description="Client networks (CIDR) that may send without AUTH, like Postfix's "
        "mynetworks; e.g. [127.0.0.1/32] for apps on this host. Empty: AUTH is required.",
    )
    auth_failures_per_ip: int = Field(
        10, ge=1, description="Failed logins from one IP within auth_window before it is locked."
    )
    auth_failures_per_account: int = Field(
        5, ge=1, description="Failed logins for one account within auth_window before it is locked."
    )
    auth_window: float = Field(900.0, gt=0, description="Seconds failed logins are counted over.")

    @field_validator("relay_networks")
    @classmethod
    def _nets(cls, v: list[str]) -> list[str]:
        for net in v:
            ipaddress.ip_network(net, strict=False)
        return v


class ImapSettings(_Strict):
    """Mailbox access over IMAP (143 with STARTTLS, 993 with TLS)."""

    plaintext_auth_networks: list[str] = Field(
        default_factory=list,
        description="Client networks (CIDR) allowed to log in without TLS, like Dovecot's "
        "login_trusted_networks (e.g. [127.0.0.1/32] for webmail on this host). Empty: "
        "LOGIN and AUTHENTICATE only after STARTTLS or on the TLS port.",
    )
    # RFC 3501 §5.4: an autologout timer must be at least 30 minutes.
    idle_timeout: float = Field(
        1800.0, ge=1800.0, description="Seconds a logged-in session may stay silent (or in IDLE)."
    )
    login_timeout: float = Field(
        60.0, gt=0, description="Seconds a client has to log in after connecting."
    )
    command_timeout: float = Field(
        300.0, gt=0, description="Seconds to finish sending a command once it has begun."
    )
    max_line: int = Field(
        65_536, ge=8192, description="Bytes of one command line (without its literals)."
    )
    max_connections_per_ip: int = Field(
        50, ge=1, description="Concurrent IMAP sessions per client IP."
    )
    auth_failure_delay: float = Field(
        2.0, ge=0, le=30, description="Seconds before a failed login is answered."
    )
    notify_interval: float = Field(
        0.5,
        gt=0,
        le=10,
        description="Seconds between checks for mailbox changes made by other processes "
        "(workers, the CLI); changes made in the same process are seen at once.",
    )
    search_body_max: int = Field(
        1_000_000, ge=10_000, description="Characters of body text indexed per message."
    )

    @field_validator("plaintext_auth_networks")
    @classmethod
    def _nets(cls, v: list[str]) -> list[str]:
        for net in v:
            ipaddress.ip_network(net, strict=False)
        return v


class DkimSettings(_Strict):
    rotation_grace: float = Field(
        7 * 86_400.0,
        ge=0,
        description="Seconds a rotated-out selector stays published after `dkim rotate`.",
    )


class GuardrailConfig(_Strict):
    """Per-account ceilings and anomaly detection (a compromised-credential signal)."""

    hourly_limit: int = Field(5000, ge=0, description="Recipients per account per hour; 0: none.")
    daily_limit: int = Field(50000, ge=0, description="Recipients per account per day; 0: none.")
    spike_factor: float = Field(
        10.0, gt=1, description="Pause an account whose last hour exceeds this × its baseline."
    )
    spike_min: int = Field(
        500, ge=1, description="... and that sent at least this many recipients in the hour."
    )
    new_recipient_min: int = Field(
        300, ge=1, description="Pause on this many first-time recipients within an hour ..."
    )
    new_recipient_fraction: float = Field(
        0.9, gt=0, le=1, description="... that are at least this fraction of the hour's."
    )


class WarmupConfig(_Strict):
    enabled: bool = Field(
        True, description="Cap new sending domains and IPs per provider per day (warm-up)."
    )
    schedule: str = Field(
        "moderate",
        description="Warm-up schedule: moderate (14 days), conservative, aggressive, or a "
        "name from custom.",
    )
    custom: dict[str, list[int]] = Field(
        default_factory=dict, description="Named custom schedules: daily caps, day 1 first."
    )
    day_seconds: float = Field(86_400.0, gt=0, description="Length of a warm-up day (seconds).")

    @model_validator(mode="after")
    def _schedule(self) -> WarmupConfig:
        from mailwarden.reputation.policy.warmup import load_schedules

        known = load_schedules(custom=self.custom)  # checks the custom schedules
        if self.schedule not in known:
            raise ValueError(
                f"schedule: {self.schedule!r} is not one of {', '.join(sorted(known))}"
            )
        return self


class ReputationSettings(_Strict):
    """The reputation engine: per-provider lanes, AIMD rate, breakers, warm-up, guardrails."""

    enabled: bool = Field(
        True, description="Shape outbound mail per provider; false: record events only."
    )
    rules_file: str = Field(
        "", description="Extra reply-classification rules (YAML), tried before the built-in."
    )
    providers: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Extra provider MX patterns, tried first: {gmail: ['*.google.com']}.",
    )
    limits: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Per-provider limit overrides: {gmail: {messages_per_hour: 2000, "
        "connections: 5, messages_per_connection: 50, floor_per_hour: 60, cap_per_hour: 20000}}.",
    )
    aimd: dict[str, float] = Field(
        default_factory=dict,
        description="AIMD overrides: decrease, increase_after, increase_fraction, cut_cooldown, "
        "max_retry_after.",
    )
    breaker: dict[str, float | list[float]] = Field(
        default_factory=dict,
        description="Circuit-breaker overrides: complaint_rate, complaint_min_sample, "
        "bounce_rate, bounce_min_sample, block_count, backoffs (seconds), probes, forget_after.",
    )
    warmup: WarmupConfig = Field(default_factory=WarmupConfig)
    guardrails: GuardrailConfig = Field(default_factory=GuardrailConfig)
    max_token_wait: float = Field(
        5.0,
        ge=0,
        description="Seconds a delivery waits for its lane's rate before it is "
        "put back in the queue instead.",
    )
    max_hold_extension: float = Field(
        259_200.0,
        ge=0,
        description="Time held back by our own policy extends a message's lifetime by at "
        "most this many seconds (3 days).",
    )
    score_interval: float = Field(300.0, gt=0, description="Seconds between score updates.")
    score_alert_below: float = Field(
        50.0,
        ge=0,
        le=100,
        description="Alert when a sending domain's, IP's or tenant's score falls below this.",
    )
    tick: float = Field(
        5.0, gt=0, le=60, description="Seconds between breaker/warm-up evaluations and state saves."
    )
    audit_interval: float = Field(
        86_400.0,
        ge=0,
        description="Seconds between deliverability audits of every hosted domain (the "
        "first runs 30 s after start-up); 0 turns scheduled audits off.",
    )
    blocklists: list[str] = Field(
        default_factory=list,
        description="DNS blocklists the audit checks: 'ip:ZONE', 'domain:ZONE', optionally "
        "'=127.0.0.2,...' for the codes that mean listed. Empty: Spamhaus ZEN and DBL, "
        "Barracuda, SpamCop. Spamhaus refuses queries from public resolvers: use a local one.",
    )
    audit_ca_file: Path | None = Field(
        None, description="Extra CA certificates (PEM) the audit's TLS checks trust."
    )
    audit_https_port: int = Field(
        443, ge=1, le=65535, description="Port of the MTA-STS policy host (443; change for tests)."
    )

    @field_validator("blocklists")
    @classmethod
    def _blocklists(cls, v: list[str]) -> list[str]:
        from mailwarden.reputation.audit.dnsbl import parse_blocklists

        parse_blocklists(v)
        return v

    @field_validator("limits", "aimd", "breaker")
    @classmethod
    def _known(cls, v: dict[str, object], info: object) -> dict[str, object]:
        from mailwarden.reputation.overrides import check_overrides

        check_overrides(str(getattr(info, "field_name", "")), v)
        return v


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
    submission: SubmissionSettings = Field(default_factory=SubmissionSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    dkim: DkimSettings = Field(default_factory=DkimSettings)
    imap: ImapSettings = Field(default_factory=ImapSettings)
    reputation: ReputationSettings = Field(default_factory=ReputationSettings)
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
