"""Verify DKIM signatures with independent implementations, keys from our Knot server.

Both helpers take the message and the test DNS server ("127.0.0.1:PORT"), check **every**
DKIM-Signature field of the message, and return ``(all_passed, output)``. They call
``pytest.skip`` when their tool is not installed.

``verify_dkimpy`` runs dkimpy's own command-line verifier, ``dkim.dkimverify.main`` (the
``dkimverify`` script), in a subprocess using the interpreter from the script's ``#!`` line.
A short wrapper first makes dnspython's default resolver, which dkimpy uses for its key
lookups, ask only ``host`` on ``port``. Then it calls ``main()`` once per signature with
``--index N``, because dkimverify checks one signature per run (index 0 by default). The
verifier code is dkimpy's, unchanged.

``verify_opendkim`` uses OpenDKIM. ``opendkim-testmsg`` (package opendkim-tools) cannot be
used: it has no configuration file (its ``-C`` means "CRLF", not "config"), and it resolves
through libresolv. libresolv reads /etc/resolv.conf, which has no way to set a port. The
``Nameservers`` option of opendkim.conf does not help either: on Linux it is ignored
(port 53 is hard-wired, and glibc has no ``res_setservers``). So this helper runs the
filter itself (``opendkim``, from the Debian package **opendkim**) in its test mode,
``opendkim -x CONF -t FILE``. Debian builds it with libunbound (``USE_UNBOUND`` in
``opendkim -V``). The generated configuration sets ``ResolverConfiguration`` to an Unbound
configuration file. That file sends every query to the Knot server
(``forward-zone: "." forward-addr: 127.0.0.1@PORT``), turns off DNSSEC validation
(``module-config: "iterator"``), allows loopback servers (``do-not-query-localhost: no``)
and lifts Unbound's built-in empty zones for ``test.`` and ``invalid.``. OpenDKIM then
fetches the keys that the test published in Knot over real DNS on loopback, and verifies
each signature with its own code. Test mode always exits 0 and prints the
Authentication-Results field it would add: the message passes only if that field holds one
``dkim=pass`` for each DKIM-Signature and no other ``dkim=`` result.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

TIMEOUT = 60  # seconds per verifier run (each DNS lookup gives up after 5 s)

_SIGNATURE = re.compile(rb"^dkim-signature[ \t]*:", re.IGNORECASE | re.MULTILINE)
_AR_LINE = re.compile(r"hname='Authentication-Results' hvalue='([^']*)'")
_DKIM_RESULT = re.compile(r"\bdkim=(\w+)")

_DKIMPY_WRAPPER = """
import io, sys, traceback
import dns.resolver
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
resolver = dns.resolver.Resolver(configure=False)
resolver.nameservers = [host]
resolver.port = port
dns.resolver.default_resolver = resolver
from dkim.dkimverify import main
message = sys.stdin.buffer.read()
failed = False
for index in range(count):
    sys.argv = ["dkimverify", "--index", str(index)]
    sys.stdin = io.TextIOWrapper(io.BytesIO(message))  # main() detaches it again
    print(f"signature {index}: ", end="", flush=True)
    try:
        main()
    except SystemExit as exc:
        failed = failed or exc.code not in (None, 0)
    except Exception:
        traceback.print_exc(file=sys.stdout)
        failed = True
    sys.stdout.flush()
sys.exit(1 if failed else 0)
"""


def signature_count(message: bytes) -> int:
    """DKIM-Signature fields in the header section of ``message``."""
    end = message.find(b"\r\n\r\n")
    return len(_SIGNATURE.findall(message if end < 0 else message[: end + 2]))


def _split_nameserver(nameserver: str) -> tuple[str, int]:
    host, _sep, port = nameserver.rpartition(":")
    return host.strip("[]"), int(port)


# ------------------------------------------------------------------------------ dkimpy
def _dkimverify_command() -> list[str]:
    """The interpreter of the installed ``dkimverify`` script (from its #! line)."""
    script = Path(sys.executable).parent / "dkimverify"
    found = str(script) if script.is_file() else shutil.which("dkimverify")
    if found is None:
        pytest.skip("dkimpy's dkimverify is not installed (pip install dkimpy)")
    first = Path(found).read_text(encoding="utf-8", errors="replace").partition("\n")[0]
    return shlex.split(first[2:]) if first.startswith("#!") else [sys.executable]


def verify_dkimpy(message: bytes, nameserver: str) -> tuple[bool, str]:
    """Every signature through dkimpy's ``dkimverify``, keys from ``nameserver``."""
    count = signature_count(message)
    if not count:
        return False, "no DKIM-Signature field"
    host, port = _split_nameserver(nameserver)
    args = [*_dkimverify_command(), "-c", _DKIMPY_WRAPPER, host, str(port), str(count)]
    res = subprocess.run(args, input=message, capture_output=True, timeout=TIMEOUT, check=False)
    output = (res.stdout + res.stderr).decode("utf-8", "replace")
    passed = output.count("signature ok") == count
    return res.returncode == 0 and passed, f"dkimverify exit {res.returncode}:\n{output}"


# ---------------------------------------------------------------------------- OpenDKIM
def _opendkim_command() -> str:
    exe = shutil.which("opendkim") or next(
        (p for p in ("/usr/sbin/opendkim", "/usr/local/sbin/opendkim") if os.access(p, os.X_OK)),
        None,
    )
    if exe is None:
        pytest.skip("OpenDKIM is not installed (apt-get install opendkim)")
    version = subprocess.run(
        [exe, "-V"], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    if "USE_UNBOUND" not in version.stdout or "ed25519-sha256" not in version.stdout:
        pytest.skip(f"{exe} lacks Unbound or Ed25519 support:\n{version.stdout}")
    return exe


def _write_config(workdir: Path, nameserver: str) -> Path:
    host, port = _split_nameserver(nameserver)
    unbound = workdir / "unbound.conf"
    unbound.write_text(
        "server:\n"
        "  do-not-query-localhost: no\n"
        '  module-config: "iterator"\n'
        "  qname-minimisation: no\n"
        '  local-zone: "test." nodefault\n'
        '  local-zone: "invalid." nodefault\n'
        "forward-zone:\n"
        '  name: "."\n'
        f"  forward-addr: {host}@{port}\n",
        encoding="utf-8",
    )
    conf = workdir / "opendkim.conf"
    conf.write_text(
        "Mode v\n"
        "Syslog no\n"
        "AuthservID opendkim.test\n"
        "AlwaysAddARHeader yes\n"
        "MaximumSignaturesToVerify 20\n"
        "MinimumKeyBits 1024\n"
        f"TemporaryDirectory {workdir}\n"
        f"ResolverConfiguration {unbound}\n",
        encoding="utf-8",
    )
    return conf


def verify_opendkim(message: bytes, nameserver: str) -> tuple[bool, str]:
    """Every signature through OpenDKIM's filter in test mode, keys from ``nameserver``."""
    exe = _opendkim_command()
    count = signature_count(message)
    if not count:
        return False, "no DKIM-Signature field"
    with tempfile.TemporaryDirectory(prefix="opendkim-") as tmp:
        workdir = Path(tmp)
        conf = _write_config(workdir, nameserver)
        msg = workdir / "message.eml"
        msg.write_bytes(message)
        res = subprocess.run(
            [exe, "-x", str(conf), "-vv", "-t", str(msg)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    output = res.stdout + res.stderr
    results = [r for ar in _AR_LINE.findall(output) for r in _DKIM_RESULT.findall(ar)]
    passed = res.returncode == 0 and results == ["pass"] * count
    return passed, f"opendkim exit {res.returncode}, dkim results {results}:\n{output}"
