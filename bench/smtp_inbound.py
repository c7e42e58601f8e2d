#!/usr/bin/env python3
"""Inbound SMTP benchmark (issue #2): mailwarden with full SPF/DKIM/DMARC checks against Postfix.

What it does, all on 127.0.0.1:

* starts a real Knot DNS server (tests/dnsserver.py) serving the sender domain
  ``sender.bench.test`` (SPF ``v=spf1 ip4:127.0.0.1 -all``, DMARC ``p=reject``, DKIM RSA-2048 and
  Ed25519 keys, a PTR for 127.0.0.1) and the zone ``test.`` so every other name is NXDOMAIN;
* pre-builds a pool of distinct DKIM-signed messages per body size (bodies exactly 2048 / 102400
  bytes, like ``smtp-source -l``), so signing is not part of the measurement;
* starts mailwarden (``python -m mailwarden run``) in a fresh data directory with DNS pointed at
  knot, the DNS cache on, one local domain and user; and private Postfix instances built by the
  shared harness (``../shared/bench/setup/postfix_instance.sh``): ``maildir`` (full local
  delivery, the reference) and ``discard`` (acceptance only). Postfix does no SPF/DKIM/DMARC;
* for run -> size -> concurrency, sends the same messages to every target, alternating the
  target order from cell to cell so drift hits all of them alike, with an asyncio client that
  opens a new connection per message (like smtp-source; ``--per-conn 0`` reuses connections);
* measures accepted msg/s (2xx after DATA / wall time), per-message latency p50/p99 (connect ->
  250 after DATA) and transaction latency (MAIL -> 250 after DATA), errors by stage:code, server
  CPU per message from the target's cpuacct cgroup (includes forked children), the client's and
  knot's CPU and the rest of the box ("other", i.e. noise);
* verifies after every run: mailwarden stored exactly as many messages as were accepted, none
  went to Junk, its log shows spf=pass dkim=pass dmarc=pass for every message, and one stored
  sample per run carries those results in its Authentication-Results header; Postfix drained
  its queue and (maildir) delivered every accepted message. The run aborts if authentication
  did not pass: a benchmark whose checks silently failed measures nothing.

Needs root (Postfix, cgroups), ``apt-get install -y postfix knot`` and a system user ``mbench``
(``--install`` does all three). Run with the project's virtualenv::

    python bench/smtp_inbound.py                      # default matrix, 6-8 min
    python bench/smtp_inbound.py --sizes 2048 --conc 10 --runs 3 --seconds 5
    python bench/smtp_inbound.py --profile 8          # + py-spy of mailwarden
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import csv
import datetime
import importlib.util
import json
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import types
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import dkim
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED_BENCH = Path(
    os.environ.get("MAILBENCH_DIR", Path(__file__).resolve().parents[2] / "shared" / "bench")
)
MB_ROOT = Path(os.environ.get("MB_ROOT", "/var/tmp/mailbench"))
POSTFIX_SETUP = SHARED_BENCH / "setup" / "postfix_instance.sh"

SENDER_DOMAIN = "sender.bench.test"
SENDER = f"news@{SENDER_DOMAIN}"
HELO = f"mta.{SENDER_DOMAIN}"
MW_HOSTNAME = "mx.mailwarden.bench.test"
MW_DOMAIN = "local.bench.test"
MW_USER = f"bench@{MW_DOMAIN}"
MW_PASSWORD = "bench password 2"
PF_USER = "mbench@bench.local"  # what postfix_instance.sh delivers locally
SPF = "v=spf1 ip4:127.0.0.1 -all"
DMARC = "v=DMARC1; p=reject"
CRLF = b"\r\n"

DEFAULT_PORTS = {"mailwarden": 12600, "postfix-maildir": 12645, "postfix-discard": 12625}
ALL_TARGETS = tuple(DEFAULT_PORTS)


class BenchAbort(RuntimeError):
    """Something that makes the numbers meaningless (auth failed, messages lost, crash)."""


def _load_module(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise BenchAbort(f"cannot import {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _benchlib() -> Any:
    path = SHARED_BENCH / "benchlib.py"
    if not path.exists():
        raise BenchAbort(f"{path} not found (set MAILBENCH_DIR to the shared bench folder)")
    return _load_module("benchlib", path)


try:
    bl: Any = _benchlib()  # the shared harness's helpers (cgroups, CPU accounting)
except BenchAbort as _exc:
    raise SystemExit(f"error: {_exc}") from None


def set_path(cfg: dict[str, Any], key: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested config mapping (``--mw-set a.b.c=value``)."""
    node = cfg
    *path, last = key.split(".")
    for part in path:
        node = node.setdefault(part, {})
    node[last] = value


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ============================================================================ messages


def make_keys() -> Any:
    """Fresh DKIM keys and their TXT records (tests/dkimkeys.py)."""
    sys.path.insert(0, str(REPO / "tests"))
    try:
        import dkimkeys
    finally:
        sys.path.pop(0)
    return dkimkeys.make_dkim_keys()


def make_body(size: int) -> bytes:
    """Exactly ``size`` bytes of 78-byte CRLF lines, no leading dots (as smtp_load.py)."""
    line = b"The quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopqrstuv"[:76]
    line += CRLF
    n_full, rest = divmod(size, len(line))
    body = line * n_full
    if rest == 1:
        body += b"x"
    elif rest == 2:
        body += CRLF
    elif rest:
        body += b"x" * (rest - 2) + CRLF
    return body


def sign(msg: bytes, keys: Any, algo: str) -> bytes:
    sigs = b""
    canon = (b"relaxed", b"relaxed")
    if algo in ("rsa", "both"):
        sigs += dkim.sign(msg, b"rsa", SENDER_DOMAIN.encode(), keys.rsa_pem, canonicalize=canon)
    if algo in ("ed25519", "both"):
        sigs += dkim.sign(
            msg,
            b"ed",
            SENDER_DOMAIN.encode(),
            keys.ed_private,
            canonicalize=canon,
            signature_algorithm=b"ed25519-sha256",
        )
    return sigs + msg


def to_wire(msg: bytes) -> bytes:
    """Dot-stuff and append the end-of-data marker: exactly what goes after DATA."""
    stuffed = msg.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    if not stuffed.endswith(CRLF):
        stuffed += CRLF
    return stuffed + b".\r\n"


def build_pool(size: int, count: int, keys: Any, algo: str, tag: str) -> list[bytes]:
    body = make_body(size)
    date = format_datetime(datetime.datetime.now(datetime.UTC))
    pool = []
    for i in range(count):
        head = (
            f"From: Bench Sender <{SENDER}>\r\n"
            f"To: Bench Recipient <{MW_USER}>\r\n"
            f"Subject: mwbench {tag} size={size} #{i}\r\n"
            f"Date: {date}\r\n"
            f"Message-ID: <{uuid.uuid4().hex}.{i}@{SENDER_DOMAIN}>\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n"
            "\r\n"
        ).encode()
        pool.append(to_wire(sign(head + body, keys, algo)))
    return pool


# ============================================================================ load generator


class SmtpReplyError(Exception):
    def __init__(self, stage: str, code: int, text: str) -> None:
        super().__init__(f"{stage}: {code} {text}")
        self.stage, self.code, self.text = stage, code, text


async def _reply(reader: asyncio.StreamReader, stage: str) -> tuple[int, bytes]:
    line = await reader.readline()
    first = line
    while len(line) >= 4 and line[3:4] == b"-":
        line = await reader.readline()
    if not line or len(first) < 3 or not first[:3].isdigit():
        raise ConnectionError(f"{stage}: connection closed or garbage {first[:40]!r}")
    return int(first[:3]), line[4:].strip()


async def _expect(
    reader: asyncio.StreamReader, stage: str, ok: Sequence[int] = (250,)
) -> tuple[int, bytes]:
    code, text = await _reply(reader, stage)
    if code not in ok:
        raise SmtpReplyError(stage, code, text.decode("latin-1", "replace"))
    return code, text


@dataclass
class LoadSpec:
    port: int
    pool: list[bytes]
    mail_from: str
    rcpt: str
    conc: int
    per_conn: int = 1
    seconds: float | None = 5.0
    count: int | None = None
    timeout: float = 60.0
    host: str = "127.0.0.1"
    helo: str = HELO


@dataclass
class LoadResult:
    accepted: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    error_samples: dict[str, str] = field(default_factory=dict)
    elapsed: float = 0.0
    msg_lat: list[float] = field(default_factory=list)
    txn_lat: list[float] = field(default_factory=list)
    client_cpu: float = 0.0
    last_reply: str = ""

    @property
    def failed(self) -> int:
        return sum(self.errors.values())


async def run_load(spec: LoadSpec) -> LoadResult:
    res = LoadResult()
    pool, npool = spec.pool, len(spec.pool)
    mail = f"MAIL FROM:<{spec.mail_from}>\r\n".encode()
    rcpt = f"RCPT TO:<{spec.rcpt}>\r\n".encode()
    ehlo = f"EHLO {spec.helo}\r\n".encode()
    state = {"next": 0}
    t_start = time.perf_counter()
    deadline = t_start + spec.seconds if spec.seconds else None

    def take() -> int | None:
        if deadline is not None:
            if time.perf_counter() >= deadline:
                return None
        elif spec.count is not None and state["next"] >= spec.count:
            return None
        i = state["next"]
        state["next"] += 1
        return i

    def note_error(exc: BaseException) -> None:
        key = type(exc).__name__
        if isinstance(exc, SmtpReplyError):
            key = f"{exc.stage}:{exc.code}"
        res.errors[key] += 1
        res.error_samples.setdefault(key, str(exc)[:200])

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(spec.host, spec.port, limit=1 << 16)
        try:
            await _expect(reader, "banner", (220,))
            writer.write(ehlo)
            await _expect(reader, "ehlo")
        except BaseException:
            writer.close()
            raise
        return reader, writer

    async def quit_(writer: asyncio.StreamWriter, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(Exception):
            writer.write(b"QUIT\r\n")
            async with asyncio.timeout(5):
                await _reply(reader, "quit")
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()

    async def session() -> None:
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        sent = 0
        while (i := take()) is not None:
            data = pool[i % npool]
            t0 = time.perf_counter()
            try:
                async with asyncio.timeout(spec.timeout):
                    if conn is None:
                        conn = await connect()
                        sent = 0
                    reader, writer = conn
                    t1 = time.perf_counter()
                    writer.write(mail)
                    await _expect(reader, "mail")
                    writer.write(rcpt)
                    await _expect(reader, "rcpt", (250, 251))
                    writer.write(b"DATA\r\n")
                    await _expect(reader, "data", (354,))
                    writer.write(data)
                    _code, text = await _expect(reader, "eod", (250, 251, 252))
                t2 = time.perf_counter()
                res.msg_lat.append(t2 - t0)
                res.txn_lat.append(t2 - t1)
                res.accepted += 1
                res.last_reply = text.decode("latin-1", "replace")
                sent += 1
                if spec.per_conn and sent >= spec.per_conn:
                    await quit_(conn[1], conn[0])
                    conn = None
            except (OSError, ConnectionError, SmtpReplyError, TimeoutError, ValueError) as exc:
                note_error(exc)
                if conn is not None:
                    conn[1].close()
                    conn = None
                await asyncio.sleep(0.01)  # don't spin on a server that refuses at once
        if conn is not None:
            await quit_(conn[1], conn[0])

    await asyncio.gather(*(session() for _ in range(spec.conc)))
    res.elapsed = time.perf_counter() - t_start
    return res


def load(spec: LoadSpec) -> LoadResult:
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    res = asyncio.run(run_load(spec))
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    res.client_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return res


def write_eml(wire: bytes, path: Path) -> Path:
    """One pool message as smtp-source -F wants it: LF line ends, not dot-stuffed."""
    raw = wire.removesuffix(b".\r\n").replace(b"\r\n..", b"\r\n.")
    path.write_bytes(raw.replace(b"\r\n", b"\n"))
    return path


def load_smtp_source(spec: LoadSpec, eml: Path) -> LoadResult:
    """The same transaction with Postfix's smtp-source (C, cheapest client): it sends one
    pre-signed message over and over (-F), so there are no latency figures."""
    n = spec.count or 1
    cmd = ["smtp-source", "-4", "-s", str(spec.conc), "-m", str(n), "-F", str(eml)]
    cmd += ["-f", spec.mail_from, "-t", spec.rcpt, "-M", spec.helo]
    cmd += ["-d"] if spec.per_conn != 1 else []
    cmd.append(f"{spec.host}:{spec.port}")
    res = LoadResult()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    res.elapsed = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    res.client_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if p.returncode == 0:
        res.accepted = n
    else:
        key = f"smtp-source:rc{p.returncode}"
        res.errors[key] = n
        res.error_samples[key] = (p.stderr or p.stdout).strip()[-300:]
    return res


def pct(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100.0 * (len(s) - 1))))
    return s[k]


# ============================================================================ processes


def run(cmd: Sequence[str], *, inp: str | None = None, check: bool = True) -> str:
    p = subprocess.run(list(cmd), input=inp, capture_output=True, text=True, check=False)
    if check and p.returncode != 0:
        raise BenchAbort(
            f"command failed ({p.returncode}): {shlex.join(cmd)}\n{p.stdout[-2000:]}"
            f"{p.stderr[-2000:]}"
        )
    return p.stdout


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Target:
    name: str
    port: int
    rcpt: str

    def __init__(self, name: str, port: int) -> None:
        self.name, self.port = name, port
        self.cg = bl.CGroup("mwb-" + name)

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def before_run(self) -> None:
        """Bring the target to its idle state before a run."""

    def after_run(self, res: LoadResult, row: dict[str, Any], *, strict: bool) -> None:
        """Wait for background work, verify what the target did; add fields to row."""

    def cpu(self) -> float:
        return float(self.cg.cpu_seconds())

    def cpu_split(self) -> tuple[float, float]:
        """(user, system) seconds from cgroup v1 cpuacct.stat; (0, 0) if unavailable."""
        if self.cg.kind != "v1":
            return 0.0, 0.0
        try:
            with open(os.path.join(self.cg.path, "cpuacct.stat")) as f:
                vals = dict(line.split() for line in f)
        except OSError:
            return 0.0, 0.0
        clk = os.sysconf("SC_CLK_TCK")
        return int(vals.get("user", 0)) / clk, int(vals.get("system", 0)) / clk


# one log record per "2026-11-21 10:13:23,565 LEVEL logger: ..." line plus its continuations
_LOG_RECORD = re.compile(r"\n(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ )")
_RESULT = re.compile(r"\b(spf|dkim|dmarc)=([\w,]+)")


def all_pass(text: str, dkim_expected: str = "pass") -> bool:
    """Every spf=/dkim=/dmarc= result in ``text`` is pass (dkim=pass,pass for two
    signatures; dkim=none for --dkim none), and each of the three appears."""
    seen: dict[str, list[str]] = collections.defaultdict(list)
    for method, value in _RESULT.findall(text):
        seen[method] += value.split(",")
    want = {"spf": "pass", "dkim": dkim_expected, "dmarc": "pass"}
    return len(seen) == 3 and all(v == want[m] for m, vs in seen.items() for v in vs)


class MailwardenTarget(Target):
    rcpt = MW_USER

    def __init__(self, port: int, root: Path, cmd: list[str], dns: str, args: Any) -> None:
        super().__init__("mailwarden", port)
        self.root = root / "mailwarden"
        self.config = self.root / "mailwarden.yaml"
        self.data = self.root / "data"
        self.log_path = self.root / "server.log"
        self.cmd = cmd
        self.dns = dns
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self.log_offset = 0
        self.stored = 0  # messages in all folders, as last counted
        self.junk = 0
        self.problems: list[str] = []
        self.dkim_expected = "none" if args.dkim == "none" else "pass"

    def mw(self, *argv: str, inp: str | None = None) -> str:
        return run([*self.cmd, *argv, "--config", str(self.config)], inp=inp)

    listener = "mx"  # the listener whose READY entry marks the start

    def start(self) -> None:
        """init, configure (``configure``), add accounts (``populate``), run, wait for READY."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.mw("init", "--hostname", MW_HOSTNAME, "--data-dir", str(self.data))
        cfg = yaml.safe_load(self.config.read_text())
        for lst in cfg.get("listeners", {}).values():
            lst["enabled"] = False  # only the listener under test binds a port
        # Postfix runs with every client connection/rate limit off; so does mailwarden here
        # (its default of 20 sessions per IP would refuse the c=50 cell from 127.0.0.1).
        cfg["limits"] = {"max_connections_per_ip": 10_000, "max_connections": 10_000}
        self.configure(cfg)
        for extra in self.args.mw_set:
            key, _, value = extra.partition("=")
            set_path(cfg, key, yaml.safe_load(value))
        self.config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.mw("config", "check")
        self.populate()
        self.launch()

    def configure(self, cfg: dict[str, Any]) -> None:
        cfg["listeners"]["mx"].update({"address": "127.0.0.1", "port": self.port, "enabled": True})
        cfg["dns"] = {"nameservers": [self.dns], "cache": not self.args.no_dns_cache}

    def populate(self) -> None:
        self.mw("domain", "add", MW_DOMAIN)
        self.mw("user", "add", MW_USER, "--password-stdin", inp=MW_PASSWORD + "\n")

    def launch(self) -> None:
        self._log_file = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*self.cmd, "run", "--config", str(self.config)],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=self.cg.preexec,  # noqa: PLW1509 - moves the child into its cgroup
            start_new_session=True,
            cwd=self.root,
        )
        self.cg.root_pids.append(self.proc.pid)
        deadline = time.monotonic() + 60
        want = f"READY {self.listener}=127.0.0.1:{self.port}"
        while time.monotonic() < deadline:
            if want in self.log_path.read_text(errors="replace"):
                self.log_offset = self.log_path.stat().st_size
                return
            if self.proc.poll() is not None:
                raise BenchAbort(
                    f"mailwarden exited with {self.proc.returncode} during startup:\n"
                    + self.log_tail(40)
                )
            time.sleep(0.1)
        raise BenchAbort("mailwarden did not print READY within 60 s:\n" + self.log_tail(40))

    def log_tail(self, n: int) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(30)
                if rc != 0:
                    self.problems.append(f"mailwarden exited with status {rc} on SIGTERM")
            except subprocess.TimeoutExpired:
                self.problems.append("mailwarden did not stop within 30 s of SIGTERM; killed")
        if self.proc is not None:
            bl.stop_tree(self.proc.pid, self.cg, 5.0)
            self.proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        self.cg.remove()

    # ------------------------------------------------------------------ verification

    def folders(self) -> dict[str, dict[str, Any]]:
        rows = json.loads(self.mw("mailbox", "list", MW_USER, "--json"))
        return {str(r["name"]): r for r in rows}

    def count(self) -> tuple[int, int, int]:
        """(messages in all folders, in Junk, INBOX uidnext)."""
        f = self.folders()
        total = sum(int(r["messages"]) for r in f.values())
        junk = sum(
            int(r["messages"])
            for n, r in f.items()
            if n.lower() == "junk" or r.get("special_use") == "\\Junk"
        )
        return total, junk, int(f["INBOX"]["uidnext"])

    def sync_count(self) -> None:
        self.stored, self.junk, _ = self.count()
        self.log_offset = self.log_path.stat().st_size

    def new_log(self) -> str:
        with self.log_path.open("rb") as f:
            f.seek(self.log_offset)
            data = f.read()
        self.log_offset += len(data)
        return data.decode("utf-8", "replace")

    def after_run(self, res: LoadResult, row: dict[str, Any], *, strict: bool) -> None:
        if not self.alive():
            raise BenchAbort(
                f"mailwarden died during the run (status {self.proc and self.proc.returncode}):\n"
                + self.log_tail(40)
            )
        total, junk, uidnext = self.count()
        delta, junk_delta = total - self.stored, junk - self.junk
        self.stored, self.junk = total, junk
        row["stored"] = delta
        row["lost"] = res.accepted - delta
        text = self.new_log()
        records = _LOG_RECORD.split(text)
        verdicts = [r for r in records if " mailwarden.smtp.inbound: " in r and " action=" in r]
        bad = [r for r in verdicts if not all_pass(r, self.dkim_expected)]
        row["auth_logged"] = len(verdicts)
        row["auth_not_pass"] = len(bad)
        errors = [r for r in records if r[:40].count(" ERROR ") or r[:40].count(" CRITICAL ")]
        row["log_errors"] = len(errors)
        row["tracebacks"] = text.count("Traceback (most recent call last)")
        if row["log_errors"] or row["tracebacks"]:
            sample = " | ".join(errors[0].splitlines()[:1] + errors[0].splitlines()[-1:])
            self.problems.append(
                f"{row['size']}B c={row['conc']} run {row.get('run')}: {row['log_errors']} ERROR "
                f"lines, {row['tracebacks']} tracebacks in the server log, e.g. {sample[:400]}"
            )
        if row["lost"]:
            self.problems.append(
                f"{row['size']}B c={row['conc']} run {row.get('run')}: accepted {res.accepted} "
                f"but stored {delta} (lost {row['lost']})"
            )
        if junk_delta:
            raise BenchAbort(f"{junk_delta} messages were filed in Junk: authentication failed")
        if bad:
            raise BenchAbort(
                f"{len(bad)} of {len(verdicts)} messages did not pass SPF+DKIM+DMARC, e.g.:\n"
                + "\n".join(bad[:3])
            )
        if res.accepted and not delta:
            raise BenchAbort("mailwarden accepted messages but stored none")
        if res.accepted:
            row["auth_sample"] = self.check_sample(uidnext - 1, row["size"])
        if strict and row["lost"]:
            raise BenchAbort(self.problems[-1])

    def check_sample(self, uid: int, size: int) -> str:
        raw = run(
            [*self.cmd, "message", "show", MW_USER, "--uid", str(uid), "--config", str(self.config)]
        )
        head = raw.split("\n\n", 1)[0].split("\r\n\r\n", 1)[0]
        unfolded = re.sub(r"\r?\n[ \t]+", " ", head)
        ar = next(
            (
                ln
                for ln in unfolded.splitlines()
                if ln.lower().startswith("authentication-results:")
            ),
            None,
        )
        subject = next((ln for ln in unfolded.splitlines() if ln.startswith("Subject:")), "")
        if ar is None:
            raise BenchAbort(f"stored message uid {uid} has no Authentication-Results:\n{head}")
        if f"size={size} " not in subject + " ":
            raise BenchAbort(f"newest stored message (uid {uid}) is not from this run: {subject}")
        need = ["spf=pass smtp.mailfrom=", "dmarc=pass", f"header.from={SENDER_DOMAIN}"]
        if self.dkim_expected == "pass":
            need.append(f"dkim=pass header.d={SENDER_DOMAIN}")
        missing = [n for n in need if n not in ar]
        if not all_pass(ar, self.dkim_expected):
            missing.append("every spf/dkim/dmarc result = pass")
        if missing:
            raise BenchAbort(f"stored message uid {uid}: {missing} not in\n{ar}")
        return "pass"


class PostfixTarget(Target):
    def __init__(self, name: str, port: int, mode: str) -> None:
        super().__init__(name, port)
        self.mode = mode
        self.instance = "mwb-" + ("mdir" if mode == "maildir" else "disc")
        self.base = MB_ROOT / f"postfix-{self.instance}"
        self.rcpt = PF_USER
        self.maildir: Path | None = None
        self.started = False

    @property
    def etc(self) -> str:
        return str(self.base / "etc")

    def start(self) -> None:
        env_root = {**os.environ, "MB_ROOT": str(MB_ROOT)}
        p = subprocess.run(
            ["bash", str(POSTFIX_SETUP), self.instance, str(self.port), self.mode],
            capture_output=True,
            text=True,
            env=env_root,
            check=False,
        )
        if p.returncode != 0:
            raise BenchAbort(f"{POSTFIX_SETUP} failed:\n{p.stdout}{p.stderr}")
        if self.mode == "maildir":
            home = run(["getent", "passwd", "mbench"]).split(":")[5]
            self.maildir = Path(home) / "Maildir"
            self.clear_maildir()
        p = subprocess.run(
            ["postfix", "-c", self.etc, "start"],
            capture_output=True,
            text=True,
            preexec_fn=self.cg.preexec,  # moves postfix into its cgroup
            check=False,
        )
        if p.returncode != 0:
            raise BenchAbort(f"postfix -c {self.etc} start failed:\n{p.stdout}{p.stderr}")
        self.started = True
        if not bl.wait_port("127.0.0.1", self.port, 30):
            raise BenchAbort(f"{self.name}: nothing listening on 127.0.0.1:{self.port}")

    def stop(self) -> None:
        if self.started:
            subprocess.run(["postfix", "-c", self.etc, "stop"], capture_output=True, check=False)
            deadline = time.time() + 15
            while time.time() < deadline and self.cg.kind and self.cg.pids():
                time.sleep(0.2)
            for pid in self.cg.pids() if self.cg.kind else []:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.started = False
        self.clear_maildir()
        self.cg.remove()

    def queue_len(self) -> int:
        spool = self.base / "spool"
        return sum(
            bl.count_files(str(spool / q))
            for q in ("maildrop", "incoming", "active", "deferred", "hold")
        )

    def wait_drained(self, timeout: float) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.queue_len() == 0:
                return True
            time.sleep(0.05)
        return False

    def clear_maildir(self) -> None:
        if self.maildir is not None:
            for sub in ("new", "cur", "tmp"):
                bl.clear_dir_files(str(self.maildir / sub))

    def delivered(self) -> int:
        assert self.maildir is not None
        return int(bl.count_files(str(self.maildir / "new"))) + int(
            bl.count_files(str(self.maildir / "cur"))
        )

    def before_run(self) -> None:
        self.wait_drained(120)
        self.clear_maildir()

    def after_run(self, res: LoadResult, row: dict[str, Any], *, strict: bool) -> None:
        t0 = time.perf_counter()
        ok = self.wait_drained(600)
        row["drain_s"] = round(time.perf_counter() - t0, 3)
        if not ok:
            raise BenchAbort(f"{self.name}: queue not drained within 600 s")
        if self.mode == "maildir":
            n = self.delivered()
            row["stored"] = n
            row["lost"] = res.accepted - n
            if row["lost"] and strict:
                raise BenchAbort(f"{self.name}: accepted {res.accepted}, delivered {n}")


# ============================================================================ DNS


def start_dns(workdir: Path, keys: Any, ttl: int, cg: Any) -> Any:
    sys.path.insert(0, str(REPO / "tests"))
    try:
        import dnsserver
    finally:
        sys.path.pop(0)
    if not dnsserver.knot_available():
        raise BenchAbort(f"Knot DNS not found: {dnsserver.INSTALL_HINT}")
    ks = dnsserver.KnotServer(workdir)
    ks.start()
    txt = dnsserver.txt
    try:
        ks.set_zone("test", [], ttl=ttl)
        ks.set_zone(
            SENDER_DOMAIN,
            [
                f"@ TXT {txt(SPF)}",
                f"_dmarc TXT {txt(DMARC)}",
                f"rsa._domainkey TXT {txt(keys.rsa_txt)}",
                f"ed._domainkey TXT {txt(keys.ed_txt)}",
                "mta A 127.0.0.1",
                f"mta TXT {txt('v=spf1 a -all')}",
            ],
            ttl=ttl,
        )
        ks.add_ptr("127.0.0.1", HELO, ttl=ttl)
        with contextlib.suppress(OSError, ValueError):
            cg.add_pid(int((workdir / "knot.pid").read_text().split()[0]))
    except BaseException:
        ks.stop()
        raise
    return ks


# ============================================================================ the matrix


def one_run(
    t: Target,
    pool: list[bytes],
    size: int,
    conc: int,
    args: Any,
    dns_cg: Any,
    *,
    run_no: int,
    record: bool = True,
) -> dict[str, Any]:
    t.before_run()
    time.sleep(args.settle)
    spec = LoadSpec(
        port=t.port,
        pool=pool,
        mail_from=SENDER,
        rcpt=t.rcpt,
        conc=conc,
        per_conn=args.per_conn,
        seconds=None if args.count else args.seconds,
        count=args.count or None,
        timeout=args.timeout,
    )
    use_source = record and args.loadgen == "smtp-source"
    if not record:
        spec.seconds, spec.count = args.warmup, None
    elif use_source:
        est = args.rate_est.get((t.name, size), 100.0)
        spec.seconds, spec.count = None, args.count or max(4 * conc, int(est * args.seconds))
    s0, d0, us0 = t.cpu(), dns_cg.cpu_seconds(), t.cpu_split()
    b0, _ = bl.system_cpu()
    la = bl.loadavg()
    res = load_smtp_source(spec, args.eml[size]) if use_source else load(spec)
    if not record:
        args.rate_est[(t.name, size)] = res.accepted / res.elapsed if res.elapsed else 100.0
    s1, d1, us1 = t.cpu(), dns_cg.cpu_seconds(), t.cpu_split()
    b1, _ = bl.system_cpu()
    row: dict[str, Any] = {
        "ts": time.strftime("%H:%M:%S"),
        "run": run_no,
        "target": t.name,
        "size": size,
        "conc": conc,
        "per_conn": args.per_conn,
        "accepted": res.accepted,
        "failed": res.failed,
        "errors": dict(res.errors),
        "elapsed_s": round(res.elapsed, 4),
        "msgs_s": round(res.accepted / res.elapsed, 1) if res.elapsed else 0.0,
        "msg_p50_ms": _ms(pct(res.msg_lat, 50)),
        "msg_p99_ms": _ms(pct(res.msg_lat, 99)),
        "txn_p50_ms": _ms(pct(res.txn_lat, 50)),
        "txn_p99_ms": _ms(pct(res.txn_lat, 99)),
        "server_cpu_s": round(s1 - s0, 3),
        "server_cpu_pct": round(100 * (s1 - s0) / res.elapsed, 1) if res.elapsed else None,
        "server_user_s": round(us1[0] - us0[0], 2),
        "server_sys_s": round(us1[1] - us0[1], 2),
        "cpu_ms_per_msg": round(1000 * (s1 - s0) / res.accepted, 3) if res.accepted else None,
        "client_cpu_s": round(res.client_cpu, 3),
        "dns_cpu_s": round(d1 - d0, 3),
        "other_cpu_s": round(max(0.0, (b1 - b0) - (s1 - s0) - res.client_cpu - (d1 - d0)), 3),
        "loadavg0": la,
    }
    if res.errors:
        row["error_samples"] = res.error_samples
    t.after_run(res, row, strict=args.strict)
    s2 = t.cpu()
    if res.accepted:
        row["cpu_ms_per_msg_total"] = round(1000 * (s2 - s0) / res.accepted, 3)
    return row


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 2)


def fmt_row(r: dict[str, Any]) -> str:
    err = ",".join(f"{k}={v}" for k, v in sorted(r["errors"].items())) or "0"
    extra = ""
    if "drain_s" in r:
        extra += f" drain+{r['drain_s']}s"
    if r.get("lost"):
        extra += f" LOST={r['lost']}"
    if "auth_logged" in r:
        extra += f" auth-pass={r['auth_logged'] - r['auth_not_pass']}/{r['auth_logged']}"
    return (
        f"run{r['run']} {r['target']:16s} {r['size']:6d}B c={r['conc']:<3d} "
        f"{r['accepted']:6d} ok {r['msgs_s']:8.1f}/s p50/p99 {_f(r['msg_p50_ms'])}/"
        f"{_f(r['msg_p99_ms'])} ms txn {_f(r['txn_p50_ms'])}/{_f(r['txn_p99_ms'])} ms "
        f"err={err} cpu={r['cpu_ms_per_msg']}ms/msg ({r['server_cpu_pct']}%, "
        f"usr {r['server_user_s']}s sys {r['server_sys_s']}s) "
        f"cli={r['client_cpu_s']}s dns={r['dns_cpu_s']}s other={r['other_cpu_s']}s{extra}"
    )


def med(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def _f(v: float | None, spec: str = ".1f") -> str:
    return "–" if v is None else format(v, spec)


def summarize(rows: list[dict[str, Any]], targets: Sequence[str]) -> tuple[str, dict[str, Any]]:
    cells: dict[tuple[str, int, int], list[dict[str, Any]]] = collections.defaultdict(list)
    for r in rows:
        cells[(r["target"], r["size"], r["conc"])].append(r)
    keys = sorted({(s, c) for (_t, s, c) in cells})
    rates = {k: med([r["msgs_s"] for r in v]) for k, v in cells.items()}
    refs = [t for t in ("postfix-maildir", "postfix-discard") if t in targets]
    head = (
        "| target | size | conc | msg/s | p50 ms | p99 ms | txn p50/p99 ms | errors "
        "| CPU ms/msg |" + "".join(f" ratio vs {r} |" for r in refs)
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    summary: dict[str, Any] = {"cells": []}
    for size, conc in keys:
        for t in targets:
            rs = cells.get((t, size, conc))
            if not rs:
                continue
            rate = rates[(t, size, conc)]
            span = ""
            if len(rs) > 1:
                span = f" [{min(r['msgs_s'] for r in rs):.0f}–{max(r['msgs_s'] for r in rs):.0f}]"
            errs: collections.Counter[str] = collections.Counter()
            for r in rs:
                errs.update(r["errors"])
            cpu = med([r.get("cpu_ms_per_msg") for r in rs])
            cpu_tot = med([r.get("cpu_ms_per_msg_total") for r in rs])
            cpu_s = _f(cpu, ".2f")
            if cpu_tot is not None and cpu is not None and cpu_tot > cpu * 1.02:
                cpu_s += f" (→{cpu_tot:.2f})"
            ratios = []
            cell: dict[str, Any] = {
                "target": t,
                "size": size,
                "conc": conc,
                "runs": len(rs),
                "msgs_s": rate,
                "msg_p50_ms": med([r["msg_p50_ms"] for r in rs]),
                "msg_p99_ms": med([r["msg_p99_ms"] for r in rs]),
                "txn_p50_ms": med([r["txn_p50_ms"] for r in rs]),
                "txn_p99_ms": med([r["txn_p99_ms"] for r in rs]),
                "errors": dict(errs),
                "cpu_ms_per_msg": cpu,
                "cpu_ms_per_msg_total": cpu_tot,
            }
            for ref in refs:
                rr = rates.get((ref, size, conc))
                if t == "mailwarden" and rr and rate is not None:
                    ratios.append(f"**{rate / rr:.2f}**")
                    cell[f"ratio_vs_{ref}"] = round(rate / rr, 3)
                else:
                    ratios.append("")
            summary["cells"].append(cell)
            err_s = ", ".join(f"{k}={v}" for k, v in sorted(errs.items())) or "0"
            lines.append(
                f"| {t} | {_size(size)} | {conc} | {_f(rate, '.0f')}{span} "
                f"| {_f(cell['msg_p50_ms'])} | {_f(cell['msg_p99_ms'])} "
                f"| {_f(cell['txn_p50_ms'])} / {_f(cell['txn_p99_ms'])} | {err_s} | {cpu_s} |"
                + "".join(f" {x} |" for x in ratios)
            )
    return "\n".join(lines), summary


def _size(n: int) -> str:
    return f"{n // 1024} KB" if n % 1024 == 0 else f"{n} B"


def verdict_lines(summary: dict[str, Any]) -> list[str]:
    out = []
    for c in summary["cells"]:
        if c["target"] == "mailwarden" and c["size"] == 2048 and c["conc"] == 10:
            for ref in ("postfix-maildir", "postfix-discard"):
                r = c.get(f"ratio_vs_{ref}")
                if r is not None:
                    ok = "MET" if r >= 0.5 else "NOT MET"
                    out.append(
                        f"Target (issue #2): mailwarden 2 KB c=10 = {100 * r:.0f}% of {ref} "
                        f"(need >= 50%): {ok}"
                    )
    return out


# ============================================================================ profiling


def profile(mw: MailwardenTarget, pools: dict[int, list[bytes]], args: Any, outdir: Path) -> str:
    """py-spy the server at c=10 for each size, with --gil: only the thread holding the GIL
    is sampled, so this shows where the Python CPU goes (in every thread). C code that
    releases the GIL (SQLite's I/O, fsync, hashing of large buffers) and the kernel are not
    in it; the cgroup's user/system split in the rows covers those. (Without --gil py-spy
    counts threads blocked on a queue as busy on this VM, and --native has the same problem.)
    """
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(pyspy).exists():
        return "py-spy not found: pip install py-spy"
    report = []
    dur, hz = max(3, int(args.profile)), 250
    for size, pool in pools.items():
        raw = outdir / f"pyspy-mailwarden-{size}-c10.txt"
        cmd = [pyspy, "record", "-p", str(mw.pid), "-r", str(hz), "-d", str(dur), "-f", "raw"]
        cmd += ["-o", str(raw), "--gil", "--nonblocking"]
        spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)
        res = load(LoadSpec(mw.port, pool, SENDER, mw.rcpt, 10, args.per_conn, dur - 1.0))
        _, err = spy.communicate(timeout=120)
        if spy.returncode != 0 or not raw.exists():
            report.append(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
            continue
        rate = res.accepted / res.elapsed if res.elapsed else 0.0
        report.append(
            f"### mailwarden profile, {_size(size)} c=10, {rate:.0f} msg/s while profiled\n"
            f"py-spy --gil --nonblocking, {hz} Hz for {dur} s (the GIL holder only: Python "
            f"CPU in any thread); raw stacks: {raw}\n\n" + summarize_collapsed(raw, dur * hz)
        )
    mw.sync_count()
    return "\n\n".join(report)


_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
# frames every stack starts with; left out of the inclusive tables
_ROOT_AREAS = {
    *("<frozen runpy>", "typer", "threading", "concurrent", "asyncio"),
    *("mailwarden/cli", "mailwarden/__main__", "mailwarden/app"),
}


def _area(path: str) -> str:
    """``mailwarden/auth/dkim.py`` -> ``mailwarden/auth``; ``dkim/__init__.py`` -> ``dkim``."""
    parts = path.split("/")
    if parts[0] == "mailwarden" and len(parts) > 1:
        return "mailwarden/" + parts[1].removesuffix(".py")
    return parts[0].removesuffix(".py") if len(parts) > 1 else path.removesuffix(".py")


def summarize_collapsed(path: Path, possible: int = 0, top: int = 15) -> str:
    self_fn: collections.Counter[str] = collections.Counter()
    incl_fn: collections.Counter[str] = collections.Counter()
    self_area: collections.Counter[str] = collections.Counter()
    incl_area: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = []
        for fr in stack.split(";"):
            m = _FRAME.match(fr)
            if m:
                frames.append((m.group("fn"), _area(m.group("file"))))
        if not frames:
            continue
        count = int(n)
        total += count
        fn, area = frames[-1]
        self_fn[f"{fn} ({area})"] += count
        self_area[area] += count
        for name in {f"{f} ({a})" for f, a in frames if a not in _ROOT_AREAS}:
            incl_fn[name] += count
        for a in {a for _f, a in frames if a not in _ROOT_AREAS}:
            incl_area[a] += count
    if not total:
        return "(no samples)"

    def tab(title: str, c: collections.Counter[str]) -> str:
        rows = [f"| {title} | % of samples |", "|---|---|"]
        rows += [f"| `{k}` | {100 * v / total:.1f} |" for k, v in c.most_common(top)]
        return "\n".join(rows)

    return "\n\n".join(
        [
            f"{total} samples"
            + (f" = GIL held {100 * total / possible:.0f}% of the time" if possible else ""),
            tab("self time by module", self_area),
            tab("inclusive time by module (event loop/thread roots left out)", incl_area),
            tab("self time by function", self_fn),
            tab("inclusive time by function", incl_fn),
        ]
    )


# ============================================================================ main


def install_prereqs() -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    need = [p for p, exe in (("postfix", "postfix"), ("knot", "knotd")) if not _which(exe)]
    if need:
        for sel in (
            "postfix postfix/main_mailer_type select No configuration",
            "postfix postfix/mailname string bench.local",
        ):
            subprocess.run(["debconf-set-selections"], input=sel, text=True, check=False)
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
        subprocess.run(["apt-get", "install", "-y", "-q", *need], env=env, check=True)
    if subprocess.run(["id", "mbench"], capture_output=True, check=False).returncode != 0:
        subprocess.run(
            [
                "useradd",
                "-r",
                "-M",
                "-d",
                f"{MB_ROOT}/home/mbench",
                "-s",
                "/sbin/nologin",
                "mbench",
            ],
            check=True,
        )


def _which(exe: str) -> str | None:
    return shutil.which(exe) or next(
        (f"{d}/{exe}" for d in ("/usr/sbin", "/sbin") if Path(d, exe).exists()), None
    )


def check_prereqs(targets: Sequence[str]) -> None:
    problems = []
    if os.geteuid() != 0:
        problems.append("run as root (Postfix instances and cgroup CPU accounting need it)")
    if any(t.startswith("postfix") for t in targets):
        if not _which("postfix"):
            problems.append("postfix is not installed: apt-get install -y postfix")
        if subprocess.run(["id", "mbench"], capture_output=True, check=False).returncode:
            problems.append(
                "no user mbench: useradd -r -M -d /var/tmp/mailbench/home/mbench "
                "-s /usr/sbin/nologin mbench"
            )
        if not POSTFIX_SETUP.exists():
            problems.append(f"{POSTFIX_SETUP} not found (set MAILBENCH_DIR)")
    if not _which("knotd"):
        problems.append("Knot DNS is not installed: apt-get install -y knot knot-dnsutils")
    if problems:
        raise BenchAbort(
            "prerequisites missing (or re-run with --install):\n  " + "\n  ".join(problems)
        )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="2048,102400", help="body sizes in bytes")
    ap.add_argument("--conc", default="1,10,50", help="concurrent SMTP clients")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of one measured run")
    ap.add_argument("--count", type=int, default=0, help="messages per run instead of --seconds")
    ap.add_argument("--runs", type=int, default=3, help="repetitions of the whole matrix")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per target/size")
    ap.add_argument("--settle", type=float, default=1.0, help="idle seconds before each run")
    ap.add_argument(
        "--targets",
        default="mailwarden,postfix-maildir,postfix-discard",
        help=f"comma-separated, from {', '.join(ALL_TARGETS)}",
    )
    ap.add_argument(
        "--loadgen",
        choices=["python", "smtp-source"],
        default="python",
        help="python: this script's asyncio client (latencies, a new message each time); "
        "smtp-source: Postfix's C client, one message repeated, no latencies",
    )
    ap.add_argument("--per-conn", type=int, default=1, help="messages per connection (0=reuse)")
    ap.add_argument("--pool", type=int, default=200, help="distinct signed messages per size")
    ap.add_argument(
        "--dkim",
        choices=["rsa", "ed25519", "both", "none"],
        default="rsa",
        help="signature(s) per message; none = unsigned (DMARC then passes on SPF alone; "
        "shows what DKIM verification costs)",
    )
    ap.add_argument("--dns-ttl", type=int, default=3600, help="TTL of the sender's records")
    ap.add_argument("--no-dns-cache", action="store_true", help="mailwarden with dns.cache=false")
    ap.add_argument(
        "--mw-set",
        action="append",
        default=[],
        metavar="KEY=YAML",
        help="extra mailwarden config, e.g. storage.sqlite_synchronous=NORMAL (repeatable)",
    )
    ap.add_argument(
        "--mailwarden-cmd",
        default=f"{shlex.quote(sys.executable)} -m mailwarden",
        help="command prefix for the mailwarden CLI (default: this Python -m mailwarden)",
    )
    ap.add_argument("--mw-port", type=int, default=DEFAULT_PORTS["mailwarden"])
    ap.add_argument("--timeout", type=float, default=60.0, help="per-message client timeout")
    ap.add_argument(
        "--profile",
        type=float,
        default=0,
        metavar="SECONDS",
        help="after the matrix, py-spy mailwarden for SECONDS per size at c=10",
    )
    ap.add_argument("--strict", action="store_true", help="abort on the first lost message")
    ap.add_argument("--keep", action="store_true", help="keep temp dirs and Postfix instances")
    ap.add_argument("--install", action="store_true", help="apt-get postfix/knot, add mbench")
    ap.add_argument("--out", help="write every run as CSV here")
    ap.add_argument("--json", help="write rows + summary as JSON here")
    args = ap.parse_args(argv)
    args.size_list = [int(x) for x in args.sizes.split(",") if x]
    args.conc_list = [int(x) for x in args.conc.split(",") if x]
    args.target_list = [x for x in args.targets.split(",") if x]
    args.rate_est = {}
    args.eml = {}
    bad = [t for t in args.target_list if t not in ALL_TARGETS]
    if bad:
        ap.error(f"unknown target(s) {bad}; choose from {ALL_TARGETS}")
    return args


def _raise_exit(signum: int, _frame: object) -> None:
    raise SystemExit(f"signal {signum}")


CSV_FIELDS = [
    "ts", "run", "target", "size", "conc", "per_conn", "accepted", "failed", "errors",
    "elapsed_s", "msgs_s", "msg_p50_ms", "msg_p99_ms", "txn_p50_ms", "txn_p99_ms",
    "server_cpu_s", "server_cpu_pct", "server_user_s", "server_sys_s", "cpu_ms_per_msg",
    "cpu_ms_per_msg_total", "client_cpu_s",
    "dns_cpu_s", "other_cpu_s", "loadavg0", "drain_s", "stored", "lost", "auth_logged",
    "auth_not_pass", "auth_sample", "log_errors", "tracebacks",
]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_exit)
    # even when started in the background, where SIGINT would be ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if args.install:
            install_prereqs()
        check_prereqs(args.target_list)
        for t in args.target_list:
            port = args.mw_port if t == "mailwarden" else DEFAULT_PORTS[t]
            for p in (port, port + 10) if t.startswith("postfix") else (port,):
                if not port_free(p):
                    raise BenchAbort(f"port 127.0.0.1:{p} for {t} is in use")
    except BenchAbort as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    args.version = source_version()
    MB_ROOT.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="mwb-", dir=MB_ROOT))
    outdir = root
    rows: list[dict[str, Any]] = []
    targets: list[Target] = []
    mw: MailwardenTarget | None = None
    rc = 0
    dns_cg = bl.CGroup("mwb-knot")
    ks: Any = None
    profile_text = ""
    t_begin = time.monotonic()
    try:
        log(f"work dir {root}")
        keys = make_keys()
        t0 = time.perf_counter()
        tag = uuid.uuid4().hex[:6]
        pools = {s: build_pool(s, args.pool, keys, args.dkim, tag) for s in args.size_list}
        log(
            f"signed {args.pool} messages per size ({args.dkim}, relaxed/relaxed) in "
            f"{time.perf_counter() - t0:.1f}s; wire sizes "
            + ", ".join(f"{s}: {len(p[0])} B" for s, p in pools.items())
        )
        for s, p in pools.items():
            args.eml[s] = write_eml(p[0], root / f"message-{s}.eml")
        ks = start_dns(root / "knot", keys, args.dns_ttl, dns_cg)
        log(f"knot serving {SENDER_DOMAIN} and test. on {ks.nameserver}")
        for name in args.target_list:
            t: Target
            if name == "mailwarden":
                cmd = shlex.split(args.mailwarden_cmd)
                mw = MailwardenTarget(args.mw_port, root, cmd, ks.nameserver, args)
                t = mw
            else:
                mode = name.split("-", 1)[1]
                t = PostfixTarget(name, DEFAULT_PORTS[name], mode)
            targets.append(t)
            t.start()
            log(f"started {name} on 127.0.0.1:{t.port} (cgroup {t.cg.kind})")
        if mw is not None:
            # one message first: fail fast and clearly if the auth layer is not working
            res = load(
                LoadSpec(
                    mw.port,
                    pools[args.size_list[0]],
                    SENDER,
                    MW_USER,
                    1,
                    count=1,
                    seconds=None,
                    timeout=30,
                )
            )
            if not res.accepted:
                raise BenchAbort(
                    f"mailwarden refused the first signed message: {res.error_samples}\n"
                    + mw.log_tail(20)
                )
            mw.after_run(res, {"size": args.size_list[0], "conc": 1, "run": 0}, strict=True)
            log(f"preflight: mailwarden stored a message, auth as expected ({res.last_reply})")
        for size in args.size_list:
            for t in targets:
                r = one_run(t, pools[size], size, 10, args, dns_cg, run_no=0, record=False)
                log("warm-up " + fmt_row(r))
        for run_no in range(1, args.runs + 1):
            cell = 0
            for size in args.size_list:
                for conc in args.conc_list:
                    order = targets if (cell + run_no) % 2 == 0 else targets[::-1]
                    cell += 1
                    for t in order:
                        r = one_run(t, pools[size], size, conc, args, dns_cg, run_no=run_no)
                        rows.append(r)
                        log(fmt_row(r))
        if args.profile and mw is not None:
            profile_text = profile(mw, pools, args, outdir)
    except BenchAbort as exc:
        print(f"\nABORTED: {exc}", file=sys.stderr)
        rc = 2
    except (KeyboardInterrupt, SystemExit) as exc:
        print(f"\ninterrupted ({exc!r}); stopping everything", file=sys.stderr)
        rc = 130
    finally:
        for t in reversed(targets):
            try:
                t.stop()
            except Exception as exc:  # keep stopping the others
                print(f"stopping {t.name}: {exc!r}", file=sys.stderr)
        if ks is not None:
            ks.stop()
        dns_cg.remove()
        bl.remove_cgroup_root()
        if not args.keep:
            keep_files = [p for p in root.glob("pyspy-*")] if args.profile else []
            if keep_files:
                dest = Path(tempfile.mkdtemp(prefix="mwb-profile-", dir=MB_ROOT))
                for p in keep_files:
                    shutil.move(str(p), dest / p.name)
                profile_text = profile_text.replace(str(root), str(dest))
                log(f"py-spy output kept in {dest}")
            shutil.rmtree(root, ignore_errors=True)
            for t in targets:
                if isinstance(t, PostfixTarget):
                    shutil.rmtree(t.base, ignore_errors=True)
        else:
            log(f"kept {root}")

    if rows:
        mw_rows = [r for r in rows if r["target"] == "mailwarden"]
        table, summary = summarize(rows, args.target_list)
        print(f"\n## Inbound SMTP, {time.strftime('%Y-%m-%d %H:%M')}, {_describe(args)}\n")
        print(table)
        print()
        for line in verdict_lines(summary):
            print(line)
        if mw_rows:
            print(
                f"\nmailwarden: {sum(r['accepted'] for r in mw_rows)} messages accepted in the "
                f"measured runs, {sum(r['stored'] for r in mw_rows)} stored, "
                f"{sum(r['lost'] for r in mw_rows)} lost; expected SPF/DKIM/DMARC results "
                f"(dkim={'none' if args.dkim == 'none' else 'pass'}, others pass) logged for "
                f"{sum(r['auth_logged'] - r['auth_not_pass'] for r in mw_rows)}, other results for "
                f"{sum(r['auth_not_pass'] for r in mw_rows)}; Authentication-Results checked on "
                f"{sum(1 for r in mw_rows if r.get('auth_sample') == 'pass')} stored samples"
            )
        other = [r["other_cpu_s"] / r["elapsed_s"] for r in rows if r["elapsed_s"]]
        if other:
            print(
                f"noise: other CPU on the box (not server/client/knot) median "
                f"{statistics.median(other):.2f} cores, max {max(other):.2f}"
            )
        if args.out:
            with open(args.out, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
                w.writeheader()
                for r in rows:
                    w.writerow({**r, "errors": json.dumps(r["errors"])})
        if args.json:
            Path(args.json).write_text(
                json.dumps({"args": _describe(args), "rows": rows, **summary}, indent=1)
            )
    problems = mw.problems if mw is not None else []
    for p in problems:
        print(f"PROBLEM: {p}")
    if problems and rc == 0:
        rc = 1
    if profile_text:
        print("\n" + profile_text)
    log(f"total time {time.monotonic() - t_begin:.0f}s")
    return rc


def source_version() -> str:
    """The mailwarden source measured: commit, and whether src/ had uncommitted changes."""
    git = ["git", "-C", str(REPO)]
    head = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "src"], capture_output=True, text=True, check=False
    )
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + (" + uncommitted changes in src/" if dirty.stdout.strip() else "")


def _describe(args: Any) -> str:
    reuse = "new connection per message" if args.per_conn == 1 else f"per_conn={args.per_conn}"
    reuse += f", client {args.loadgen}"
    length = f"{args.count} msgs" if args.count else f"{args.seconds:g} s"
    return (
        f"mailwarden {args.version}; {args.runs} run(s) x {length} per cell, {reuse}, "
        f"DKIM {args.dkim}, "
        f"mailwarden dns.cache={'off' if args.no_dns_cache else 'on'} (TTL {args.dns_ttl}s)"
        + (f", {' '.join(args.mw_set)}" if args.mw_set else "")
        + "; Postfix does no SPF/DKIM/DMARC; medians over runs [min–max]"
    )


if __name__ == "__main__":
    sys.exit(main())
