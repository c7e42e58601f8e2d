#!/usr/bin/env python3
"""IMAP benchmark (issue #4): mailwarden against Dovecot on the same 10,000-message mailbox.

Both servers get the shared deterministic corpus (``../shared/bench/setup/gen_maildir.py``,
seed 1: 10,000 messages, 229 MB, 93 Subjects carrying ``XYZZY-needle``). Everything runs on
127.0.0.1. Three phases, each interleaving the two servers:

1. **load**: mailwarden (fresh data dir under ``$MB_ROOT/mwb-imap-*``, SQLite, one worker,
   an IMAP listener without TLS plus an SMTP ``mx`` listener) gets the corpus over APPEND
   (``imap_bench.py --load-corpus``); then the bench waits until its background search
   indexing has finished (no message without a ``search_text`` row, and the server idle), so
   no timed operation pays for indexing. Dovecot reads the maildir in place.
2. **harness ops**: the shared ``run_imap.py`` starts Dovecot (``setup/dovecot_instance.sh``)
   and mailwarden, each in its own cpuacct cgroup, does one cold pass per server and then
   ``--rounds`` interleaved warm passes per client (``imaplib`` and ``raw``), each a fresh
   connection running login_select, fetch_meta, fetch_bodies (1000), search_header
   (``UID SEARCH HEADER Subject "XYZZY-needle"``), store_add (``STORE 1:1000 +FLAGS.SILENT
   (\\Flagged)``) and store_remove (``-FLAGS``, which also puts the flags back so every round
   starts from the same state). It asserts EXISTS = --count in every pass.
3. **search text + IDLE** (this script's own raw client, servers restarted in our cgroups):
   per round and server, ``UID SEARCH TEXT "XYZZY-needle"`` (93 hits, found in the Subject)
   and ``UID SEARCH BODY "mike november oscar budget"`` (5 hits, body only), each on a fresh
   connection, timed from command to tagged OK; then IDLE latency: a client SELECTs INBOX
   and IDLEs, one message is delivered, and the time from the delivery being acknowledged
   to the ``* n EXISTS`` line is taken, --idle-count times per round and server.
   mailwarden gets the message over SMTP on its mx listener (smtplib, one connection,
   timed from the 250 after DATA); Dovecot through ``dovecot-lda`` (timed from the LDA's
   exit; Dovecot's IDLE wakes on inotify on the maildir and its index log, with
   ``mailbox_idle_check_interval`` as a fallback). The delivered probes are expunged at the
   end, so the Dovecot maildir is back at --count messages.

Output: one markdown table per client (operation, Dovecot median [min-max], mailwarden median
[min-max], ratio mailwarden / Dovecot, the 3x target of the issue, server CPU per op from the
cgroups), ``--json OUT`` for the raw numbers. Result counts are checked: the same hits and
bytes on both servers, 93 for the header search.

Needs root (Dovecot, cgroups, dovecot-lda), ``apt-get install dovecot-imapd``, a system user
``mbench`` (created if missing) and the project's virtualenv::

    .venv/bin/python bench/imap.py                      # 10,000 messages, 5 rounds, ~15 min
    .venv/bin/python bench/imap.py --rounds 3 --json /tmp/imap.json
    .venv/bin/python bench/imap.py --profile fetch_meta,search_text   # + py-spy of mailwarden
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import json
import os
import queue
import re
import shlex
import shutil
import signal
import smtplib
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED_BENCH = Path(
    os.environ.get("MAILBENCH_DIR", Path(__file__).resolve().parents[2] / "shared" / "bench")
)
MB_ROOT = Path(os.environ.get("MB_ROOT", "/var/tmp/mailbench"))
DOVE_CONF = MB_ROOT / "dovecot" / "dovecot.conf"
DOVE_MAILDIR = MB_ROOT / "imap" / "bench" / "Maildir"
CORPUS_LIST = MB_ROOT / "imap" / "corpus.list"
LDA = "/usr/lib/dovecot/dovecot-lda"

DOVE_PORT = 12143  # run_imap.py's default; its Dovecot user is bench / benchpass
MW_IMAP_PORT = 12601
MW_SMTP_PORT = 12602
DEAD_DNS = "127.0.0.1:12609"  # nothing listens: SPF/DKIM/DMARC lookups fail at once (temperror)
MW_HOSTNAME = "imap.bench.test"
MW_DOMAIN = "bench.test"
MW_USER = f"bench@{MW_DOMAIN}"
PASSWORD = "benchpass"
DOVE_USER = "bench"

HARNESS_OPS = ["login_select", "fetch_meta", "fetch_bodies", "search_header", "store_add"]
EXTRA_OPS = ["store_remove"]
TEXT_NEEDLE = "XYZZY-needle"  # in 93 Subjects: TEXT finds it in the header
BODY_NEEDLE = "mike november oscar budget"  # in the body text of 5 messages
OP_LABELS = {
    "login_select": "connect + LOGIN + SELECT INBOX",
    "fetch_meta": "FETCH 1:* (FLAGS UID RFC822.SIZE)",
    "fetch_bodies": "FETCH 9001:10000 (BODY.PEEK[]), 1000 bodies",
    "search_header": 'UID SEARCH HEADER Subject "XYZZY-needle"',
    "store_add": "STORE 1:1000 +FLAGS.SILENT (\\Flagged)",
    "store_remove": "STORE 1:1000 -FLAGS (\\Flagged) (restores; not in the issue)",
    "append": "200 × APPEND into a scratch folder (--append; not in the issue)",
    "login": "LOGIN alone (Dovecot: {PLAIN} passwd-file; mailwarden: argon2id)",
    "select": "SELECT INBOX alone",
    "search_text": f'UID SEARCH TEXT "{TEXT_NEEDLE}"',
    "search_body": f'UID SEARCH BODY "{BODY_NEEDLE}" (not in the issue)',
    "idle": "IDLE: delivery acknowledged -> * n EXISTS",
}
TARGET_RATIO = 3.0
sys.path.insert(0, str(HERE))
import smtp_inbound as si  # noqa: E402  (shared bench helpers, as outbound.py uses them)

bl: Any = si.bl  # the shared harness's helpers (cgroups, CPU accounting)
BenchAbort = si.BenchAbort
log = si.log
run = si.run
port_free = si.port_free
pct = si.pct


# ============================================================================ servers


class Mailwarden:
    name = "mailwarden"

    def __init__(self, root: Path, args: argparse.Namespace) -> None:
        self.root = root / "mailwarden"
        self.config = self.root / "mailwarden.yaml"
        self.data = self.root / "data"
        self.log_path = self.root / "server.log"
        self.cmd = [sys.executable, "-m", "mailwarden"]
        self.args = args
        self.cg = bl.CGroup("mwb-imap-mailwarden")
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    def mw(self, *argv: str, inp: str | None = None) -> str:
        return run([*self.cmd, *argv, "--config", str(self.config)], inp=inp)

    def run_argv(self) -> list[str]:
        return [*self.cmd, "run", "--config", str(self.config)]

    def setup(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.mw("init", "--hostname", MW_HOSTNAME, "--data-dir", str(self.data))
        cfg = yaml.safe_load(self.config.read_text())
        for lst in cfg["listeners"].values():
            lst["enabled"] = False
        cfg["listeners"]["imap"].update(
            {"address": "127.0.0.1", "port": MW_IMAP_PORT, "tls": "none", "enabled": True}
        )
        cfg["listeners"]["mx"].update(
            {"address": "127.0.0.1", "port": MW_SMTP_PORT, "tls": "none", "enabled": True}
        )
        cfg["workers"] = 1
        cfg["log_level"] = "INFO"
        cfg["dns"] = {"nameservers": [DEAD_DNS], "timeout": 0.2}
        cfg["limits"] = {"max_connections_per_ip": 10_000, "max_connections": 10_000}
        cfg["imap"] = {
            "plaintext_auth_networks": ["127.0.0.1/32"],  # as Dovecot's ssl=no instance
            "auth_failure_delay": 0,
            "max_connections_per_ip": 10_000,
        }
        for extra in self.args.mw_set:
            key, _, value = extra.partition("=")
            node = cfg
            *path, last = key.split(".")
            for part in path:
                node = node.setdefault(part, {})
            node[last] = yaml.safe_load(value)
        self.config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.mw("config", "check")
        self.mw("domain", "add", MW_DOMAIN)
        self.mw("user", "add", MW_USER, "--password-stdin", inp=PASSWORD + "\n")

    def start(self) -> None:
        self._log_file = self.log_path.open("ab")
        offset = self.log_path.stat().st_size
        self.proc = subprocess.Popen(
            self.run_argv(),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=self.cg.preexec,  # noqa: PLW1509 - moves the child into its cgroup
            start_new_session=True,
            cwd=self.root,
        )
        self.cg.root_pids.append(self.proc.pid)
        deadline = time.monotonic() + 60
        want = f"imap=127.0.0.1:{MW_IMAP_PORT}"
        while time.monotonic() < deadline:
            with self.log_path.open("rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
            if "READY " in text and want in text:
                return
            if self.proc.poll() is not None:
                raise BenchAbort(f"mailwarden exited with {self.proc.returncode}:\n{text[-3000:]}")
            time.sleep(0.1)
        raise BenchAbort("mailwarden did not print READY within 60 s")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(30)
        if self.proc is not None:
            bl.stop_tree(self.proc.pid, self.cg, 5.0)
            self.proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def unindexed(self) -> int:
        """Stored messages whose body has no search-index row yet."""
        db = sqlite3.connect(f"file:{self.data / 'mailwarden.db'}?mode=ro", uri=True, timeout=30)
        try:
            row = db.execute(
                "SELECT COUNT(*) FROM messages m WHERE NOT EXISTS "
                "(SELECT 1 FROM search_text s WHERE s.blob = m.blob)"
            ).fetchone()
        finally:
            db.close()
        return int(row[0])

    def log_problems(self) -> list[str]:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        out = []
        errors = [ln for ln in text.splitlines() if " ERROR " in ln[:60] or " CRITICAL " in ln[:60]]
        if errors:
            out.append(f"{len(errors)} ERROR lines in {self.log_path}, e.g. {errors[0][:300]}")
        tb = text.count("Traceback (most recent call last)")
        if tb:
            out.append(f"{tb} tracebacks in {self.log_path}")
        return out


class Dovecot:
    name = "dovecot"

    def __init__(self) -> None:
        self.cg = bl.CGroup("mwb-imap-dovecot")
        self.running = False

    def start(self) -> None:
        run(["dovecot", "-c", str(DOVE_CONF), "stop"], check=False)
        subprocess.run(
            ["dovecot", "-c", str(DOVE_CONF)],
            check=True,
            preexec_fn=self.cg.preexec,  # moves dovecot into its cgroup
        )
        self.running = True
        if not bl.wait_port("127.0.0.1", DOVE_PORT, 20):
            raise BenchAbort("dovecot did not start")

    def stop(self) -> None:
        if self.running:
            run(["dovecot", "-c", str(DOVE_CONF), "stop"], check=False)
            time.sleep(1)
            self.running = False
        # anything still in our cgroup (we started it): SIGTERM, then SIGKILL, by PID only
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = [p for p in (self.cg.pids() if self.cg.kind else []) if p != os.getpid()]
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            if pids:
                time.sleep(1)

    def deliver(self, msg: bytes) -> None:
        p = subprocess.run(
            [LDA, "-c", str(DOVE_CONF), "-d", DOVE_USER, "-f", "probe@sender.test"],
            input=msg,
            capture_output=True,
            check=False,
        )
        if p.returncode != 0:
            raise BenchAbort(f"dovecot-lda failed ({p.returncode}): {p.stderr[-500:]!r}")


# ============================================================================ raw IMAP client


class ImapConn:
    """Minimal blocking IMAP client: tagged commands, untagged lines kept, literals skipped."""

    def __init__(self, port: int, user: str, password: str, timeout: float = 600) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.sock.makefile("rb", buffering=1 << 16)
        self.n = 0
        greet = self.f.readline()
        if not greet.startswith(b"* OK"):
            raise BenchAbort(f"bad greeting {greet!r}")
        t0 = time.perf_counter()
        self.command(f'LOGIN "{user}" "{password}"')
        t1 = time.perf_counter()
        lines = self.command("SELECT INBOX")
        self.login_ms, self.select_ms = (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3
        self.exists = next(
            int(m.group(1)) for ln in lines if (m := re.match(rb"\* (\d+) EXISTS", ln))
        )

    def tag(self) -> bytes:
        self.n += 1
        return b"W%d" % self.n

    def command(self, line: str) -> list[bytes]:
        tag = self.tag()
        self.sock.sendall(tag + b" " + line.encode() + b"\r\n")
        return self.read_until(tag)

    def read_until(self, tag: bytes) -> list[bytes]:
        lines = []
        while True:
            line = self.f.readline()
            if not line:
                raise BenchAbort("server closed the connection")
            while (m := re.search(rb"\{(\d+)\+?\}\r\n$", line)) is not None:
                self.f.read(int(m.group(1)))
                line = line[: m.start()] + b"<lit>" + self.f.readline()
            if line.startswith(tag + b" "):
                if line.split(b" ", 2)[1] != b"OK":
                    raise BenchAbort(f"command failed: {line[:300]!r}")
                return lines
            lines.append(line)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.command("LOGOUT")
        with contextlib.suppress(Exception):
            self.f.close()
            self.sock.close()


def timed_search(port: int, user: str, criteria: str, cg: Any) -> dict[str, Any]:
    c = ImapConn(port, user, PASSWORD)
    try:
        s0 = cg.cpu_seconds() if cg.kind else None
        t0 = time.perf_counter()
        lines = c.command("UID SEARCH " + criteria)
        t1 = time.perf_counter()
        s1 = cg.cpu_seconds() if cg.kind else None
    finally:
        c.close()
    hits = [u for ln in lines if ln.startswith(b"* SEARCH") for u in ln[8:].split()]
    return {
        "login_ms": c.login_ms,
        "select_ms": c.select_ms,
        "ms": (t1 - t0) * 1e3,
        "server_cpu_ms": (s1 - s0) * 1e3 if s0 is not None and s1 is not None else None,
        "hits": len(hits),
    }


def probe_message(i: int, target: str) -> bytes:
    return (
        f"From: Probe <probe@sender.test>\r\nTo: {MW_USER}\r\n"
        f"Subject: mwb idle probe {target} {i}\r\nMessage-ID: <idle-{target}-{i}-"
        f"{time.time_ns()}@sender.test>\r\nDate: {time.strftime('%a, %d %b %Y %H:%M:%S +0000')}"
        "\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n" + "IDLE latency probe.\r\n" * 20
    ).encode()


def idle_latency(
    port: int, user: str, deliver: Callable[[int], None], count: int, gap: float
) -> list[dict[str, float]]:
    """IDLE on INBOX; deliver ``count`` messages one at a time; per delivery, the ms from
    the acknowledgement (deliver() returned) to the ``* n EXISTS`` line."""
    c = ImapConn(port, user, PASSWORD)
    lines: queue.Queue[tuple[float, bytes]] = queue.Queue()

    def reader() -> None:
        while True:
            try:
                line = c.f.readline()
            except (OSError, ValueError):
                line = b""
            lines.put((time.perf_counter(), line))
            if not line:
                return

    def wait_for(pred: Callable[[bytes], bool], what: str) -> tuple[float, bytes]:
        deadline = time.monotonic() + 30
        while True:
            try:
                t, line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise BenchAbort(f"IDLE: no {what} within 30 s") from None
            if not line:
                raise BenchAbort("IDLE: server closed the connection")
            if pred(line):
                return t, line

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    exists = c.exists
    out = []
    try:
        for i in range(count):
            tag = c.tag()
            c.sock.sendall(tag + b" IDLE\r\n")
            wait_for(lambda ln: ln.startswith(b"+"), "continuation")
            time.sleep(gap)
            t0 = time.perf_counter()
            deliver(i)
            t_ack = time.perf_counter()

            def is_new(ln: bytes, seen: int = exists) -> bool:
                m = re.match(rb"\* (\d+) EXISTS", ln)
                return m is not None and int(m.group(1)) > seen

            t_ex, line = wait_for(is_new, "EXISTS")
            exists = int(line.split()[1])
            c.sock.sendall(b"DONE\r\n")
            _, done = wait_for(lambda ln, tag=tag: ln.startswith(tag + b" "), "IDLE completion")
            if done.split(b" ", 2)[1] != b"OK":
                raise BenchAbort(f"IDLE failed: {done!r}")
            out.append(
                {
                    "latency_ms": (t_ex - t_ack) * 1e3,
                    "deliver_ms": (t_ack - t0) * 1e3,
                    "total_ms": (t_ex - t0) * 1e3,
                }
            )
        tag = c.tag()
        c.sock.sendall(tag + b" LOGOUT\r\n")
        with contextlib.suppress(BenchAbort):
            wait_for(lambda ln: ln.startswith(tag + b" "), "LOGOUT")
    finally:
        with contextlib.suppress(Exception):
            c.sock.shutdown(socket.SHUT_RDWR)
        th.join(5)
        with contextlib.suppress(Exception):
            c.f.close()
            c.sock.close()
    return out


def expunge_above(port: int, user: str, count: int) -> int:
    """Delete every message after the first ``count`` (the IDLE probes); returns how many."""
    c = ImapConn(port, user, PASSWORD)
    try:
        extra = c.exists - count
        if extra > 0:
            c.command(f"STORE {count + 1}:* +FLAGS.SILENT (\\Deleted)")
            c.command("EXPUNGE")
    finally:
        c.close()
    return max(0, extra)


# ============================================================================ phases


def ensure_corpus(count: int) -> None:
    if not DOVE_CONF.exists() or not CORPUS_LIST.exists():
        run([str(SHARED_BENCH / "setup" / "dovecot_instance.sh"), str(DOVE_PORT)])
    have = len(CORPUS_LIST.read_text().split()) if CORPUS_LIST.exists() else -1
    if have != count:
        log(f"generating the {count}-message corpus (gen_maildir.py, seed 1)")
        run(
            [
                sys.executable,
                str(SHARED_BENCH / "setup" / "gen_maildir.py"),
                str(DOVE_MAILDIR),
                "--count",
                str(count),
                "--export-dir",
                str(MB_ROOT / "imap" / "corpus"),
                "--list-out",
                str(CORPUS_LIST),
                "--mbox-out",
                str(MB_ROOT / "imap" / "corpus2000.mbox"),
            ]
        )


def load_mailwarden(mw: Mailwarden, args: argparse.Namespace) -> dict[str, Any]:
    mw.start()
    c0 = mw.cg.cpu_seconds()
    t0 = time.perf_counter()
    out = run(
        [
            sys.executable,
            str(SHARED_BENCH / "imap_bench.py"),
            "--port",
            str(MW_IMAP_PORT),
            "--user",
            MW_USER,
            "--password",
            PASSWORD,
            "--load-corpus",
            str(CORPUS_LIST),
        ]
    )
    t_load = time.perf_counter() - t0
    c_load = mw.cg.cpu_seconds() - c0
    log(f"mailwarden: {out.strip()}; server CPU {c_load:.1f} s")
    # wait for the background search indexing: nothing unindexed and the server idle
    deadline = time.monotonic() + args.index_timeout
    while True:
        left = mw.unindexed()
        c1 = mw.cg.cpu_seconds()
        time.sleep(1.0)
        busy = mw.cg.cpu_seconds() - c1
        if left == 0 and busy < 0.05:
            break
        if time.monotonic() > deadline:
            raise BenchAbort(f"search indexing not done after {args.index_timeout} s: {left} left")
    t_index = time.perf_counter() - t0 - t_load - 1.0
    res = {
        "messages": args.count,
        "append_s": round(t_load, 2),
        "append_per_s": round(args.count / t_load, 1),
        "server_cpu_append_s": round(c_load, 2),
        "index_settle_s": round(max(0.0, t_index), 2),
        "server_cpu_total_s": round(mw.cg.cpu_seconds() - c0, 2),
        "db_bytes": sum(p.stat().st_size for p in mw.data.rglob("*") if p.is_file()),
    }
    log(f"mailwarden: search index settled {res['index_settle_s']} s after the last APPEND")
    mw.stop()
    return res


def harness_ops(mw: Mailwarden, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    out = root / "run_imap.json"
    ops = HARNESS_OPS + EXTRA_OPS + (["append"] if args.append else [])
    cmd = [
        sys.executable,
        str(SHARED_BENCH / "run_imap.py"),
        "--count",
        str(args.count),
        "--rounds",
        str(args.rounds),
        "--clients",
        args.clients,
        "--ops",
        ",".join(ops),
        "--port",
        str(DOVE_PORT),
        "--custom-cmd",
        shlex.join(mw.run_argv()),
        "--custom-port",
        str(MW_IMAP_PORT),
        "--custom-user",
        MW_USER,
        "--custom-pass",
        PASSWORD,
        "--expect-exists",
        "--out",
        str(out),
    ]
    log("run_imap.py: " + shlex.join(cmd[2:]))
    env = {**os.environ, "MB_ROOT": str(MB_ROOT)}
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, check=False)
    text = p.stdout.decode(errors="replace")
    (root / "run_imap.log").write_text(text)
    if p.returncode != 0 or not out.exists():
        raise BenchAbort(f"run_imap.py failed ({p.returncode}):\n{text[-4000:]}")
    sys.stderr.write(text)
    return dict(json.loads(out.read_text()))


def own_ops(
    mw: Mailwarden, dv: Dovecot, args: argparse.Namespace
) -> tuple[dict[str, Any], dict[str, Any]]:
    """search_text, search_body and IDLE, per round, servers in alternating order."""
    searches: dict[str, dict[str, list[dict[str, Any]]]] = collections.defaultdict(
        lambda: collections.defaultdict(list)
    )
    idle: dict[str, list[list[dict[str, float]]]] = collections.defaultdict(list)
    smtp = smtplib.SMTP("127.0.0.1", MW_SMTP_PORT, local_hostname="probe.sender.test", timeout=60)

    def mw_deliver(i: int) -> None:
        refused = smtp.sendmail("probe@sender.test", [MW_USER], probe_message(i, "mw"))
        if refused:
            raise BenchAbort(f"mailwarden refused the IDLE probe: {refused}")

    targets = [
        ("dovecot", DOVE_PORT, DOVE_USER, dv.cg, lambda i: dv.deliver(probe_message(i, "dv"))),
        ("mailwarden", MW_IMAP_PORT, MW_USER, mw.cg, mw_deliver),
    ]
    try:
        for rnd in range(args.rounds):
            order = targets if rnd % 2 == 0 else targets[::-1]
            for name, port, user, cg, _d in order:
                searches[name]["search_text"].append(
                    timed_search(port, user, f'TEXT "{TEXT_NEEDLE}"', cg)
                )
                searches[name]["search_body"].append(
                    timed_search(port, user, f'BODY "{BODY_NEEDLE}"', cg)
                )
            for name, port, user, _cg, deliver in order:
                idle[name].append(idle_latency(port, user, deliver, args.idle_count, args.idle_gap))
            log(f"search text/body + IDLE round {rnd + 1}/{args.rounds} done")
    finally:
        with contextlib.suppress(Exception):
            smtp.quit()
        time.sleep(0.5)
        for name, port, user, *_ in targets:
            with contextlib.suppress(Exception):
                n = expunge_above(port, user, args.count)
                log(f"{name}: expunged {n} IDLE probes")
    return {k: dict(v) for k, v in searches.items()}, dict(idle)


# ============================================================================ profile


def profile_commands(count: int) -> dict[str, list[str]]:
    """The IMAP command(s) repeated on one connection while an op is profiled."""
    return {
        "fetch_meta": ["FETCH 1:* (FLAGS UID RFC822.SIZE)"],
        "fetch_bodies": [f"FETCH {max(1, count - 999)}:{count} (BODY.PEEK[])"],
        "search_header": [f'UID SEARCH HEADER Subject "{TEXT_NEEDLE}"'],
        "search_text": [f'UID SEARCH TEXT "{TEXT_NEEDLE}"'],
        "search_body": [f'UID SEARCH BODY "{BODY_NEEDLE}"'],
        "store_add": [
            "STORE 1:1000 +FLAGS.SILENT (\\Flagged)",
            "STORE 1:1000 -FLAGS.SILENT (\\Flagged)",
        ],
    }


def profile(mw: Mailwarden, ops: list[str], args: argparse.Namespace, root: Path) -> str:
    """py-spy record --gil of mailwarden while one operation runs over and over."""
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(pyspy).exists():
        return "py-spy not found: .venv/bin/pip install py-spy"
    report = []
    commands = profile_commands(args.count)
    for op in ops:
        raw = root / f"pyspy-{op}.txt"
        cmd = [pyspy, "record", "-p", str(mw.pid), "-r", "200", "-d", str(args.profile_seconds)]
        cmd += ["-f", "raw", "-o", str(raw), "--gil", "--nonblocking"]
        if op != "login_select" and op not in commands:
            report.append(f"--profile: unknown op {op}")
            continue
        spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)
        end = time.monotonic() + args.profile_seconds - 1
        n = 0
        if op == "login_select":  # a new connection each time
            while time.monotonic() < end:
                ImapConn(MW_IMAP_PORT, MW_USER, PASSWORD).close()
                n += 1
        else:  # one connection (LOGIN + SELECT before py-spy starts sampling), op repeated
            c = ImapConn(MW_IMAP_PORT, MW_USER, PASSWORD)
            try:
                while time.monotonic() < end:
                    for line in commands[op]:
                        c.command(line)
                    n += 1
            finally:
                c.close()
        _, err = spy.communicate(timeout=120)
        if spy.returncode != 0 or not raw.exists():
            report.append(f"py-spy failed for {op}: {err.decode(errors='replace')[-500:]}")
            continue
        report.append(
            f"### mailwarden profile during {op} ({n} iterations on one connection (login_select: "
            f"new connections), py-spy --gil, 200 Hz, "
            f"{args.profile_seconds} s; raw stacks {raw})\n\n" + summarize_stacks(raw)
        )
    return "\n\n".join(report)


_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
_ROOTS = ("threading", "concurrent", "asyncio", "<frozen runpy>", "typer", "mailwarden/cli")


def summarize_stacks(path: Path, top: int = 15) -> str:
    self_fn: collections.Counter[str] = collections.Counter()
    incl_fn: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = []
        for fr in stack.split(";"):
            m = _FRAME.match(fr)
            if m:
                file = m.group("file")
                short = "/".join(file.split("/")[-2:])
                frames.append((f"{m.group('fn')} ({short})", file))
        if not frames:
            continue
        total += int(n)
        self_fn[frames[-1][0]] += int(n)
        for name in {f for f, file in frames if not file.startswith(_ROOTS)}:
            incl_fn[name] += int(n)
    if not total:
        return "(no samples)"
    rows = [f"{total} samples", "", "| self | % | inclusive | % |", "|---|---|---|---|"]
    a, b = self_fn.most_common(top), incl_fn.most_common(top)
    for i in range(max(len(a), len(b))):
        sa = f"`{a[i][0]}` | {100 * a[i][1] / total:.1f}" if i < len(a) else " | "
        sb = f"`{b[i][0]}` | {100 * b[i][1] / total:.1f}" if i < len(b) else " | "
        rows.append(f"| {sa} | {sb} |")
    return "\n".join(rows)


# ============================================================================ report


def _f(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def _stats(vals: Sequence[float]) -> tuple[float, float, float]:
    return statistics.median(vals), min(vals), max(vals)


def _cell(v: Sequence[float]) -> str:
    return f"{_f(v[0])} [{_f(v[1])}–{_f(v[2])}]"


def build_rows(
    harness: dict[str, Any],
    searches: dict[str, Any],
    idle: dict[str, Any],
    clients: list[str],
    count: int,
) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Per client: rows {op, dv, mw: (median, min, max), cpu}; plus problems (mismatches)."""
    problems: list[str] = []
    n93 = count == 10_000  # the full corpus has 93 XYZZY-needle Subjects
    per_client: dict[str, list[dict[str, Any]]] = {}
    t = harness["targets"]
    for client in clients:
        rows = []
        dv_s, mw_s = t["dovecot"].get(client, {}), t["custom"].get(client, {})
        for op in [*HARNESS_OPS, *EXTRA_OPS, "append"]:
            if op not in dv_s or op not in mw_s:
                continue
            d, m = dv_s[op], mw_s[op]
            rd, rm = d["result"], m["result"]
            if op == "search_header" and n93 and (rd.get("hits") != 93 or rm.get("hits") != 93):
                problems.append(f"{client} {op}: hits dovecot {rd} mailwarden {rm} (expected 93)")
            elif rd != rm:
                problems.append(f"{client} {op}: results differ: dovecot {rd} mailwarden {rm}")
            rows.append(
                {
                    "op": op,
                    "dv": (d["median_ms"], d["min_ms"], d["max_ms"]),
                    "mw": (m["median_ms"], m["min_ms"], m["max_ms"]),
                    "dv_cpu": d["server_cpu_ms"],
                    "mw_cpu": m["server_cpu_ms"],
                    "result": rm,
                }
            )
        per_client[client] = rows
    own = []
    for op, key in (("login", "login_ms"), ("select", "select_ms")):
        vals = {n: [r[key] for r in searches[n]["search_text"]] for n in ("dovecot", "mailwarden")}
        own.append(
            {
                "op": op,
                "dv": _stats(vals["dovecot"]),
                "mw": _stats(vals["mailwarden"]),
                "dv_cpu": None,
                "mw_cpu": None,
            }
        )
    for op in ("search_text", "search_body"):
        dvs, mws = searches["dovecot"][op], searches["mailwarden"][op]
        hd, hm = {r["hits"] for r in dvs}, {r["hits"] for r in mws}
        if hd != hm or len(hd) != 1:
            problems.append(f"{op}: hits differ: dovecot {sorted(hd)} mailwarden {sorted(hm)}")
        if op == "search_text" and n93 and hm != {93}:
            problems.append(f"{op}: mailwarden found {sorted(hm)} messages, expected 93")
        own.append(
            {
                "op": op,
                "dv": _stats([r["ms"] for r in dvs]),
                "mw": _stats([r["ms"] for r in mws]),
                "dv_cpu": bl.median([r["server_cpu_ms"] for r in dvs]),
                "mw_cpu": bl.median([r["server_cpu_ms"] for r in mws]),
                "result": {"hits": sorted(hm)[0] if len(hm) == 1 else sorted(hm)},
            }
        )
    if idle:
        dvs = [statistics.median(x["latency_ms"] for x in rnd) for rnd in idle["dovecot"]]
        mws = [statistics.median(x["latency_ms"] for x in rnd) for rnd in idle["mailwarden"]]
        own.append(
            {"op": "idle", "dv": _stats(dvs), "mw": _stats(mws), "dv_cpu": None, "mw_cpu": None}
        )
    per_client["own"] = own
    return per_client, problems


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| operation | Dovecot ms | mailwarden ms | ratio mw/dv | ≤ 3× | server CPU ms dv / mw |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        dv, mw = r["dv"][0], r["mw"][0]
        ratio = mw / dv if dv > 0 else float("inf")
        r["ratio"] = ratio
        ok = "yes" if ratio <= TARGET_RATIO else "**no**"
        cpu = f"{_f(r['dv_cpu'])} / {_f(r['mw_cpu'])}"
        out.append(
            f"| {OP_LABELS[r['op']]} | {_cell(r['dv'])} | {_cell(r['mw'])} | "
            f"{ratio:.2f} | {ok} | {cpu} |"
        )
    return "\n".join(out)


def idle_detail(idle: dict[str, Any]) -> str:
    out = [
        "| server | n | latency p50 ms | p90 | max | delivery itself p50 ms | ack → EXISTS < 0 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("dovecot", "mailwarden"):
        xs = [x for rnd in idle[name] for x in rnd]
        lat = [x["latency_ms"] for x in xs]
        dl = [x["deliver_ms"] for x in xs]
        neg = sum(1 for v in lat if v < 0)
        out.append(
            f"| {name} | {len(xs)} | {_f(pct(lat, 50))} | {_f(pct(lat, 90))} | {_f(max(lat))} | "
            f"{_f(pct(dl, 50))} | {neg} |"
        )
    return "\n".join(out)


# ============================================================================ main


def source_version() -> str:
    """HEAD plus a digest of uncommitted changes under src/: the code that was measured."""
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    diff = subprocess.run(
        ["git", "-C", str(REPO), "diff", "HEAD", "--", "src"], capture_output=True, check=False
    ).stdout
    if not diff:
        return head or "unknown"
    return f"{head}+dirty-src-{hashlib.sha256(diff).hexdigest()[:8]}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=5, help="interleaved warm rounds (5)")
    ap.add_argument("--count", type=int, default=10_000, help="messages in the mailbox (10000)")
    ap.add_argument("--clients", default="imaplib,raw", help="imap_bench.py clients")
    ap.add_argument("--idle-count", type=int, default=10, help="IDLE deliveries per round (10)")
    ap.add_argument("--idle-gap", type=float, default=0.2, help="s between IDLE and delivery")
    ap.add_argument("--index-timeout", type=float, default=1800, help="s to wait for indexing")
    ap.add_argument("--json", dest="json_out", default=None, help="write raw numbers here")
    ap.add_argument("--keep", action="store_true", help="leave both servers running")
    ap.add_argument(
        "--profile",
        default="",
        help="comma list of ops (fetch_meta, fetch_bodies, search_header, store_add, "
        "search_text, search_body, login_select) to py-spy in mailwarden at the end",
    )
    ap.add_argument("--profile-seconds", type=int, default=10)
    ap.add_argument(
        "--append",
        action="store_true",
        help="also time run_imap.py's append op (200 APPENDs into a scratch folder, then DELETE)",
    )
    ap.add_argument("--mw-set", action="append", default=[], help="mailwarden key=value")
    ap.add_argument(
        "--reuse",
        default=None,
        help="work dir of an earlier run (--keep or not) whose mailwarden already holds the "
        "corpus: skip its setup and APPEND load",
    )
    args = ap.parse_args(argv)
    args.client_list = [c for c in args.clients.split(",") if c]
    return args


def _raise_exit(signum: int, _frame: object) -> None:
    raise SystemExit(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_exit)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if os.geteuid() != 0:
        print("error: run as root (Dovecot, dovecot-lda, cgroups)", file=sys.stderr)
        return 2
    if not shutil.which("dovecot") or not Path(LDA).exists():
        print("error: apt-get install dovecot-imapd", file=sys.stderr)
        return 2
    for port in (DOVE_PORT, MW_IMAP_PORT, MW_SMTP_PORT):
        if not port_free(port):
            print(f"error: port 127.0.0.1:{port} is in use", file=sys.stderr)
            return 2
    if subprocess.run(["id", "mbench"], capture_output=True, check=False).returncode != 0:
        home = str(MB_ROOT / "home" / "mbench")
        run(["useradd", "-r", "-M", "-d", home, "-s", "/usr/sbin/nologin", "mbench"])
    MB_ROOT.mkdir(parents=True, exist_ok=True)
    if args.reuse:
        root = Path(args.reuse).resolve()
    else:
        root = Path(tempfile.mkdtemp(prefix="mwb-imap-", dir=MB_ROOT))
    log(f"work dir {root}")
    mw = Mailwarden(root, args)
    dv = Dovecot()
    rc = 0
    result: dict[str, Any] = {"count": args.count, "rounds": args.rounds, "work_dir": str(root)}
    result["version_start"] = source_version()
    try:
        ensure_corpus(args.count)
        if args.reuse:
            mw.start()
            left = mw.unindexed()
            mw.stop()
            result["load"] = {"reused": str(root), "unindexed": left}
            if left:
                raise BenchAbort(f"{root}: {left} messages not indexed yet")
        else:
            mw.setup()
            result["load"] = load_mailwarden(mw, args)
        harness = harness_ops(mw, args, root)
        result["run_imap"] = harness
        # phase 3: our own operations, both servers in our cgroups
        dv.start()
        mw.start()
        doveconf = run(["doveconf", "-c", str(DOVE_CONF), "mailbox_idle_check_interval"])
        result["dovecot_idle_check"] = doveconf.strip()
        searches, idle = own_ops(mw, dv, args)
        result["searches"], result["idle"] = searches, idle
        if args.profile:
            result["profile"] = profile(mw, args.profile.split(","), args, root)
        result["version_end"] = source_version()
    except (BenchAbort, subprocess.CalledProcessError, OSError) as exc:
        log(f"aborted: {type(exc).__name__}: {exc}")
        rc = 2
    except KeyboardInterrupt:
        log("interrupted")
        rc = 2
    finally:
        if not args.keep or rc:
            mw.stop()
            dv.stop()
            mw.cg.remove()
            dv.cg.remove()
            bl.remove_cgroup_root()
        else:
            log(f"kept: mailwarden pid {mw.proc and mw.proc.pid} ({mw.config}), dovecot")
    if rc:
        return rc
    return report(result, args, mw)


def report(result: dict[str, Any], args: argparse.Namespace, mw: Mailwarden) -> int:
    harness = result["run_imap"]
    rows, problems = build_rows(
        harness, result["searches"], result["idle"], args.client_list, args.count
    )
    problems += mw.log_problems()
    load = result["load"]
    print(
        f"\n# IMAP: mailwarden vs Dovecot, {args.count} messages, {args.rounds} rounds "
        f"(medians of the rounds [min–max]; ratio = mailwarden / Dovecot, target ≤ 3×)\n"
    )
    v0, v1 = result["version_start"], result["version_end"]
    print(
        f"mailwarden source: {v0}"
        + (f" at the start, {v1} at the end (changed!)" if v0 != v1 else "")
    )
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, load average {os.getloadavg()[0]:.2f}\n")
    if "reused" in load:
        print(f"Load: mailwarden data reused from {load['reused']}.\n")
    else:
        print(
            f"Load: {load['messages']} APPENDs into mailwarden in {load['append_s']} s "
            f"({load['append_per_s']} msg/s, server CPU {load['server_cpu_append_s']} s); search "
            f"index settled {load['index_settle_s']} s after the last APPEND; data dir "
            f"{load['db_bytes'] / 1e6:.0f} MB.\n"
        )
    for client in args.client_list:
        print(f"## run_imap.py / imap_bench.py, client `{client}`\n")
        print(table(rows[client]) + "\n")
    print("## this script's raw client (fresh connection per search; IDLE: median per round)\n")
    print(table(rows["own"]) + "\n")
    print(idle_detail(result["idle"]) + "\n")
    print(f"Dovecot: {result['dovecot_idle_check']} (IDLE wakes on inotify before that).\n")
    cold = {n: harness["targets"][n].get("cold", {}) for n in ("dovecot", "custom")}
    print("Cold pass (Dovecot: index files deleted; mailwarden: first pass after a restart), ms:\n")
    print("| operation | Dovecot | mailwarden |\n|---|---|---|")
    for op in [*HARNESS_OPS, *EXTRA_OPS, "append"]:
        d, m = cold["dovecot"].get(op, {}), cold["custom"].get(op, {})
        if not d and not m:
            continue
        print(f"| {OP_LABELS[op]} | {_f(d.get('median_ms'))} | {_f(m.get('median_ms'))} |")
    misses = [
        f"{c}: {OP_LABELS[r['op']]} ({r['ratio']:.1f}×)"
        for c, rs in rows.items()
        for r in rs
        if r["ratio"] > TARGET_RATIO
    ]
    print("\nOver the 3× target: " + ("; ".join(misses) if misses else "none"))
    if problems:
        print("\nProblems:\n" + "\n".join(f"* {p}" for p in problems))
    if result.get("profile"):
        print("\n" + result["profile"])
    if args.json_out:
        result["rows"] = rows
        result["problems"] = problems
        Path(args.json_out).write_text(json.dumps(result, indent=1, default=str))
        log(f"wrote {args.json_out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
