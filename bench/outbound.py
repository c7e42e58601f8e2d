#!/usr/bin/env python3
"""Outbound benchmark: submission -> queue -> DKIM signing -> SMTP delivery to loopback sinks.

Measures, all on 127.0.0.1, messages accepted on mailwarden's submission port until a sink
has accepted them, and compares with Postfix from Debian relaying the same load to the same
sink (Postfix does not sign):

* **Sink.** One Postfix ``smtp-sink -c`` on 127.0.0.1:12628, started by the shared harness
  (``../shared/bench/run_outbound.py``'s ``Sink``); its running message counter gives the
  moment the N-th message arrived.
* **Routing.** Static routes, no DNS: mailwarden's ``delivery.transports`` sends each of the
  recipient domains ``d0.remote.test`` .. ``d9.remote.test`` to ``smtp://127.0.0.1:12628``;
  Postfix gets the same table as
  ``transport_maps = inline:{dN.remote.test=smtp:[127.0.0.1]:12628, ...}``.
  mailwarden keeps one delivery queue per recipient domain (``per_destination`` sessions
  each, ``concurrency`` in total); Postfix keys its queues by next hop, so its 10 domains
  share one destination ([127.0.0.1]:12628, concurrency 20).
* **mailwarden.** ``python -m mailwarden run`` in a fresh data directory: only a submission
  listener (127.0.0.1:12690, STARTTLS offered but not used), ``submission.relay_networks:
  [127.0.0.1/32]`` (no AUTH, like Postfix's mynetworks), ``workers: 2`` (worker 0 also runs
  the queue), log level INFO, everything else at its default. The From domain
  ``sender.outbench.test`` is a local domain (``mailwarden domain add``), so every message
  gets two DKIM signatures, RSA-2048 and Ed25519.
* **Postfix.** A private relay instance made by ``../shared/bench/setup/postfix_instance.sh``
  (127.0.0.1:12665), default delivery settings, plus the transport map above.
* **Load.** Postfix's ``smtp-source`` for both servers: N messages (default 5000, 2 KB body),
  10 sessions in total, a new connection per message (as the shared anchor; ``--reuse`` keeps
  connections).
  With 10 domains there are 10 smtp-source processes, one session and one domain each.
* **Figures** per run: accept msg/s = N / injection time; delivered msg/s = N / (time from the
  first injection to the sink's N-th message); server CPU per message from the server's
  cpuacct cgroup (all its processes; accept + sign + queue + deliver), and the sink's, the
  client's and the rest of the box's ("other" = noise). Runs are interleaved
  (mailwarden, postfix, postfix, mailwarden, ...) and reported as medians [min-max].
* **Checks.** Before timing: 20 messages per server through a dumping sink; every mailwarden
  message must carry exactly two DKIM-Signature fields (rsa-sha256 and ed25519-sha256, d= the
  sender domain) that verify with dkimpy against the keys ``mailwarden domain dns`` publishes.
  After every run: the sink got exactly N more messages, the server's queue drained,
  mailwarden logged N "delivered" lines and no ERROR/traceback.
* **Queue memory** (``--queue-test N``, default 100,000): after the runs, mailwarden's queue
  gets N messages for ``unreachable.remote.test``, which is routed to a port where nothing
  listens. ``--queue-fill direct`` (default) writes them into the queue tables as the runner
  leaves such messages: deferred, next attempt in an hour, one blob each (30 s for 100k).
  ``--queue-fill smtp`` submits them over SMTP and lets the runner defer each one (slow;
  capped by ``--queue-fill-seconds``). The RSS of every mailwarden process (supervisor and
  workers) is read with an empty queue and again with N queued.

Run as root with the project's virtualenv (needs ``apt-get install postfix`` and the user
``mbench``; ``--install`` does both)::

    .venv/bin/python bench/outbound.py                  # 3 runs x {1,10} domains + 100k queue
    .venv/bin/python bench/outbound.py --queue-fill smtp --queue-test 20000   # fill over SMTP
    .venv/bin/python bench/outbound.py --runs 1 --n 2000 --queue-test 0     # quick look
    .venv/bin/python bench/outbound.py --profile 10     # + py-spy of both workers
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dkim

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import smtp_inbound as si  # noqa: E402  (the inbound bench: targets, helpers, shared harness)

bl: Any = si.bl
MB_ROOT = si.MB_ROOT
SHARED_BENCH = si.SHARED_BENCH
BenchAbort = si.BenchAbort
log = si.log
ro: Any = si._load_module("run_outbound", SHARED_BENCH / "run_outbound.py")  # its Sink

SENDER_DOMAIN = "sender.outbench.test"
SENDER = f"news@{SENDER_DOMAIN}"
MW_HOSTNAME = "mx.outbench.test"
DOMAINS = [f"d{i}.remote.test" for i in range(10)]
VERIFY_DOMAIN = "verify.remote.test"
DEAD_DOMAIN = "unreachable.remote.test"
SIGNING_ALGOS = {"rsa-sha256", "ed25519-sha256"}

_DELIVERED = re.compile(r" to=<[^>]*> delivered via ")
_DEFERRED = re.compile(r" to=<[^>]*> deferred via ")


# ============================================================================ servers


class Mailwarden(si.MailwardenTarget):
    """mailwarden with only a submission listener, relaying to the sinks by transports."""

    def __init__(self, root: Path, cmd: list[str], routes: dict[str, str], args: Any) -> None:
        ns = types.SimpleNamespace(dkim="both", no_dns_cache=False, mw_set=args.mw_set)
        super().__init__(args.mw_port, root, cmd, "", ns)
        self.cg.remove()
        self.cg = bl.CGroup("mwob-mailwarden")
        self.routes = routes
        self.workers = args.workers
        self.ready_rss: dict[str, dict[str, int]] = {}

    listener = "submission"

    def configure(self, cfg: dict[str, Any]) -> None:
        cfg["listeners"]["submission"] = {
            "protocol": "submission",
            "address": "127.0.0.1",
            "port": self.port,
            "tls": "starttls",
            "enabled": True,
        }
        cfg["submission"] = {"relay_networks": ["127.0.0.1/32"]}
        # no retries during the queue-memory test: a deferred message stays put for an hour
        cfg["delivery"] = {"transports": self.routes, "retry_initial": 3600.0}
        cfg["workers"] = self.workers

    def populate(self) -> None:
        self.mw("domain", "add", SENDER_DOMAIN)

    def launch(self) -> None:
        super().launch()
        time.sleep(1.0)  # the workers finish starting after the supervisor's READY
        self.ready_rss = rss(self.process_roles())

    def process_roles(self) -> dict[str, int]:
        """{"supervisor": pid, "worker0": pid, ...}; worker 0 (the queue runner) is forked
        first, so it has the lowest pid of the workers (no pid wrap-around on this box)."""
        assert self.proc is not None
        if self.workers == 1:
            return {"server": self.proc.pid}
        kids = sorted(p for p in self.cg.pids() if p != self.proc.pid)
        return {"supervisor": self.proc.pid, **{f"worker{i}": p for i, p in enumerate(kids)}}

    def queue_len(self, limit: int = 1) -> int:
        return len(json.loads(self.mw("queue", "list", "--json", "--limit", str(limit))))

    def wait_drained(self, timeout: float) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.queue_len() == 0:
                return True
            time.sleep(0.5)
        return False

    def check_log(self, n: int, row: dict[str, Any]) -> None:
        text = self.new_log()
        row["logged_delivered"] = len(_DELIVERED.findall(text))
        row["log_errors"] = len(re.findall(r"^\S+ \S+ (?:ERROR|CRITICAL) ", text, re.M))
        row["tracebacks"] = text.count("Traceback (most recent call last)")
        if row["logged_delivered"] != n:
            self.problems.append(
                f"run {row['run']} {row['domains']} dom: {row['logged_delivered']} delivered "
                f"lines in the log for {n} messages"
            )
        if row["log_errors"] or row["tracebacks"]:
            self.problems.append(
                f"run {row['run']} {row['domains']} dom: {row['log_errors']} ERROR lines, "
                f"{row['tracebacks']} tracebacks in the log"
            )


class Postfix(si.PostfixTarget):
    """The shared harness's relay instance plus a transport map equal to mailwarden's."""

    def __init__(self, port: int, sink_port: int, routes: dict[str, str]) -> None:
        super().__init__("postfix", port, "relay")
        self.cg.remove()
        self.cg = bl.CGroup("mwob-postfix")
        self.instance = "mwob-relay"
        self.base = MB_ROOT / f"postfix-{self.instance}"
        self.sink_port = sink_port
        self.routes = routes

    def start(self) -> None:
        env = {**os.environ, "MB_ROOT": str(MB_ROOT)}
        cmd = ["bash", str(si.POSTFIX_SETUP), self.instance, str(self.port), "relay"]
        p = subprocess.run(
            [*cmd, str(self.sink_port)], capture_output=True, text=True, env=env, check=False
        )
        if p.returncode != 0:
            raise BenchAbort(f"{si.POSTFIX_SETUP} failed:\n{p.stdout}{p.stderr}")
        table = ", ".join(f"{d}=smtp:[{h}]:{pt}" for d, (h, pt) in self.routes.items())
        si.run(["postconf", "-c", self.etc, "-e", f"transport_maps = inline:{{{table}}}"])
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


def rss(roles: dict[str, int]) -> dict[str, dict[str, int]]:
    """VmRSS / RssAnon / Pss in KiB per process."""
    out: dict[str, dict[str, int]] = {}
    for role, pid in roles.items():
        vals: dict[str, int] = {}
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    k, _, v = line.partition(":")
                    if k in ("VmRSS", "RssAnon", "VmHWM"):
                        vals[k] = int(v.split()[0])
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        vals["Pss"] = int(line.split()[1])
        except OSError:
            continue
        out[role] = vals
    return out


def rss_total(r: dict[str, dict[str, int]], key: str = "VmRSS") -> int:
    return sum(v.get(key, 0) for v in r.values())


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


# ============================================================================ load


def inject(
    port: int,
    n: int,
    domains: Sequence[str],
    conc: int,
    size: int,
    cg: Any,
    *,
    reuse: bool,
) -> tuple[float, list[str]]:
    """smtp-source, one process per domain, ``conc`` sessions in total, ``n`` messages in
    total. Returns (wall seconds until the last process finished, error texts)."""
    k = len(domains)
    procs = []
    t0 = time.perf_counter()
    for i, dom in enumerate(domains):
        m = n // k + (1 if i < n % k else 0)
        s = max(1, conc // k + (1 if i < conc % k else 0))
        cmd = ["smtp-source", "-4", "-s", str(s), "-l", str(size), "-m", str(m)]
        cmd += ["-f", SENDER, "-t", f"rcpt{i}@{dom}", "-M", "loadgen.outbench.test"]
        cmd += ["-d"] if reuse else []
        cmd.append(f"127.0.0.1:{port}")
        procs.append(
            subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                preexec_fn=cg.preexec,  # noqa: PLW1509 - client CPU in its own cgroup
            )
        )
    errors = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            errors.append(f"smtp-source rc={p.returncode}: {(err or out).decode()[-300:]}")
    return time.perf_counter() - t0, errors


class DumpSink:
    """``smtp-sink -d``: every message as a file, for the correctness checks."""

    def __init__(self, port: int, directory: Path, cg: Any) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.dir, "mbench", "mbench")
        self.p = subprocess.Popen(
            ["smtp-sink", "-4", "-u", "mbench", "-d", f"{directory}/m", f"127.0.0.1:{port}", "64"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=cg.preexec,  # noqa: PLW1509
        )
        if not bl.wait_port("127.0.0.1", port, 10):
            raise BenchAbort("dump sink did not start")

    def take(self, n: int, timeout: float) -> list[bytes]:
        deadline = time.time() + timeout
        while time.time() < deadline and len(list(self.dir.iterdir())) < n:
            time.sleep(0.2)
        time.sleep(0.5)
        files = sorted(self.dir.iterdir())
        data = [f.read_bytes() for f in files]
        for f in files:
            f.unlink()
        return data

    def stop(self) -> None:
        bl.kill_pid(self.p.pid)


def strip_sink_headers(raw: bytes) -> bytes:
    """Drop what smtp-sink -d puts on top (X-Client-*, X-*-Args, its Received), use CRLF."""
    lines = raw.replace(b"\r\n", b"\n").split(b"\n")
    i = 0
    while i < len(lines) and re.match(
        rb"X-(Client-Addr|Client-Proto|Helo-Args|Mail-Args|"
        rb"Rcpt-Args):",
        lines[i],
    ):
        i += 1
    if i < len(lines) and lines[i].startswith(b"Received:"):
        i += 1
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            i += 1
    return b"\r\n".join(lines[i:])


def check_dkim(messages: list[bytes], txt: dict[str, str]) -> str:
    """Each message: exactly 2 DKIM-Signature fields, rsa-sha256 + ed25519-sha256, d= the
    sender domain, and both verify against the published keys."""

    def dnsfunc(name: bytes | str, timeout: int = 5) -> bytes:
        key = (name.decode() if isinstance(name, bytes) else name).rstrip(".").lower()
        return txt.get(key, "").encode()

    for raw in messages:
        msg = strip_sink_headers(raw)
        head = msg.split(b"\r\n\r\n", 1)[0]
        unfolded = re.sub(rb"\r\n[ \t]+", b" ", head)
        sigs = [ln for ln in unfolded.split(b"\r\n") if ln.lower().startswith(b"dkim-signature:")]
        algos = {m.group(1).decode() for s in sigs if (m := re.search(rb"\ba=([\w-]+)", s))}
        doms = {m.group(1).decode() for s in sigs if (m := re.search(rb"\bd=([\w.-]+)", s))}
        if len(sigs) != 2 or algos != SIGNING_ALGOS or doms != {SENDER_DOMAIN}:
            raise BenchAbort(
                f"mailwarden message without the two expected signatures: {len(sigs)} "
                f"DKIM-Signature fields, a={sorted(algos)}, d={sorted(doms)}\n"
                + head.decode(errors="replace")[:1500]
            )
        d = dkim.DKIM(msg)
        for idx in range(len(sigs)):
            if not d.verify(idx=idx, dnsfunc=dnsfunc):
                raise BenchAbort(
                    f"DKIM signature {idx} does not verify\n" + head.decode(errors="replace")
                )
    return f"{len(messages)} messages x 2 signatures (rsa-sha256, ed25519-sha256) verified"


# ============================================================================ runs


def wait_idle(t: Any) -> None:
    if not t.wait_drained(300):
        raise BenchAbort(f"{t.name}: queue not empty after 300 s")


def one_run(
    t: Any, sink: Any, cgs: dict[str, Any], ndom: int, args: Any, run_no: int
) -> dict[str, Any]:
    wait_idle(t)
    time.sleep(args.settle)
    if isinstance(t, Mailwarden):
        t.new_log()  # start the log slice here
    n = args.n
    base = sink.count
    s0, k0, c0 = t.cpu(), cgs["sink"].cpu_seconds(), cgs["client"].cpu_seconds()
    b0 = bl.system_cpu()[0]
    us0 = t.cpu_split()
    t0 = time.perf_counter()
    wall, errors = inject(
        t.port, n, DOMAINS[:ndom], args.conc, args.size, cgs["client"], reuse=args.reuse
    )
    t1 = sink.wait_for(base + n, args.timeout)
    ok = t1 is not None and not errors
    t1 = t1 or time.perf_counter()
    s1, k1, c1 = t.cpu(), cgs["sink"].cpu_seconds(), cgs["client"].cpu_seconds()
    b1 = bl.system_cpu()[0]
    us1 = t.cpu_split()
    srv, snk, cli = s1 - s0, k1 - k0, c1 - c0
    dt = t1 - t0
    row: dict[str, Any] = {
        "ts": time.strftime("%H:%M:%S"),
        "run": run_no,
        "target": t.name,
        "domains": ndom,
        "n": n,
        "size": args.size,
        "conc": args.conc,
        "inject_s": round(wall, 3),
        "accept_rate": round(n / wall, 1),
        "deliver_s": round(dt, 3),
        "delivered_rate": round(n / dt, 1),
        "server_cpu_s": round(srv, 3),
        "server_user_s": round(us1[0] - us0[0], 2),
        "server_sys_s": round(us1[1] - us0[1], 2),
        "server_cores": round(srv / dt, 2),
        "cpu_ms_per_msg": round(1000 * srv / n, 3),
        "sink_cpu_s": round(snk, 3),
        "client_cpu_s": round(cli, 3),
        "other_cpu_s": round(max(0.0, (b1 - b0) - srv - snk - cli), 3),
        "errors": errors,
    }
    time.sleep(0.5)
    row["sink_got"] = sink.count - base
    ok = ok and row["sink_got"] == n
    row["drained"] = t.wait_drained(120)
    ok = ok and row["drained"]
    if isinstance(t, Mailwarden):
        if not t.alive():
            raise BenchAbort("mailwarden died during the run:\n" + t.log_tail(40))
        t.check_log(n, row)
        ok = ok and row["logged_delivered"] == n and not row["tracebacks"]
    row["ok"] = ok
    if not ok and args.strict:
        raise BenchAbort(f"run failed its checks: {row}")
    return row


def fmt_row(r: dict[str, Any]) -> str:
    extra = f" log-delivered={r['logged_delivered']}" if "logged_delivered" in r else ""
    return (
        f"run{r['run']} {r['target']:10s} {r['domains']:2d} dom n={r['n']} "
        f"accept {r['accept_rate']:7.1f}/s delivered {r['delivered_rate']:7.1f}/s "
        f"({r['deliver_s']} s) srv {r['cpu_ms_per_msg']} ms/msg ({r['server_cores']} cores, "
        f"usr {r['server_user_s']} sys {r['server_sys_s']}) sink {r['sink_cpu_s']}s "
        f"cli {r['client_cpu_s']}s other {r['other_cpu_s']}s sink_got={r['sink_got']}"
        f"{extra} ok={r['ok']}" + (f" ERR {r['errors']}" if r["errors"] else "")
    )


def med(xs: Sequence[float]) -> float:
    return float(si.med(list(xs)) or 0.0)


def span(xs: Sequence[float], spec: str = ".0f") -> str:
    return f"{med(xs):{spec}} [{min(xs):{spec}}–{max(xs):{spec}}]"


def summarize(rows: list[dict[str, Any]], args: Any) -> tuple[str, list[dict[str, Any]]]:
    cells: dict[tuple[int, str], list[dict[str, Any]]] = collections.defaultdict(list)
    for r in rows:
        cells[(r["domains"], r["target"])].append(r)
    head = (
        "| domains | server | delivered msg/s | accept msg/s | server CPU ms/msg "
        "| server cores | sink / client CPU ms/msg | other cores | ratio delivered "
        "mailwarden/Postfix |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    summary = []
    for ndom in args.domain_list:
        pf = cells.get((ndom, "postfix"), [])
        pf_rate = med([r["delivered_rate"] for r in pf]) if pf else None
        for t in args.target_list:
            rs = cells.get((ndom, t))
            if not rs:
                continue
            rate = [r["delivered_rate"] for r in rs]
            cell: dict[str, Any] = {
                "domains": ndom,
                "target": t,
                "runs": len(rs),
                "delivered_rate": med(rate),
                "delivered_min": min(rate),
                "delivered_max": max(rate),
                "accept_rate": med([r["accept_rate"] for r in rs]),
                "cpu_ms_per_msg": med([r["cpu_ms_per_msg"] for r in rs]),
                "all_ok": all(r["ok"] for r in rs),
            }
            ratio = ""
            if t == "mailwarden" and pf_rate:
                cell["ratio"] = round(cell["delivered_rate"] / pf_rate, 3)
                # paired per-run ratios (mailwarden run k / postfix run k)
                pairs = [
                    m["delivered_rate"] / p["delivered_rate"]
                    for m in rs
                    for p in pf
                    if p["run"] == m["run"]
                ]
                ratio = f"**{cell['ratio']:.2f}**"
                if len(pairs) > 1:
                    ratio += f" [{min(pairs):.2f}–{max(pairs):.2f}]"
            summary.append(cell)
            n = rs[0]["n"]
            sink = med([1000 * r["sink_cpu_s"] / n for r in rs])
            cli = med([1000 * r["client_cpu_s"] / n for r in rs])
            other = med([r["other_cpu_s"] / r["deliver_s"] for r in rs])
            lines.append(
                f"| {ndom} | {t}{'' if cell['all_ok'] else ' (CHECKS FAILED)'} "
                f"| {span(rate)} | {span([r['accept_rate'] for r in rs])} "
                f"| {span([r['cpu_ms_per_msg'] for r in rs], '.2f')} "
                f"| {med([r['server_cores'] for r in rs]):.2f} | {sink:.2f} / {cli:.2f} "
                f"| {other:.2f} | {ratio} |"
            )
    return "\n".join(lines), summary


# ============================================================================ extras


def preflight(
    mw: Mailwarden | None, pf: Postfix | None, dump: DumpSink, cgs: dict[str, Any], args: Any
) -> list[str]:
    notes = []
    k = args.verify
    if mw is not None:
        records = json.loads(mw.mw("domain", "dns", SENDER_DOMAIN, "--json"))
        txt = {r["name"].rstrip(".").lower(): r["value"] for r in records if r["type"] == "TXT"}
        _, errors = inject(mw.port, k, [VERIFY_DOMAIN], 5, args.size, cgs["client"], reuse=False)
        got = dump.take(k, 60)
        if errors or len(got) != k:
            raise BenchAbort(
                f"mailwarden preflight: {len(got)} of {k} messages arrived, {errors}\n"
                + mw.log_tail(20)
            )
        notes.append("mailwarden: " + check_dkim(got, txt))
        mw.wait_drained(60)
        mw.new_log()
    if pf is not None:
        _, errors = inject(pf.port, k, [VERIFY_DOMAIN], 5, args.size, cgs["client"], reuse=False)
        got = dump.take(k, 60)
        if errors or len(got) != k:
            raise BenchAbort(f"postfix preflight: {len(got)} of {k} messages arrived, {errors}")
        nsig = sum(m.lower().count(b"\ndkim-signature:") for m in got)
        notes.append(f"postfix: {k} messages relayed, {nsig} DKIM signatures (not signing)")
    return notes


def queue_test(mw: Mailwarden, cgs: dict[str, Any], args: Any) -> dict[str, Any]:
    """RSS with an empty queue, then with ``args.queue_test`` messages deferred in it."""
    q = args.queue_test
    wait_idle(mw)
    time.sleep(2)
    roles = mw.process_roles()
    before = rss(roles)
    log(
        f"queue test: RSS with an empty queue {mib(rss_total(before))} MiB; filling {q} "
        f"({args.queue_fill})"
    )
    mw.new_log()
    peak = dict.fromkeys(roles, 0)
    state = {"deferred": 0}

    def sample() -> None:
        for role, v in rss(roles).items():
            peak[role] = max(peak[role], v.get("VmRSS", 0))
        state["deferred"] += len(_DEFERRED.findall(mw.new_log()))

    t0 = time.perf_counter()
    progress: list[tuple[float, int]] = []
    errs: list[str] = []
    if args.queue_fill == "direct":
        direct_fill(mw, q, args.size, sample)
        filled = q
        state["deferred"] = q  # written as deferred; the runner never sees them as due
    else:
        filled, errs = smtp_fill(mw, q, cgs, args, sample, state, progress)
    fill_s = time.perf_counter() - t0
    deadline = time.time() + (60 if args.queue_fill == "smtp" else 0)
    while state["deferred"] < filled and time.time() < deadline:
        time.sleep(1.0)
        sample()
    settle_s = time.perf_counter() - t0 - fill_s
    time.sleep(5.0)  # a few polls of the queue runner with everything deferred
    sample()
    after = rss(roles)
    t_list = time.perf_counter()
    queued = mw.queue_len(q + 1000)
    list_s = time.perf_counter() - t_list
    after_list = rss(roles)
    res = {
        "fill": args.queue_fill,
        "queued_target": q,
        "queued_listed": queued,
        "deferred": state["deferred"],
        "fill_s": round(fill_s, 1),
        "fill_rate": round(filled / fill_s, 1),
        "defer_lag_s": round(settle_s, 1),
        "progress": progress,
        "rss_ready": mw.ready_rss,
        "rss_empty": before,
        "rss_queued": after,
        "rss_peak_kib": peak,
        "rss_after_queue_list": after_list,
        "queue_list_s": round(list_s, 1),
        "blobs_kib": du_kib(mw.data / "blobs"),
        "data_dir_kib": du_kib(mw.data),
        "errors": errs,
    }
    if queued != q:
        mw.problems.append(f"queue test: {queued} messages listed for {q} wanted")
    return res


def smtp_fill(
    mw: Mailwarden,
    q: int,
    cgs: dict[str, Any],
    args: Any,
    sample: Any,
    state: dict[str, int],
    progress: list[tuple[float, int]],
) -> tuple[int, list[str]]:
    """Submit ``q`` messages for the unreachable domain over SMTP (2 smtp-source processes,
    connection reuse); the runner defers each one. Stops after --queue-fill-seconds."""
    t0 = time.perf_counter()
    k = 2
    procs = []
    for i in range(k):
        cmd = ["smtp-source", "-4", "-d", "-s", str(args.queue_conc // k), "-l", str(args.size)]
        cmd += ["-m", str(q // k + (q % k if i == 0 else 0)), "-f", SENDER]
        cmd += ["-t", f"held{i}@{DEAD_DOMAIN}", "-M", "loadgen.outbench.test"]
        procs.append(
            subprocess.Popen(
                [*cmd, f"127.0.0.1:{mw.port}"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                preexec_fn=cgs["client"].preexec,  # noqa: PLW1509
            )
        )
    last = time.time()
    while any(p.poll() is None for p in procs):
        time.sleep(1.0)
        sample()
        if time.time() - last > 30:
            last = time.time()
            progress.append((round(time.perf_counter() - t0, 1), state["deferred"]))
            log(f"queue test: {state['deferred']} deferred so far")
        if time.perf_counter() - t0 > args.queue_fill_seconds:
            log(f"queue test: stopping the fill after {args.queue_fill_seconds} s")
            for p in procs:
                bl.kill_pid(p.pid)
            break
    errs = [p.stderr.read().decode()[-300:] for p in procs if p.returncode and p.stderr is not None]
    return mw.queue_len(q + 1000), errs


def direct_fill(mw: Mailwarden, q: int, size: int, sample: Any) -> None:
    """Write ``q`` messages straight into the server's queue, as the runner leaves them when
    the destination is unreachable: state deferred, 1 attempt, next attempt in an hour, a
    distinct blob each (written without fsync), a VERP token each. Uses mailwarden's own
    table definitions; the server keeps running (SQLite WAL, short write transactions)."""
    import datetime as dt
    import secrets

    from sqlalchemy import create_engine, func, insert, select

    from mailwarden.store.blobs import BlobStore
    from mailwarden.store.tables import queue_messages, queue_recipients, sent_tokens

    now = dt.datetime.now(dt.UTC)
    later, expires = now + dt.timedelta(hours=1), now + dt.timedelta(days=5)
    blobs = BlobStore(mw.data / "blobs")
    body = si.make_body(size)
    engine = create_engine(f"sqlite:///{mw.data / 'mailwarden.db'}", connect_args={"timeout": 30})
    with engine.begin() as c:
        next_id = int(c.execute(select(func.max(queue_messages.c.id))).scalar() or 0) + 1
    chunk = 2000
    for startno in range(0, q, chunk):
        msgs, rcpts, tokens = [], [], []
        for i in range(startno, min(q, startno + chunk)):
            qid = f"F{i:011d}"
            token = secrets.token_hex(8)
            mid = f"{qid.lower()}.{token}@{SENDER_DOMAIN}"
            data = (
                f"From: <{SENDER}>\r\nTo: <held@{DEAD_DOMAIN}>\r\nSubject: fill {i}\r\n"
                f"Date: Sat, 21 Nov 2026 12:00:00 +0000\r\nMessage-ID: <{mid}>\r\n\r\n"
            ).encode() + body
            key = blobs.key_for(data)
            path = blobs.path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            mid_row = next_id + i
            msgs.append(
                {
                    "id": mid_row, "queue_id": qid, "token": token, "blob": key,
                    "size": len(data), "mail_from": SENDER,
                    "return_path": f"bounces+{token}@{SENDER_DOMAIN}",
                    "sender_domain": SENDER_DOMAIN, "account": "", "message_id": mid,
                    "held": False, "created_at": now, "expires_at": expires,
                }
            )  # fmt: skip
            rcpts.append(
                {
                    "message_id": mid_row, "rcpt": f"held@{DEAD_DOMAIN}", "domain": DEAD_DOMAIN,
                    "state": "deferred", "attempts": 1, "next_attempt_at": later,
                    "claimed_by": None, "last_code": None, "last_enhanced": "4.4.1",
                    "last_text": "Connection refused", "updated_at": now,
                }
            )  # fmt: skip
            tokens.append(
                {
                    "token": token, "queue_id": qid, "mail_from": SENDER, "account": "",
                    "message_id": mid, "created_at": now,
                }
            )  # fmt: skip
        with engine.begin() as c:
            c.execute(insert(queue_messages), msgs)
            c.execute(insert(queue_recipients), rcpts)
            c.execute(insert(sent_tokens), tokens)
        sample()
    engine.dispose()


FILL_TEXT = {
    "direct": "rows written into the queue tables as deferred, next attempt in 1 h",
    "smtp": "submitted over SMTP, 20 sessions with connection reuse, deferred by the runner",
}


def du_kib(path: Path) -> int:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=False)
    return int(out.stdout.split()[0]) if out.stdout else 0


def fmt_queue(res: dict[str, Any]) -> str:
    roles = list(res["rss_queued"])
    head = "| process | RSS at start | RSS, queue empty (after the runs) | RSS, " + (
        f"{res['queued_target']:,} queued | peak while filling | Δ (queued − empty) |"
    )
    lines = [head, "|---|---|---|---|---|---|"]
    for role in [*roles, "total"]:

        def get(key: str, role: str = role) -> int:
            d = res[key]
            if role == "total":
                return rss_total(d)
            return int(d.get(role, {}).get("VmRSS", 0))

        peak = (
            sum(res["rss_peak_kib"].values())
            if role == "total"
            else res["rss_peak_kib"].get(role, 0)
        )
        empty, queued = get("rss_empty"), get("rss_queued")
        lines.append(
            f"| {role} | {mib(get('rss_ready'))} MiB | {mib(empty)} MiB | {mib(queued)} MiB "
            f"| {mib(peak)} MiB{' (sum of peaks)' if role == 'total' else ''} "
            f"| {queued - empty:+,d} KiB |"
        )
    pss_e, pss_q = rss_total(res["rss_empty"], "Pss"), rss_total(res["rss_queued"], "Pss")
    lines.append("")
    lines.append(
        f"Pss total (shared pages split): {mib(pss_e)} → {mib(pss_q)} MiB. Fill: "
        f"{res['fill']} ({FILL_TEXT[res['fill']]}), {res['fill_rate']} msg/s, "
        f"{res['fill_s']} s; {res['queued_listed']:,} messages listed by "
        f"`mailwarden queue list` ({res['queue_list_s']} s); on disk: blobs "
        f"{mib(res['blobs_kib'])} MiB, whole data dir {mib(res['data_dir_kib'])} MiB. "
        f"After `queue list --limit {res['queued_target'] + 1000}` (a separate CLI process) "
        f"the server's RSS was {mib(rss_total(res['rss_after_queue_list']))} MiB."
    )
    return "\n".join(lines)


def profile(
    mw: Mailwarden,
    sink: Any,
    cgs: dict[str, Any],
    args: Any,
    outdir: Path,
    rows: list[dict[str, Any]],
) -> str:
    """py-spy both workers (--gil: where Python CPU goes) during a run per domain count."""
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(pyspy).exists():
        return "py-spy not found: .venv/bin/pip install py-spy"
    report = []
    dur, hz = max(3, int(args.profile)), 200
    for ndom in args.domain_list:
        wait_idle(mw)
        time.sleep(args.settle)
        roles = {r: p for r, p in mw.process_roles().items() if r.startswith(("worker", "server"))}
        spies = {}
        for role, pid in roles.items():
            raw = outdir / f"pyspy-outbound-{ndom}dom-{role}.txt"
            cmd = [pyspy, "record", "-p", str(pid), "-r", str(hz), "-d", str(dur), "-f", "raw"]
            cmd += ["-o", str(raw), "--gil", "--nonblocking"]
            spies[role] = (
                raw,
                subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE),
            )
        time.sleep(0.5)
        base = sink.count
        c0 = {r: proc_cpu(p) for r, p in roles.items()}
        rates = [
            r["delivered_rate"] for r in rows if r["target"] == mw.name and r["domains"] == ndom
        ]
        n = int((med(rates) if rates else args.profile_rate) * dur)
        t0 = time.perf_counter()
        inject(mw.port, n, DOMAINS[:ndom], args.conc, args.size, cgs["client"], reuse=args.reuse)
        sink.wait_for(base + n, args.timeout)
        dt = time.perf_counter() - t0
        c1 = {r: proc_cpu(p) for r, p in roles.items()}
        mw.new_log()
        for role, (raw, spy) in spies.items():
            _, err = spy.communicate(timeout=120)
            if spy.returncode != 0 or not raw.exists():
                report.append(f"py-spy {role} failed: {err.decode(errors='replace')[-400:]}")
                continue
            report.append(
                f"### py-spy {role} (pid {roles[role]}), {ndom} domain(s), {n} messages in "
                f"{dt:.1f} s ({n / dt:.0f} delivered msg/s), this process used "
                f"{c1[role] - c0[role]:.1f} s CPU\n--gil --nonblocking, {hz} Hz for {dur} s; raw "
                f"stacks: {raw}\n\n" + si.summarize_collapsed(raw, dur * hz)
            )
    return "\n\n".join(report)


def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


# ============================================================================ main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--targets", default="mailwarden,postfix", help="mailwarden,postfix")
    ap.add_argument("--domains", default="1,10", help="recipient-domain counts (1..10)")
    ap.add_argument("--n", type=int, default=5_000, help="messages per run")
    ap.add_argument("--size", type=int, default=2048, help="body bytes (smtp-source -l)")
    ap.add_argument("--conc", type=int, default=10, help="injecting SMTP sessions in total")
    ap.add_argument("--reuse", action="store_true", help="smtp-source -d: reuse connections")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--settle", type=float, default=1.0, help="idle seconds before each run")
    ap.add_argument("--warmup", type=int, default=1000, help="untimed messages per target")
    ap.add_argument("--verify", type=int, default=20, help="messages checked through a dump sink")
    ap.add_argument("--workers", type=int, default=2, help="mailwarden workers")
    ap.add_argument(
        "--mw-set",
        action="append",
        default=[],
        metavar="KEY=YAML",
        help="extra mailwarden config, e.g. delivery.per_destination=20 (repeatable)",
    )
    ap.add_argument(
        "--mailwarden-cmd",
        default=f"{shlex.quote(sys.executable)} -m mailwarden",
        help="command prefix for the mailwarden CLI",
    )
    ap.add_argument("--mw-port", type=int, default=12690)
    ap.add_argument("--pf-port", type=int, default=12665, help="Postfix (and +10 for HOLD)")
    ap.add_argument("--sink-port", type=int, default=12628)
    ap.add_argument("--verify-port", type=int, default=12630)
    ap.add_argument("--dead-port", type=int, default=12631, help="nothing may listen here")
    ap.add_argument(
        "--queue-test", type=int, default=100_000, help="messages for the RSS test (0: skip)"
    )
    ap.add_argument(
        "--queue-fill",
        choices=["direct", "smtp"],
        default="direct",
        help="direct: write deferred rows into the queue tables (fast); smtp: submit them "
        "and let the runner defer each (slow: see README)",
    )
    ap.add_argument("--queue-fill-seconds", type=float, default=600.0, help="cap for smtp fill")
    ap.add_argument("--queue-conc", type=int, default=20)
    ap.add_argument("--profile", type=float, default=0, metavar="SECONDS")
    ap.add_argument(
        "--profile-rate",
        type=float,
        default=200.0,
        help="msg/s to size the --profile load when there were no runs",
    )
    ap.add_argument("--timeout", type=float, default=600.0, help="max wait for the sink")
    ap.add_argument("--strict", action="store_true", help="abort on the first failed check")
    ap.add_argument("--keep", action="store_true", help="keep the work dir and Postfix instance")
    ap.add_argument("--install", action="store_true", help="apt-get postfix, add user mbench")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    ap.add_argument("--out", default=str(HERE / "results" / f"outbound-{stamp}.csv"))
    ap.add_argument("--json", default=str(HERE / "results" / f"outbound-{stamp}.json"))
    args = ap.parse_args(argv)
    args.domain_list = [int(x) for x in args.domains.split(",") if x]
    args.target_list = [x for x in args.targets.split(",") if x]
    if any(d < 1 or d > len(DOMAINS) for d in args.domain_list):
        ap.error(f"--domains must be between 1 and {len(DOMAINS)}")
    if set(args.target_list) - {"mailwarden", "postfix"}:
        ap.error("--targets: mailwarden, postfix")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, si._raise_exit)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if args.install:
            si.install_prereqs()
        si.check_prereqs(["postfix"])
        ports = [args.sink_port, args.verify_port, args.dead_port]
        ports += [args.mw_port] if "mailwarden" in args.target_list else []
        ports += [args.pf_port, args.pf_port + 10] if "postfix" in args.target_list else []
        busy = [p for p in ports if not si.port_free(p)]
        if busy:
            raise BenchAbort(f"ports in use on 127.0.0.1: {busy}")
    except BenchAbort as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    version = si.source_version()
    MB_ROOT.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="mwob-", dir=MB_ROOT))
    os.chmod(root, 0o755)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cgs = {name: bl.CGroup(f"mwob-{name}") for name in ("sink", "client")}
    ro.SINK_PORT = args.sink_port
    routes = {d: ("127.0.0.1", args.sink_port) for d in DOMAINS}
    routes[VERIFY_DOMAIN] = ("127.0.0.1", args.verify_port)
    routes[DEAD_DOMAIN] = ("127.0.0.1", args.dead_port)
    mw_routes = {d: f"smtp://{h}:{p}" for d, (h, p) in routes.items()}
    targets: list[Any] = []
    mw: Mailwarden | None = None
    pf: Postfix | None = None
    sink: Any = None
    dump: DumpSink | None = None
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    qres: dict[str, Any] | None = None
    profile_text = ""
    rc = 0
    t_begin = time.monotonic()
    try:
        log(f"work dir {root}")
        sink = ro.Sink(cgs["sink"])
        dump = DumpSink(args.verify_port, root / "dump", cgs["sink"])
        for name in args.target_list:
            if name == "mailwarden":
                mw = Mailwarden(root, shlex.split(args.mailwarden_cmd), mw_routes, args)
                targets.append(mw)
            else:
                pf = Postfix(args.pf_port, args.sink_port, routes)
                targets.append(pf)
            targets[-1].start()
            log(f"started {name} on 127.0.0.1:{targets[-1].port} (cgroup {targets[-1].cg.kind})")
        notes = preflight(mw, pf, dump, cgs, args)
        for note in notes:
            log("preflight " + note)
        for t in targets:
            if args.warmup:
                base = sink.count
                wall, errs = inject(
                    t.port, args.warmup, DOMAINS, args.conc, args.size, cgs["client"],
                    reuse=args.reuse,
                )  # fmt: skip
                ok = sink.wait_for(base + args.warmup, args.timeout)
                log(f"warm-up {t.name}: {args.warmup} msgs, {args.warmup / wall:.0f} acc/s "
                    f"ok={ok is not None and not errs}")  # fmt: skip
        for run_no in range(1, args.runs + 1):
            for cell, ndom in enumerate(args.domain_list):
                order = targets if (cell + run_no) % 2 == 1 else targets[::-1]
                for t in order:
                    r = one_run(t, sink, cgs, ndom, args, run_no)
                    rows.append(r)
                    log(fmt_row(r))
        if args.profile and mw is not None:
            profile_text = profile(mw, sink, cgs, args, root, rows)
        if args.queue_test and mw is not None:
            qres = queue_test(mw, cgs, args)
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
            except Exception as exc:
                print(f"stopping {t.name}: {exc!r}", file=sys.stderr)
        for s in (sink, dump):
            if s is not None:
                s.stop()
        time.sleep(0.5)
        for cg in cgs.values():
            cg.remove()
        bl.remove_cgroup_root()
        if profile_text:
            dest = Path(args.out).parent
            for p in root.glob("pyspy-*"):
                shutil.move(str(p), dest / p.name)
            profile_text = profile_text.replace(str(root), str(dest))
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
            if pf is not None:
                shutil.rmtree(pf.base, ignore_errors=True)

    out_text = []
    if rows:
        table, summary = summarize(rows, args)
        reuse = "connection reuse" if args.reuse else "new connection per message"
        out_text.append(
            f"## Outbound, {time.strftime('%Y-%m-%d %H:%M')}: mailwarden {version}, "
            f"workers={args.workers}{', ' + ' '.join(args.mw_set) if args.mw_set else ''}; "
            f"{args.runs} run(s) x {args.n} msgs, body {args.size} B, smtp-source c={args.conc}"
            f" ({reuse}); mailwarden signs RSA-2048 + Ed25519, Postfix does not sign; "
            f"medians [min–max]\n"
        )
        out_text.append(table)
        out_text.append("")
        for c in summary:
            if "ratio" in c:
                verdict = "MET" if c["ratio"] >= 0.5 else "NOT MET"
                out_text.append(
                    f"Target: mailwarden ≥ 50% of Postfix's delivered msg/s, {c['domains']} "
                    f"domain(s): {100 * c['ratio']:.0f}% — {verdict}"
                )
        bad = [r for r in rows if not r["ok"]]
        out_text.append(
            f"checks: {len(rows) - len(bad)} of {len(rows)} runs passed (sink got exactly N, "
            f"queue drained" + (", N delivered lines in mailwarden's log)" if mw else ")")
        )
        out_text.extend("preflight " + n for n in notes)
        other = [r["other_cpu_s"] / r["deliver_s"] for r in rows]
        out_text.append(
            f"noise: other CPU on the box median {statistics.median(other):.2f} cores, "
            f"max {max(other):.2f}"
        )
        with open(args.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]), extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow({**r, "errors": json.dumps(r["errors"])})
    if qres is not None:
        out_text.append(f"\n### mailwarden queue memory, {qres['queued_target']:,} deferred\n")
        out_text.append(fmt_queue(qres))
    problems = (mw.problems if mw is not None else []) + [
        "run failed checks: " + fmt_row(r) for r in rows if not r["ok"]
    ]
    for p in problems:
        out_text.append(f"PROBLEM: {p}")
    if profile_text:
        out_text.append("\n" + profile_text)
    print("\n".join(out_text))
    if rows or qres:
        Path(args.json).write_text(
            json.dumps(
                {"args": vars(args), "version": version, "rows": rows, "queue": qres,
                 "notes": notes, "problems": problems},
                indent=1,
                default=str,
            )
        )  # fmt: skip
        Path(args.json).with_suffix(".md").write_text("\n".join(out_text) + "\n")
    if problems and rc == 0:
        rc = 1
    log(f"total time {time.monotonic() - t_begin:.0f}s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
