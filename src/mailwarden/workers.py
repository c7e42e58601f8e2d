"""`mailwarden run`: one process, or a supervisor with several worker processes.

One asyncio process uses one core. With ``workers: N`` (0 = one per core) the supervisor
binds every listening socket, prepares the data directory once (migrations, certificate),
then forks N workers that all accept on the same sockets; the kernel spreads connections
among them. Each worker is a whole server with its own database connections (SQLite
serialises writers across processes with BEGIN IMMEDIATE and its busy timeout). Workers
die with the supervisor (PR_SET_PDEATHSIG); a worker that dies on its own is restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import time

from mailwarden.app import (
    bind_listeners,
    build_services,
    ready_line,
    run_forever,
    sock_address,
    tls_context,
)
from mailwarden.auth.dmarc import load_psl
from mailwarden.config.schema import Settings

log = logging.getLogger("mailwarden.workers")
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
RESTART_DELAY = 1.0


def worker_count(settings: Settings) -> int:
    return settings.workers or os.cpu_count() or 1


def serve(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit status."""
    sockets = bind_listeners(settings)
    n = worker_count(settings)
    if n == 1:
        asyncio.run(run_forever(settings, sockets))
        return 0
    asyncio.run(_prepare(settings))  # before fork: no worker races on migrations or the cert
    return _supervise(settings, sockets, n)


async def _prepare(settings: Settings) -> None:
    services = await build_services(settings)
    await services.db.close()
    tls_context(settings)
    await load_psl()  # inherited by every worker


def _supervise(settings: Settings, sockets: dict[str, socket.socket], n: int) -> int:
    stopping = False
    children: dict[int, int] = {}

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            _kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for index in range(n):
        children[_fork(settings, sockets, index)] = index
    log.info("supervisor %d started %d workers", os.getpid(), n)
    print(ready_line({name: sock_address(s) for name, s in sockets.items()}), flush=True)
    status = 0
    while children:
        try:
            pid, code = os.wait()
        except ChildProcessError:
            break
        index = children.pop(pid)
        if stopping:
            continue
        log.error("worker %d (pid %d) exited with status %d; restarting", index, pid, code)
        status = 1
        time.sleep(RESTART_DELAY)
        if not stopping:
            children[_fork(settings, sockets, index)] = index
    log.info("supervisor stopped")
    return 0 if stopping else status


def _fork(settings: Settings, sockets: dict[str, socket.socket], index: int) -> int:
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        _die_with_parent(parent)
        # Worker 0 also runs the outbound queue; the others only accept and enqueue.
        asyncio.run(run_forever(settings, sockets, announce=False, run_queue=index == 0))
    except BaseException:  # a worker must never return into the supervisor's code
        log.exception("worker %d failed", index)
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _die_with_parent(parent: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the supervisor died before prctl took effect
        os._exit(1)


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
