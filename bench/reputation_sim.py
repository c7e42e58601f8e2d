#!/usr/bin/env python3
"""Reputation simulation: one campaign sent through simulated Gmail/Microsoft/Yahoo MX hosts by
mailwarden (adaptive delivery) and by a plain Postfix relay. It counts the throttle and block
replies each one provokes.

Everything runs on loopback:

* **Simulator.** ``tests/provsim.py`` runs as a separate process, started fresh for each
  target with the same scripts. It runs four providers on 127.0.0.10-13, all on port
  ``--sim-port``: gmail, microsoft, yahoo and generic. They answer with real provider replies.
  The limits are worked out from ``--n`` and ``--minutes`` (default 4). A sender that keeps
  exactly to them needs about ``--minutes`` minutes, plus the yahoo block:
    - gmail (40 % of the mail): throttled (450 4.2.1) above ``0.40·n/minutes`` recipients a
      minute;
    - microsoft (25 %): throttled (451 4.7.500) above ``0.25·n/minutes`` a minute, and at most
      4 concurrent connections (421 at the greeting);
    - yahoo (20 %): a spike deferral (421 4.7.0 [GL01]) above ``0.20·n/minutes/2`` recipients
      in 30 s. After more than 60 % of its unknown recipients arrive within 10 min, it blocks
      the sending IP for 60 s (421 4.7.1 [TS03], a reputation block);
    - generic (15 %): no limits.
  Every provider rejects unknown users permanently, each with its own text.
* **Campaign.** ``--n`` messages (default 50,000), ``--size``-byte bodies (2 KB), each to its
  own recipient ``u<i>@d<k>.<provider>.test`` (k = 0..9). 1 % of them are
  ``unknown<i>@…``. The order is shuffled with a fixed seed. A built-in asyncio client
  injects them over ``--conc`` connections (10), with ``--per-conn`` messages per connection.
* **mailwarden** (``python -m mailwarden run``, fresh data dir) listens for submission on
  127.0.0.1:``--mw-port``, with ``submission.relay_networks: [127.0.0.1/32]``. It delivers by
  MX through a Knot DNS server (tests/dnsserver.py) that serves the simulator's zones:
  ``mx1``/``mx2.<provider>.sim.test``, with ``delivery.mx_port`` set to the simulator's port.
  Its retries are 10 s → 60 s, like Postfix's below, and its breaker backs off for
  90/180/360 s instead of 1/2/4 h (time is compressed). Its reputation settings are in
  ``mailwarden_reputation()`` just below. The base limits start ``--mw-factor`` (2×) ABOVE the
  simulator's thresholds, so AIMD has to find them. ``--mw-reputation off`` leaves the section
  out, to run mailwarden as it is without the engine.
* **Postfix** is a private relay instance from ../shared/bench/setup/postfix_instance.sh.
  ``transport_maps`` sends each simulated domain to ``smtp:[127.0.0.X]:PORT``, Postfix DNS is
  disabled, and bounces to the sender are discarded. Postfix is tuned for fast retry
  (minimal_backoff_time=10s, maximal_backoff_time=60s, queue_run_delay=10s); everything else
  is at its default.

Reported per target: messages delivered (unique recipients the simulator accepted),
duplicates, bounced as unknown user, lost (injected − delivered − bounced-as-unknown; must be
0), the throttle, spike, connection-limit and block replies from the simulator's counters, and
the time from the start of injection until the last deliverable message arrived. Also the
ratio of throttle+block replies, Postfix / mailwarden (target ≥ 5×).

Run as root with the project's virtualenv (``--install`` installs postfix and knot)::

    .venv/bin/python bench/reputation_sim.py                     # 50,000 messages, both targets
    .venv/bin/python bench/reputation_sim.py --only postfix --n 2000
    .venv/bin/python bench/reputation_sim.py --only mailwarden --n 2000 --json r.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests"))
import outbound as ob  # noqa: E402  (its Mailwarden target: queue_len, wait_drained)
import smtp_inbound as si  # noqa: E402  (shared harness, Postfix target, helpers)

import provsim  # noqa: E402

bl: Any = si.bl
MB_ROOT = si.MB_ROOT
BenchAbort = si.BenchAbort
log = si.log

PROVIDERS = ("gmail", "microsoft", "yahoo", "generic")
SHARES = {"gmail": 0.40, "microsoft": 0.25, "yahoo": 0.20, "generic": 0.15}
SENDER_DOMAIN = "sender.sim.test"
SENDER = f"news@{SENDER_DOMAIN}"
MW_HOSTNAME = "mta.sender.sim.test"
PF_RETRY = {"minimal_backoff_time": "10s", "maximal_backoff_time": "60s", "queue_run_delay": "10s"}
SPIKE_WINDOW = 30  # seconds: yahoo's spike window
REPLY_KINDS = ("throttled", "deferred_spike", "too_many_connections", "blocked")


# ============================================================================================
# mailwarden's reputation settings. THE ENGINE IS BEING WRITTEN: adjust the keys here.
# Base limits start `factor` times ABOVE the simulator's thresholds (AIMD has to find them);
# cap_per_hour = messages_per_hour, so AIMD probes no higher than where it started.
# The breaker's backoffs are compressed like Postfix's retry times (the campaign squeezes
# hours into minutes; yahoo's block lasts 60 s): 90 s, 180 s, 360 s instead of 1 h, 2 h, ...
# ============================================================================================
MW_CONNECTIONS = {"gmail": 10, "microsoft": 8, "yahoo": 10, "generic": 10}  # microsoft: sim has 4
MW_BREAKER = {"backoffs": [90, 180, 360]}


def mailwarden_reputation(thresholds: dict[str, int], factor: float) -> dict[str, Any]:
    """``thresholds``: recipients per minute per provider that the simulator lets through
    (generic has no limit: there it is the rate that spreads its share over --minutes)."""
    limits = {}
    for prov, per_minute in thresholds.items():
        per_hour = math.ceil(per_minute * 60 * factor)
        limits[prov] = {
            "messages_per_hour": per_hour,
            "cap_per_hour": per_hour,
            "connections": MW_CONNECTIONS[prov],
        }
    return {
        # generic too: otherwise it is "sim.test" on the packaged default lane (1000/h)
        "providers": {p: [f"*.{p}.{provsim.SUFFIX}"] for p in PROVIDERS},
        "warmup": {"enabled": False},
        "limits": limits,
        "breaker": MW_BREAKER,
    }


# ============================================================================ the campaign


@dataclass
class Campaign:
    n: int
    minutes: float
    unknown_rate: float
    rcpts: list[str] = field(default_factory=list)  # in sending order
    unknown: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        counts = {p: int(self.n * s) for p, s in SHARES.items()}
        counts["gmail"] += self.n - sum(counts.values())
        every = round(1 / self.unknown_rate) if self.unknown_rate > 0 else 0
        i = 0
        for prov, count in counts.items():
            for j in range(count):
                dom = f"d{j % 10}.{prov}.test"
                bad = every and j % every == every // 2
                rcpt = f"unknown{i}@{dom}" if bad else f"u{i}@{dom}"
                self.rcpts.append(rcpt)
                if bad:
                    self.unknown.add(rcpt)
                i += 1
        random.Random(20261203).shuffle(self.rcpts)

    def count(self, prov: str, unknown: bool | None = None) -> int:
        tail = f".{prov}.test"
        return sum(
            1
            for r in self.rcpts
            if r.endswith(tail) and (unknown is None or (r in self.unknown) == unknown)
        )

    def per_minute(self, prov: str) -> int:
        return max(1, math.ceil(SHARES[prov] * self.n / self.minutes))

    def scripts(self) -> dict[str, dict[str, Any]]:
        yahoo_unknown = self.count("yahoo", unknown=True)
        return {
            "gmail": {"throttle_per_minute": self.per_minute("gmail")},
            "microsoft": {
                "throttle_per_minute": self.per_minute("microsoft"),
                "max_connections": 4,
            },
            "yahoo": {
                "spike_defer": [SPIKE_WINDOW, max(1, math.ceil(self.per_minute("yahoo") / 2))],
                "block_after_unknown": max(1, int(0.6 * yahoo_unknown)),
                "block_seconds": 60,
            },
            "generic": {},
        }

    def thresholds(self) -> dict[str, int]:
        """Recipients per minute each simulated provider lets through (generic: its share
        spread over --minutes; the simulator does not limit it)."""
        return {p: self.per_minute(p) for p in PROVIDERS}

    def domains(self) -> dict[str, list[str]]:
        return {p: [f"d{k}.{p}.test" for k in range(10)] for p in PROVIDERS}

    def describe(self) -> str:
        s = self.scripts()
        return (
            f"gmail throttles above {s['gmail']['throttle_per_minute']}/min; microsoft above "
            f"{s['microsoft']['throttle_per_minute']}/min with max 4 connections; yahoo defers "
            f"above {s['yahoo']['spike_defer'][1]} per {SPIKE_WINDOW} s and blocks the IP for 60 s "
            "after "
            f"more than {s['yahoo']['block_after_unknown']} unknown users in 10 min; generic "
            f"has no limits; all reject unknown users (5xx)"
        )


def message(i: int, rcpt: str, body: bytes) -> bytes:
    head = (
        f"From: News <{SENDER}>\r\nTo: <{rcpt}>\r\nSubject: campaign message {i}\r\n"
        f"Date: {formatdate(localtime=True)}\r\n"
        f"Message-ID: <c{i}.{os.getpid()}@{SENDER_DOMAIN}>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    )
    return head.encode() + body


# ============================================================================ injection


class SmtpError(Exception):
    pass


async def _reply(reader: asyncio.StreamReader, want: int) -> None:
    while True:
        line = await reader.readline()
        if not line:
            raise SmtpError("connection closed")
        if line[3:4] != b"-":
            break
    if int(line[:3]) != want:
        raise SmtpError(line.decode(errors="replace").strip()[:120])


async def _session(
    port: int, work: list[tuple[int, str]], per_conn: int, body: bytes, out: dict[str, Any]
) -> None:
    while work:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            await _reply(reader, 220)
            writer.write(b"EHLO loadgen.sim.test\r\n")
            await _reply(reader, 250)
            for _ in range(per_conn):
                if not work:
                    break
                i, rcpt = work.pop()
                try:
                    for cmd, want in (
                        (f"MAIL FROM:<{SENDER}>", 250),
                        (f"RCPT TO:<{rcpt}>", 250),
                        ("DATA", 354),
                    ):
                        writer.write(cmd.encode() + b"\r\n")
                        await _reply(reader, want)
                    writer.write(message(i, rcpt, body) + b".\r\n")
                    await _reply(reader, 250)
                    out["accepted"].append(rcpt)
                except SmtpError as exc:
                    out["failed"].append(f"{rcpt}: {exc}")
                    break
            writer.write(b"QUIT\r\n")
            await writer.drain()
        except (OSError, SmtpError) as exc:
            out["failed"].append(f"session: {exc!r}")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def inject(port: int, rcpts: list[str], conc: int, per_conn: int, size: int) -> dict[str, Any]:
    """Send one message per recipient to 127.0.0.1:port; {"accepted", "failed", "seconds"}."""
    work = list(reversed(list(enumerate(rcpts))))  # pop() takes them in campaign order
    body = si.make_body(size)
    out: dict[str, Any] = {"accepted": [], "failed": []}

    async def go() -> None:
        await asyncio.gather(*(_session(port, work, per_conn, body, out) for _ in range(conc)))

    t0 = time.perf_counter()
    asyncio.run(go())
    out["seconds"] = time.perf_counter() - t0
    return out


# ============================================================================ processes


class SimProcess:
    """tests/provsim.py as a child process with the campaign's scripts."""

    def __init__(self, workdir: Path, scripts: dict[str, Any], port: int) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.cfg = workdir / "sim.json"
        self.out = workdir / "stats.json"
        self.cfg.write_text(json.dumps({"port": port, "providers": scripts}))
        self.cg = bl.CGroup("mwrs-sim")
        self.log = (workdir / "sim.log").open("wb")
        cmd = [sys.executable, str(REPO / "tests" / "provsim.py"), "--config", str(self.cfg)]
        self.proc = subprocess.Popen(
            [*cmd, "--stats-out", str(self.out)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            preexec_fn=self.cg.preexec,  # noqa: PLW1509 - its CPU in its own cgroup
            start_new_session=True,
        )
        self.cpu0 = self.cg.cpu_seconds()
        deadline = time.monotonic() + 30
        while not self.out.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise BenchAbort(f"provsim did not start:\n{(workdir / 'sim.log').read_text()}")
            time.sleep(0.1)

    def log_text(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-2000:]

    def stats(self) -> dict[str, Any]:
        for _ in range(20):
            try:
                return dict(json.loads(self.out.read_text()))
            except (OSError, ValueError):
                time.sleep(0.05)
        raise BenchAbort(f"cannot read {self.out}")

    def stop(self) -> dict[str, Any]:
        """SIGTERM; returns the final stats (every address and time)."""
        cpu = self.cg.cpu_seconds() - self.cpu0
        self.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(60)
        bl.stop_tree(self.proc.pid, self.cg, 5.0)
        self.log.close()
        self.cg.remove()
        final = self.stats()
        if not final.get("final"):
            raise BenchAbort("provsim exited without its final stats")
        final["cpu_s"] = round(cpu, 1)
        return final


class Postfix(si.PostfixTarget):
    """The shared relay instance + transport map to the simulator, fast retry."""

    def __init__(self, port: int, routes: dict[str, str], dead_port: int) -> None:
        super().__init__("postfix", port, "relay")
        self.cg.remove()
        self.cg = bl.CGroup("mwrs-postfix")
        self.instance = "mwrs-relay"
        self.base = MB_ROOT / f"postfix-{self.instance}"
        self.routes = routes
        self.dead_port = dead_port

    def start(self) -> None:
        env = {**os.environ, "MB_ROOT": str(MB_ROOT)}
        cmd = ["bash", str(si.POSTFIX_SETUP), self.instance, str(self.port), "relay"]
        p = subprocess.run(
            [*cmd, str(self.dead_port)], capture_output=True, text=True, env=env, check=False
        )
        if p.returncode != 0:
            raise BenchAbort(f"{si.POSTFIX_SETUP} failed:\n{p.stdout}{p.stderr}")
        table = ", ".join(f"{d}={nexthop}" for d, nexthop in self.routes.items())
        settings = [f"transport_maps = inline:{{{table}}}"]
        settings += [f"{k} = {v}" for k, v in PF_RETRY.items()]
        si.run(["postconf", "-c", self.etc, "-e", *settings])
        p = subprocess.run(
            ["postfix", "-c", self.etc, "start"],
            capture_output=True,
            text=True,
            preexec_fn=self.cg.preexec,
            check=False,
        )
        if p.returncode != 0:
            raise BenchAbort(f"postfix -c {self.etc} start failed:\n{p.stdout}{p.stderr}")
        self.started = True
        if not bl.wait_port("127.0.0.1", self.port, 30):
            raise BenchAbort(f"postfix: nothing listening on 127.0.0.1:{self.port}")

    def alive(self) -> bool:
        return True


class Mailwarden(ob.Mailwarden):
    """mailwarden with a submission listener, delivering by MX to the simulator."""

    def __init__(
        self, root: Path, cmd: list[str], dns: str, args: Any, reputation: dict[str, Any]
    ) -> None:
        super().__init__(root, cmd, {}, args)
        self.cg.remove()
        self.cg = bl.CGroup("mwrs-mailwarden")
        self.dns = dns
        self.sim_port = args.sim_port
        self.reputation = reputation

    def configure(self, cfg: dict[str, Any]) -> None:
        super().configure(cfg)
        cfg["dns"] = {"nameservers": [self.dns], "cache": True}
        cfg["delivery"] = {
            "mx_port": self.sim_port,
            "retry_initial": 10.0,  # as Postfix's minimal_backoff_time
            "retry_max": 60.0,  # as Postfix's maximal_backoff_time
        }
        if self.reputation:
            cfg["reputation"] = self.reputation

    def populate(self) -> None:
        self.mw("domain", "add", SENDER_DOMAIN)
        self.mw("user", "add", SENDER, "--password-stdin", inp="bounce box password 1\n")


def start_dns(workdir: Path, camp: Campaign, sim_ips: dict[str, str]) -> Any:
    import dnsserver

    if not dnsserver.knot_available():
        raise BenchAbort(f"Knot DNS not found: {dnsserver.INSTALL_HINT}")
    ks = dnsserver.KnotServer(workdir)
    ks.start()
    try:
        ks.set_zone("test", [], ttl=300)  # every other name under test. is NXDOMAIN
        for origin, records in provsim.zone_records(sim_ips, camp.domains()).items():
            ks.set_zone(origin, records, ttl=300)
    except BaseException:
        ks.stop()
        raise
    return ks


# ============================================================================ one run


def sim_ips(args: Any) -> dict[str, str]:
    return {p: f"127.0.0.{10 + i}" for i, p in enumerate(PROVIDERS)}


def one_run(name: str, camp: Campaign, args: Any, root: Path, dns: str) -> dict[str, Any]:
    row: dict[str, Any] = {"target": name, "n": camp.n}
    sim = SimProcess(root / f"sim-{name}", camp.scripts(), args.sim_port)
    target: Any = None
    injected: set[str] = set()
    t0 = time.time()
    try:
        if name == "postfix":
            routes = {
                d: f"smtp:[{sim_ips(args)[p]}]:{args.sim_port}"
                for p, doms in camp.domains().items()
                for d in doms
            }
            routes[SENDER_DOMAIN] = "discard:"  # bounces to the sender are thrown away
            target = Postfix(args.pf_port, routes, args.dead_port)
        else:
            rep = mailwarden_reputation(camp.thresholds(), args.mw_factor)
            if args.mw_reputation == "off":
                rep = {}  # mailwarden without the reputation section (its defaults)
            target = Mailwarden(root, shlex.split(args.mailwarden_cmd), dns, args, rep)
        target.start()
        log(f"{name}: started on 127.0.0.1:{target.port}; injecting {camp.n} messages")
        cpu0, t0 = target.cpu(), time.time()
        inj = inject(target.port, camp.rcpts, args.conc, args.per_conn, args.size)
        injected = set(inj["accepted"])
        row.update(
            injected=len(injected),
            inject_failed=len(inj["failed"]),
            inject_s=round(inj["seconds"], 1),
        )
        row["inject_errors"] = inj["failed"][:5]
        log(
            f"{name}: injected {len(injected)} in {inj['seconds']:.1f}s, "
            f"{len(inj['failed'])} failed"
        )
        try:
            row["complete"] = wait_delivered(
                name, sim, target, injected & camp.unknown, injected, t0, args.timeout
            )
            row["queue_drained"] = target.wait_drained(60)
        except (KeyboardInterrupt, SystemExit) as exc:  # report what arrived so far
            log(f"{name}: interrupted ({exc!r}); reporting what was delivered until now")
            row.update(complete=False, interrupted=True, queue_drained=False)
        row["server_cpu_s"] = round(target.cpu() - cpu0, 1)
    finally:
        final = sim.stop()
        if target is not None:
            target.stop()
    figures(row, final, injected, camp.unknown, t0)
    return row


def wait_delivered(
    name: str,
    sim: SimProcess,
    target: Any,
    unknown: set[str],
    injected: set[str],
    t0: float,
    timeout: float,
) -> bool:
    want_ok, want_unknown = len(injected) - len(unknown), len(unknown)
    last_log = 0.0
    while True:
        provs = sim.stats()["providers"].values()
        ok = sum(p["unique"] for p in provs)
        bad = sum(p["unknown_rejected"] for p in provs)
        if ok >= want_ok and bad >= want_unknown:
            return True
        now = time.time()
        if now - last_log >= 15:
            last_log = now
            replies = {k: sum(p["replies"][k] for p in provs) for k in REPLY_KINDS}
            log(
                f"{name} +{now - t0:.0f}s: delivered {ok}/{want_ok}, "
                f"unknown {bad}/{want_unknown}, {replies}"
            )
        if now - t0 > timeout:
            log(f"{name}: not all delivered after {timeout:.0f}s")
            return False
        if not target.alive():
            raise BenchAbort(f"{name} died during the run:\n" + target.log_tail(30))
        if sim.proc.poll() is not None:
            raise BenchAbort(f"the simulator exited during the run:\n{sim.log_text()}")
        time.sleep(1.0)


def figures(
    row: dict[str, Any], final: dict[str, Any], injected: set[str], unknown: set[str], t0: float
) -> None:
    provs = final["providers"]
    accepted: dict[str, int] = {}
    bounced: set[str] = set()
    for p in provs.values():
        for addr, count in p["accepted_addresses"].items():
            accepted[addr] = accepted.get(addr, 0) + count
        bounced.update(p["unknown_addresses"])
    delivered = set(accepted) & injected
    row["delivered"] = len(delivered)
    row["duplicates"] = sum(c - 1 for a, c in accepted.items() if a in injected)
    row["unexpected"] = len(set(accepted) - injected)
    row["bounced_unknown"] = len(bounced & injected & unknown)
    row["lost"] = len(injected) - row["delivered"] - row["bounced_unknown"]
    for kind in (*REPLY_KINDS, "unknown_user"):
        row[kind] = sum(p["replies"][kind] for p in provs.values())
    row["throttle_block"] = sum(row[k] for k in REPLY_KINDS)
    last = max((p["last_accept"] or 0.0 for p in provs.values()), default=0.0)
    row["deliver_all_s"] = round(last - t0, 1) if row.get("complete") and last else None
    row["sim_cpu_s"] = final["cpu_s"]
    row["providers"] = {
        n: {
            "accepted": p["accepted"],
            "unique": p["unique"],
            "peak_per_minute": p["peak_per_minute"],
            "per_minute": p["per_minute"],
            "peak_connections": p["peak_connections"],
            "connections": p["connections"],
            "replies": p["replies"],
        }
        for n, p in provs.items()
    }


# ============================================================================ report

ROWS = [
    ("injected (accepted by the MTA)", "injected"),
    ("delivered (unique, accepted by the simulator)", "delivered"),
    ("duplicates", "duplicates"),
    ("bounced as unknown user", "bounced_unknown"),
    ("**lost** (must be 0)", "lost"),
    ("throttled replies", "throttled"),
    ("spike deferrals", "deferred_spike"),
    ("too-many-connections (greeting)", "too_many_connections"),
    ("block replies", "blocked"),
    ("**throttle + block replies**", "throttle_block"),
    ("time until all deliverable mail was delivered (s)", "deliver_all_s"),
    ("injection time (s)", "inject_s"),
    ("server CPU (s) / simulator CPU (s)", "cpu"),
]


def report(rows: list[dict[str, Any]], camp: Campaign, args: Any, errors: dict[str, str]) -> str:
    names = [r["target"] for r in rows]
    out = [
        f"## Reputation simulation, {time.strftime('%Y-%m-%d %H:%M')} "
        f"(mailwarden {si.source_version()})",
        "",
        f"{camp.n} messages of {args.size} B to 4 simulated providers (gmail 40 %, microsoft 25 %, "
        f"yahoo 20 %, generic 15 %; {len(camp.unknown)} unknown users), injected over {args.conc} "
        f"connections. Simulator: {camp.describe()}.",
        "Postfix tuned for fast retry: " + ", ".join(f"{k}={v}" for k, v in PF_RETRY.items()) + "; "
        "everything else default.",
        (
            f"mailwarden: base limits {args.mw_factor:g}× ABOVE the simulator's thresholds (AIMD "
            "must discover them), retries 10 s → 60 s, breaker backoffs "
            f"{'/'.join(map(str, MW_BREAKER['backoffs']))} s."
            if args.mw_reputation == "on"
            else "mailwarden WITHOUT reputation settings (--mw-reputation off), retries 10→60 s."
        ),
        "",
        "| | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for label, key in ROWS:
        cells = []
        for r in rows:
            v = f"{r['server_cpu_s']} / {r['sim_cpu_s']}" if key == "cpu" else r.get(key)
            if key == "deliver_all_s" and v is None:
                v = "not all delivered"
            elif key == "lost" and not r["complete"]:
                v = f"{v} (undelivered when the run ended; still queued or lost)"
            cells.append(str(v))
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    out += [
        "",
        "| provider | target | accepted | peak/min | peak conns | "
        + " | ".join(REPLY_KINDS)
        + " |",
    ]
    out.append("|---|---|---|---|---|" + "---|" * len(REPLY_KINDS))
    for prov in PROVIDERS:
        for r in rows:
            p = r["providers"][prov]
            reps = " | ".join(str(p["replies"][k]) for k in REPLY_KINDS)
            out.append(
                f"| {prov} | {r['target']} | {p['accepted']} | {p['peak_per_minute']} | "
                f"{p['peak_connections']} | {reps} |"
            )
    by = {r["target"]: r for r in rows}
    if "postfix" in by and "mailwarden" in by:
        pf, mw = by["postfix"]["throttle_block"], by["mailwarden"]["throttle_block"]
        ratio = pf / mw if mw else math.inf
        verdict = "MET" if ratio >= 5 else "NOT MET"
        out.append(
            f"\nthrottle+block replies Postfix/mailwarden: {ratio:.1f}× (target ≥ 5×) — {verdict}"
        )
    for r in rows:
        if r.get("interrupted"):
            out.append(f"INTERRUPTED {r['target']}: figures up to the interruption")
        elif r["lost"] or r["unexpected"] or r["inject_failed"] or not r["complete"]:
            out.append(
                f"PROBLEM {r['target']}: lost {r['lost']}, unexpected {r['unexpected']}, "
                f"injection failures {r['inject_failed']} {r['inject_errors']}, "
                f"complete={r['complete']}"
            )
    out += [f"ERROR {name}: {text}" for name, text in errors.items()]
    return "\n".join(out)


# ============================================================================ main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=50_000, help="messages in the campaign")
    ap.add_argument("--size", type=int, default=2048, help="body bytes")
    ap.add_argument(
        "--minutes",
        type=float,
        default=4.0,
        help="sets the limits: a sender at exactly them needs this long",
    )
    ap.add_argument("--unknown-rate", type=float, default=0.01)
    ap.add_argument("--only", choices=["postfix", "mailwarden"], help="run one target only")
    ap.add_argument("--conc", type=int, default=10, help="injection connections")
    ap.add_argument("--per-conn", type=int, default=100, help="messages per injection connection")
    ap.add_argument(
        "--mw-factor", type=float, default=2.0, help="mailwarden's base limits / the simulator's"
    )
    ap.add_argument(
        "--mw-reputation",
        choices=["on", "off"],
        default="on",
        help="off: leave the reputation section out of mailwarden's config",
    )
    ap.add_argument("--workers", type=int, default=2, help="mailwarden workers")
    ap.add_argument(
        "--mw-set", action="append", default=[], metavar="KEY=YAML", help="extra mailwarden config"
    )
    ap.add_argument("--mailwarden-cmd", default=f"{shlex.quote(sys.executable)} -m mailwarden")
    ap.add_argument(
        "--sim-port", type=int, default=12725, help="the providers' port (127.0.0.10-13)"
    )
    ap.add_argument("--pf-port", type=int, default=12765, help="Postfix (and +10, its HOLD port)")
    ap.add_argument("--mw-port", type=int, default=12790)
    ap.add_argument("--dead-port", type=int, default=12731, help="Postfix relayhost; unused")
    ap.add_argument("--timeout", type=float, default=1800.0, help="max seconds per target")
    ap.add_argument("--json", help="write the rows and the campaign here")
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    ap.add_argument("--install", action="store_true", help="apt-get postfix/knot, add user mbench")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, si._raise_exit)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    targets = [args.only] if args.only else ["mailwarden", "postfix"]
    try:
        if args.install:
            si.install_prereqs()
        si.check_prereqs(["postfix"] if "postfix" in targets else [])
        busy = [
            p
            for p in (args.sim_port, args.pf_port, args.pf_port + 10, args.mw_port)
            if not si.port_free(p)
        ]
        if busy:
            raise BenchAbort(f"ports in use on 127.0.0.1: {busy}")
    except BenchAbort as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    camp = Campaign(args.n, args.minutes, args.unknown_rate)
    log(f"campaign: {camp.n} messages, {len(camp.unknown)} unknown; {camp.describe()}")
    MB_ROOT.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="mwrs-", dir=MB_ROOT))
    os.chmod(root, 0o755)
    rows: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    knot: Any = None
    rc = 0
    try:
        if "mailwarden" in targets:
            knot = start_dns(root / "knot", camp, sim_ips(args))
        for name in targets:
            try:
                rows.append(one_run(name, camp, args, root, knot.nameserver if knot else ""))
                if rows[-1].get("interrupted"):
                    rc = 130
                    break
            except BenchAbort as exc:
                errors[name] = str(exc)[-3000:]
                log(f"{name} failed: {str(exc)[-1500:]}")
    except (KeyboardInterrupt, SystemExit) as exc:
        print(f"\ninterrupted ({exc!r})", file=sys.stderr)
        rc = 130
    finally:
        if knot is not None:
            knot.stop()
        bl.remove_cgroup_root()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(MB_ROOT / "postfix-mwrs-relay", ignore_errors=True)
    if rows or errors:
        text = (
            report(rows, camp, args, errors)
            if rows
            else "\n".join(f"ERROR {k}: {v}" for k, v in errors.items())
        )
        print(text)
        if args.json:
            data = {"args": vars(args), "scripts": camp.scripts(), "rows": rows, "errors": errors}
            Path(args.json).write_text(json.dumps(data, indent=1, default=str))
        if errors or any(r["lost"] or not r["complete"] for r in rows):
            rc = rc or 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
