"""A mailbox-provider simulator: fake Gmail/Microsoft/Yahoo MX servers on loopback.

A Provider is one aiosmtpd server in its own thread and event loop (like sinks.SinkServer),
bound to its own loopback IP (127.0.0.10, .11, ...) and a port: 0 picks a free one; pass
another provider's port so several share one port number, as MX hosts on port 25 would.
It accepts mail (counting it; bodies only with ``Script(keep_bodies=True)``) and behaves as
its frozen Script says; ``provider.configure(throttle_per_minute=5)`` changes the script
while it runs (each command reads it afresh). Replies are the providers' real texts, taken
from ../shared/reputation/replies/replies.yaml (see REPLIES; the documentation IPs in them
are replaced by the client's IP, ``j.doe@...`` by the recipient; Gmail's are sent multi-line
like Gmail's).

Checks at RCPT, in this order (the first that applies answers):

1. the client's IP is blocked → ``blocked`` (a reputation_block reply);
2. ``spike_defer=(W, M)`` and M recipients were admitted in the last W s → ``deferred_spike``;
3. ``throttle_per_minute=N`` and N recipients were admitted in the last 60 s → ``throttled``
   (``throttle_at="mail"`` checks at MAIL instead);
4. an unknown user (local part starts with ``unknown_prefix``, or the ``unknown_users``
   predicate) → ``unknown_user``; more than ``block_after_unknown`` of these from one IP
   within ``block_window`` s block that IP for ``block_seconds`` (RCPTs, and with
   ``block_at="greeting"`` also new connections, get the block reply);
5. otherwise the recipient is admitted (250) and counted in the rate windows.

At the greeting: more than ``max_connections`` open connections → ``too_many_connections``.
A 421 reply always closes the connection (RFC 5321 §3.8); ``throttle_disconnect=True`` also
closes after a 4xx throttle/spike reply that is not 421. Usage::

    with Simulator({"gmail": Script(throttle_per_minute=5), "yahoo": None}) as sim:
        zones = sim.zones({"gmail": ["d0.gmail.test"], "yahoo": ["d0.yahoo.test"]})
        sim.publish(dns_zones, {...})     # or: for origin, recs in zones.items(): set_zone
        ... deliver ...
        sim["gmail"].wait_for(10); sim["gmail"].stats()["replies"]["throttled"]

Run as a process (for benches): ``python tests/provsim.py --config sim.json --stats-out
stats.json`` (see ``main``).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import collections
import dataclasses
import ipaddress
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from aiosmtpd.smtp import SMTP, Envelope, Session

from mailwarden.tlsconf import generate_self_signed, server_context

PROFILES = ("gmail", "microsoft", "yahoo", "generic")
KINDS = ("throttled", "blocked", "deferred_spike", "unknown_user", "too_many_connections")
SUFFIX = "sim.test"


@dataclass(frozen=True)
class Reply:
    template: str  # the reply as replies.yaml logs it (one line; continuation prefixes kept)
    cls: str  # its class in replies.yaml
    source: str  # "replies.yaml": verbatim from the development set; else where it is from


_F = "replies.yaml"
_GMAIL_NOSUCHUSER = (
    "550 5.1.1 The email account that you tried to reach does not exist. Please try "
    "double-checking the recipient's email address for typos or unnecessary spaces. Learn "
    "more at https://support.google.com/mail/?p=NoSuchUser 41be03b00d2f7-2e5d4c3b2a1si84635"
    "2a12.402 - gsmtp"
)
_SPAMHAUS = (
    "550 5.7.1 Mail from IP 203.0.113.7 was rejected due to listing in Spamhaus SBL. For "
    "details please see http://www.spamhaus.org/query/bl?ip=203.0.113.7"
)
_MS_BUSY = "451 4.7.500 Server busy. Please try again later from [203.0.113.10]. "
_YAHOO_GL01 = (
    "421 4.7.0 [GL01] Message from (203.0.113.7) temporarily deferred - 4.16.50. Please "
    "refer to http://postmaster.yahoo.com/errors/postmaster-21.html"
)
_EXCHANGE_RATE = (
    "421 4.4.2 Message submission rate for this client has exceeded the configured limit"
)
#: profile → kind → reply. The development set has no Gmail reputation block (the Spamhaus
#: one stands in) and no Gmail unknown-user reply (Google's documented NoSuchUser text).
REPLIES: dict[str, dict[str, Reply]] = {
    "gmail": {
        "throttled": Reply(
            "450 4.2.1 The user you are trying to contact is receiving mail at a rate that "
            "prevents additional messages from being delivered. Please resend your message at "
            "a later time. If the user is able to receive mail at that time, your message will "
            "be delivered. For more information, please visit "
            "https://support.google.com/mail/?p=ReceivingRate 6a1803df08f44-6d8e2f1a0b3si102938"
            "4a6.44 - gsmtp",
            "throttled",
            _F,
        ),
        "deferred_spike": Reply(
            "450 4.2.1 The user you are trying to contact is receiving email too quickly. Please "
            "resend your message at a later time. If the user is able to receive email at that "
            "time, your message will be delivered. For more information, go to "
            "https://support.google.com/mail/?p=OverReceiveLimit. d2e1a72fcca58-72a4b3c2d1esi48"
            "57601b3a.301 - gsmtp",
            "throttled",
            _F,
        ),
        "blocked": Reply(_SPAMHAUS, "reputation_block", _F),
        "unknown_user": Reply(
            _GMAIL_NOSUCHUSER, "mailbox_unknown", "https://support.google.com/a/answer/3726730"
        ),
    },
    "microsoft": {
        "throttled": Reply(
            _MS_BUSY + "(S77714) [BL6PEPF0001AB50.namprd04.prod.outlook.com "
            "2024-07-14T14:44:43.083Z 08DCA36F7A1B2C3D]",
            "throttled",
            _F,
        ),
        "deferred_spike": Reply(_MS_BUSY + "(S77719)", "throttled", _F),
        "blocked": Reply(
            "550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP. "
            "For more information please go to https://go.microsoft.com/fwlink/?LinkID=526655 "
            "AS(7171)",
            "reputation_block",
            _F,
        ),
        "unknown_user": Reply(
            "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302). "
            "[HE1EUR01FT020.eop-EUR01.prod.protection.outlook.com 2023-09-19T15:05:34.324Z "
            "08DBB71928CA1B2C]",
            "mailbox_unknown",
            _F,
        ),
    },
    "yahoo": {
        "throttled": Reply(_YAHOO_GL01, "throttled", _F),
        "deferred_spike": Reply(_YAHOO_GL01, "throttled", _F),
        "blocked": Reply(
            "421 4.7.1 [TS03] All messages from 203.0.113.7 permanently deferred",
            "reputation_block",
            _F,
        ),
        "unknown_user": Reply(
            "554 delivery error: dd This user doesn't have a yahoo.com account "
            "(j.doe@yahoo.com) [-5] - mta1273.mail.gq1.yahoo.com",
            "mailbox_unknown",
            _F,
        ),
    },
    "generic": {
        "throttled": Reply(_EXCHANGE_RATE, "throttled", _F),
        "deferred_spike": Reply(_EXCHANGE_RATE, "throttled", _F),
        "blocked": Reply(_SPAMHAUS, "reputation_block", _F),
        "unknown_user": Reply("550 5.1.1 Sorry, user address unknown", "mailbox_unknown", _F),
    },
}
TOO_MANY_CONNECTIONS = "421 4.7.0 Too many concurrent SMTP connections"

_DOC_IP = re.compile(r"\b(?:203\.0\.113|198\.51\.100|192\.0\.2)\.\d{1,3}\b")
_JDOE = re.compile(r"\bj\.doe@[\w.-]+\w")
_CODES = re.compile(r"(\d{3})[ -](\d\.\d{1,3}\.\d{1,3}) (.*)", re.S)


def render(template: str, peer: str, rcpt: str = "", *, multiline: bool = False) -> str:
    """The reply as sent: documentation IPs → ``peer``, ``j.doe@…`` → ``rcpt``; with
    ``multiline`` wrapped as Gmail does (``450-4.2.1 …`` CRLF … ``450 4.2.1 …``)."""
    text = _DOC_IP.sub(peer, template)
    if rcpt:
        text = _JDOE.sub(rcpt, text)
    m = _CODES.fullmatch(text)
    if not multiline or m is None:
        return text
    code, enhanced, rest = m.groups()
    lines = textwrap.wrap(rest, 66, break_long_words=False, break_on_hyphens=False)
    last = len(lines) - 1
    return "\r\n".join(
        f"{code}{' ' if i == last else '-'}{enhanced} {line}" for i, line in enumerate(lines)
    )


@dataclass(frozen=True)
class Script:
    """How a provider behaves; None switches a rule off. See the module docstring."""

    profile: str = ""  # gmail|microsoft|yahoo|generic; "" = the provider's name if a profile
    throttle_per_minute: int | None = None
    throttle_at: str = "rcpt"  # or "mail"
    throttle_disconnect: bool = False
    max_connections: int | None = None
    block_after_unknown: int | None = None
    block_seconds: float = 300.0
    block_window: float = 600.0
    block_at: str = "rcpt"  # or "greeting" (RCPTs in open sessions are blocked too)
    spike_defer: tuple[float, int] | None = None  # (window seconds, max recipients in it)
    unknown_prefix: str = "unknown"
    unknown_users: Callable[[str], bool] | None = None  # address → unknown? (overrides prefix)
    replies: Mapping[str, str] = field(default_factory=dict)  # kind → template override
    keep_bodies: bool = False

    def __post_init__(self) -> None:
        if self.profile and self.profile not in PROFILES:
            raise ValueError(f"profile {self.profile!r} is not one of {PROFILES}")
        if self.throttle_at not in ("rcpt", "mail") or self.block_at not in ("rcpt", "greeting"):
            raise ValueError("throttle_at is rcpt|mail, block_at is rcpt|greeting")
        if set(self.replies) - set(KINDS):
            raise ValueError(f"replies: kinds are {KINDS}")
        if self.spike_defer is not None:
            object.__setattr__(self, "spike_defer", tuple(self.spike_defer))

    def is_unknown(self, address: str) -> bool:
        if self.unknown_users is not None:
            return self.unknown_users(address)
        return address.rpartition("@")[0].lower().startswith(self.unknown_prefix.lower())


@dataclass(frozen=True)
class Accepted:
    mail_from: str
    rcpts: list[str]
    data: bytes
    peer: str


class _ProvSMTP(SMTP):
    def __init__(self, prov: Provider) -> None:
        super().__init__(
            prov._handler,
            hostname=prov.hostname,
            ident="ESMTP",
            tls_context=prov._tls,
            timeout=60,
            auth_require_tls=True,
            loop=asyncio.get_running_loop(),
        )
        self.prov = prov
        self.greeted = False
        self.close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None
        super().connection_made(transport)
        if first:
            self.prov._opened(self)

    def connection_lost(self, error: Exception | None) -> None:
        self.prov._closed(self)
        super().connection_lost(error)

    @property
    def ip(self) -> str:
        peer = self.session.peer if self.session is not None else None
        return str(peer[0]) if peer else ""

    async def push(self, status: str | bytes) -> None:
        if self.transport is None:
            return
        if not self.greeted:
            self.greeted = True
            refusal = self.prov._greeting(self)
            if refusal:
                status, self.close_after = refusal, True
        await super().push(status)
        text = status.decode() if isinstance(status, bytes) else status
        if self.close_after or text.startswith("421"):  # RFC 5321 §3.8: 421 then close
            self.close_after = False
            self.transport.close()


class _Handler:
    def __init__(self, prov: Provider) -> None:
        self.prov = prov

    async def handle_EHLO(
        self, server: _ProvSMTP, session: Session, envelope: Envelope, name: str, lines: Any
    ) -> list[str]:
        session.host_name = name
        return list(lines)

    async def handle_MAIL(
        self, server: _ProvSMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        refusal = self.prov._mail(server)
        if refusal:
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(
        self, server: _ProvSMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        refusal = self.prov._rcpt(server, address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: _ProvSMTP, session: Session, envelope: Envelope) -> str:
        self.prov._deliver(server, envelope)
        return "250 2.0.0 OK queued"


class Provider:
    """One simulated mailbox provider's MX server (see the module docstring)."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int = 0,
        *,
        script: Script | None = None,
        hostname: str = "",
        tls: bool = False,
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError("providers only listen on loopback addresses")
        self.name, self.host, self.port = name, host, port
        self.hostname = hostname or f"mx1.{name}.{SUFFIX}"
        self.script = script or Script()
        self._cond = threading.Condition()
        self._live: set[_ProvSMTP] = set()
        self._handler = _Handler(self)
        self._dir: Path | None = None
        self._tls = None
        if tls:
            self._dir = Path(tempfile.mkdtemp(prefix="provsim-"))
            generate_self_signed(self.hostname, self._dir / "cert.pem", self._dir / "key.pem")
            self._tls = server_context(self._dir / "cert.pem", self._dir / "key.pem")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.reset_counters(state=True)

    @property
    def profile(self) -> str:
        return self.script.profile or (self.name if self.name in PROFILES else "generic")

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> Provider:
        self._thread.start()
        try:
            self._server = self._call(self._listen())
        except BaseException:
            self.stop()
            raise
        return self

    async def _listen(self) -> asyncio.Server:
        server = await self._loop.create_server(lambda: _ProvSMTP(self), self.host, self.port)
        self.port = int(server.sockets[0].getsockname()[1])
        return server

    def stop(self) -> None:
        if self._server is not None:
            self._call(self._shutdown())
            self._server = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if not self._loop.is_closed():
            self._loop.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        for proto in list(self._live):
            for transport in (proto.transport, proto._original_transport):
                if transport is not None:
                    transport.abort()
        await self._server.wait_closed()
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0.01)  # let transports finish closing

    def _call(self, coro: Any, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def __enter__(self) -> Provider:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- script and counters ---------------------------------------------------------
    def configure(self, **changes: Any) -> Script:
        """Replace fields of the script while the provider runs."""
        with self._cond:
            self.script = dataclasses.replace(self.script, **changes)
            return self.script

    def reset_counters(self, *, state: bool = False) -> None:
        """Zero the counters and forget accepted mail; ``state=True`` also forgets the rate
        windows, unknown-user history and blocks."""
        with self._cond:
            self.accepted = self.messages = self.connections = self.transactions = 0
            self.peak_connections = len(self._live)
            self.replies: collections.Counter[str] = collections.Counter()
            self.addresses: collections.Counter[str] = collections.Counter()
            self.unknown_addresses: collections.Counter[str] = collections.Counter()
            self.times: list[float] = []
            self.received: list[Accepted] = []
            if state:
                self._minute: collections.deque[float] = collections.deque()
                self._spike: collections.deque[float] = collections.deque()
                self._unknown: dict[str, collections.deque[float]] = {}
                self._blocked: dict[str, float] = {}

    def wait_for(self, count: int, timeout: float = 5.0) -> int:
        """Block until ``count`` recipients were accepted; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.accepted < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self.name}: {self.accepted} accepted, want {count}")
                self._cond.wait(left)
            return self.accepted

    def stats(self, *, detail: bool = True) -> dict[str, Any]:
        """A snapshot as plain data; ``detail`` adds every address and acceptance time."""
        with self._cond:
            times = list(self.times)
            out: dict[str, Any] = {
                "name": self.name,
                "profile": self.profile,
                "host": self.host,
                "port": self.port,
                "accepted": self.accepted,
                "unique": len(self.addresses),
                "duplicates": self.accepted - len(self.addresses),
                "messages": self.messages,
                "connections": self.connections,
                "transactions": self.transactions,
                "live_connections": len(self._live),
                "peak_connections": self.peak_connections,
                "replies": {k: self.replies[k] for k in KINDS},
                "unknown_rejected": len(self.unknown_addresses),
                "blocked_ips": sorted(ip for ip, t in self._blocked.items() if t > _now()),
                "first_accept": times[0] if times else None,
                "last_accept": times[-1] if times else None,
            }
            if detail:
                out["accepted_addresses"] = dict(self.addresses)
                out["unknown_addresses"] = sorted(self.unknown_addresses)
                out["accept_times"] = times
        out["per_minute"] = per_minute(times)
        out["peak_per_minute"] = peak_in_window(times, 60.0)
        return out

    # -- the rules (called on the provider's loop) ------------------------------------
    def _reply(self, kind: str, server: _ProvSMTP, rcpt: str = "") -> str:
        self.replies[kind] += 1
        s = self.script
        if kind == "too_many_connections":
            return s.replies.get(kind, TOO_MANY_CONNECTIONS)
        template = s.replies.get(kind) or REPLIES[self.profile][kind].template
        text = render(template, server.ip, rcpt, multiline=self.profile == "gmail")
        if kind in ("throttled", "deferred_spike") and s.throttle_disconnect:
            server.close_after = True
        return text

    def _opened(self, server: _ProvSMTP) -> None:
        with self._cond:
            self.connections += 1
            self._live.add(server)

    def _closed(self, server: _ProvSMTP) -> None:
        with self._cond:
            self._live.discard(server)

    def _greeting(self, server: _ProvSMTP) -> str:
        with self._cond:
            s = self.script
            if s.block_at == "greeting" and self._is_blocked(server.ip):
                refusal = self._reply("blocked", server)
            elif s.max_connections is not None and len(self._live) > s.max_connections:
                refusal = self._reply("too_many_connections", server)
            else:
                self.peak_connections = max(self.peak_connections, len(self._live))
                return ""
            self._live.discard(server)  # on its way out: not counted against others
            return refusal

    def _mail(self, server: _ProvSMTP) -> str:
        with self._cond:
            self.transactions += 1
            s = self.script
            if s.throttle_at == "mail" and s.throttle_per_minute is not None:
                _prune(self._minute, 60.0)
                if len(self._minute) >= s.throttle_per_minute:
                    return self._reply("throttled", server)
            return ""

    def _rcpt(self, server: _ProvSMTP, address: str) -> str:
        with self._cond:
            s, now = self.script, _now()
            if self._is_blocked(server.ip):
                return self._reply("blocked", server, address)
            _prune(self._minute, 60.0)
            if s.spike_defer is not None:
                _prune(self._spike, s.spike_defer[0])
                if len(self._spike) >= s.spike_defer[1]:
                    return self._reply("deferred_spike", server, address)
            limit = s.throttle_per_minute
            if s.throttle_at == "rcpt" and limit is not None and len(self._minute) >= limit:
                return self._reply("throttled", server, address)
            if s.is_unknown(address):
                self.unknown_addresses[address] += 1
                self._note_unknown(server.ip, now)
                return self._reply("unknown_user", server, address)
            self._minute.append(now)
            self._spike.append(now)
            return ""

    def _note_unknown(self, ip: str, now: float) -> None:
        s = self.script
        seen = self._unknown.setdefault(ip, collections.deque())
        seen.append(now)
        _prune(seen, s.block_window)
        if s.block_after_unknown is not None and len(seen) > s.block_after_unknown:
            self._blocked[ip] = now + s.block_seconds
            seen.clear()

    def _is_blocked(self, ip: str) -> bool:
        return self._blocked.get(ip, 0.0) > _now()

    def _deliver(self, server: _ProvSMTP, envelope: Envelope) -> None:
        wall = time.time()
        with self._cond:
            self.messages += 1
            for rcpt in envelope.rcpt_tos:
                self.accepted += 1
                self.addresses[rcpt] += 1
                self.times.append(wall)
            if self.script.keep_bodies:
                data = bytes(envelope.original_content or b"")
                rcpts = list(envelope.rcpt_tos)
                self.received.append(Accepted(envelope.mail_from or "", rcpts, data, server.ip))
            self._cond.notify_all()


def _now() -> float:
    return time.monotonic()


def _prune(window: collections.deque[float], seconds: float) -> None:
    edge = _now() - seconds
    while window and window[0] <= edge:
        window.popleft()


def per_minute(times: list[float]) -> list[int]:
    """Acceptances per 60-second bucket, counted from the first one."""
    if not times:
        return []
    counts = [0] * (int((times[-1] - times[0]) // 60) + 1)
    for t in times:
        counts[int((t - times[0]) // 60)] += 1
    return counts


def peak_in_window(times: list[float], seconds: float) -> int:
    """The most acceptances in any ``seconds``-long window (times sorted)."""
    best = 0
    for i, t in enumerate(times):
        best = max(best, bisect.bisect_right(times, t + seconds - 1e-9, lo=i) - i)
    return best


# ============================================================================ several


class _ZoneTarget(Protocol):
    def set_zone(self, origin: str, records: str | Iterable[str] = (), ttl: int = 1) -> int: ...


def zone_records(
    ips: Mapping[str, str],
    domains: Mapping[str, Iterable[str]],
    *,
    mx_hosts: int = 2,
    suffix: str = SUFFIX,
) -> dict[str, list[str]]:
    """Zones for tests/dnsserver.py's ``set_zone``: ``<name>.<suffix>`` with ``mxN`` A
    records → the provider's IP, and each recipient domain with MX 10, 20, ... →
    ``mxN.<name>.<suffix>`` (so ``*.<name>.<suffix>`` names the provider)."""
    out = {
        f"{n}.{suffix}": [f"mx{i} A {ip}" for i in range(1, mx_hosts + 1)] for n, ip in ips.items()
    }
    for name, doms in domains.items():
        if name not in ips:
            raise KeyError(f"no provider {name!r}")
        for dom in doms:
            out[dom] = [f"@ MX {10 * i} mx{i}.{name}.{suffix}." for i in range(1, mx_hosts + 1)]
    return out


class Simulator:
    """Several providers on consecutive loopback IPs and one shared port number."""

    def __init__(
        self,
        providers: Mapping[str, Script | str | None],
        *,
        port: int = 0,
        first_ip: str = "127.0.0.10",
        suffix: str = SUFFIX,
        tls: bool = False,
    ) -> None:
        self.port, self.suffix, self.tls = port, suffix, tls
        self.first_ip = ipaddress.ip_address(first_ip)
        self.scripts = {
            n: s if isinstance(s, Script) else Script(profile=s or "") for n, s in providers.items()
        }
        self.providers: dict[str, Provider] = {}

    def start(self) -> Simulator:
        for attempt in range(5):
            port = self.port
            try:
                for i, (name, script) in enumerate(self.scripts.items()):
                    host = str(self.first_ip + i)
                    hostname = f"mx1.{name}.{self.suffix}"
                    prov = Provider(
                        name, host, port, script=script, hostname=hostname, tls=self.tls
                    )
                    self.providers[name] = prov.start()
                    port = prov.port
                self.port = port
                return self
            except OSError:
                self.stop()
                if self.port or attempt == 4:  # a fixed port is taken: nothing to retry
                    raise
        return self

    def stop(self) -> None:
        for prov in self.providers.values():
            prov.stop()
        self.providers.clear()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __getitem__(self, name: str) -> Provider:
        return self.providers[name]

    def pattern(self, name: str) -> str:
        """The MX host pattern an operator maps to this provider, e.g. *.gmail.sim.test."""
        return f"*.{name}.{self.suffix}"

    def zones(
        self, domains: Mapping[str, Iterable[str]], *, mx_hosts: int = 2
    ) -> dict[str, list[str]]:
        ips = {n: p.host for n, p in self.providers.items()}
        return zone_records(ips, domains, mx_hosts=mx_hosts, suffix=self.suffix)

    def publish(
        self,
        dns: _ZoneTarget,
        domains: Mapping[str, Iterable[str]],
        *,
        mx_hosts: int = 2,
        ttl: int = 300,
    ) -> dict[str, list[str]]:
        """Write the zones into a KnotServer or ZoneSet; returns them."""
        zones = self.zones(domains, mx_hosts=mx_hosts)
        for origin, records in zones.items():
            dns.set_zone(origin, records, ttl=ttl)
        return zones

    def stats(self, *, detail: bool = True) -> dict[str, dict[str, Any]]:
        return {n: p.stats(detail=detail) for n, p in self.providers.items()}

    def reset_counters(self, *, state: bool = False) -> None:
        for prov in self.providers.values():
            prov.reset_counters(state=state)


# ============================================================================ CLI


def script_from_json(data: Mapping[str, Any]) -> Script:
    fields = dict(data)
    if "spike_defer" in fields and fields["spike_defer"] is not None:
        fields["spike_defer"] = tuple(fields["spike_defer"])
    return Script(**fields)


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)  # readers never see half a file


def main(argv: list[str] | None = None) -> int:
    """Run a Simulator until SIGTERM/SIGINT. --config JSON: {"port": 0, "first_ip":
    "127.0.0.10", "suffix": "sim.test", "providers": {"gmail": {Script fields}, ...}}.
    --stats-out gets {"final": false, "time", "port", "providers": {name: stats}} every
    --interval s (without addresses and times) and, on exit, the full stats with final=true.
    """
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--config", required=True, type=Path)
    ap.add_argument("--stats-out", required=True, type=Path)
    ap.add_argument("--interval", type=float, default=1.0)
    args = ap.parse_args(argv)
    cfg = json.loads(args.config.read_text())
    scripts = {n: script_from_json(s or {}) for n, s in cfg["providers"].items()}
    stops = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)  # taken by sigtimedwait; threads inherit
    sim = Simulator(
        scripts,
        port=int(cfg.get("port", 0)),
        first_ip=cfg.get("first_ip", "127.0.0.10"),
        suffix=cfg.get("suffix", SUFFIX),
    )

    def dump(final: bool) -> None:
        data = {"final": final, "time": time.time(), "port": sim.port}
        write_json(args.stats_out, {**data, "providers": sim.stats(detail=final)})

    with sim:
        dump(False)
        where = " ".join(f"{n}={p.host}:{p.port}" for n, p in sim.providers.items())
        print(f"READY {where}", flush=True)
        while (got := signal.sigtimedwait(stops, args.interval)) is None:
            dump(False)
        print(f"stopping on signal {got.si_signo} from pid {got.si_pid}", flush=True)
        dump(True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
