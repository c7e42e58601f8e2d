"""`mailwarden setup` at a real terminal (pexpect): from no configuration to a domain
whose records are published and pass.

The test answers the prompts, takes the DNS records the wizard prints, publishes them
on the loopback DNS server exactly as printed, and presses Enter: the wizard re-checks
and finishes.
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

import pexpect

from dnsserver import KnotServer, unique_domain
from mwserver import CLEAN_ENV, mw

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
ZONE_LINE = re.compile(r"^(\S+\.) 3600 IN (MX|TXT) (.+)$", re.M)
PASSWORD = "wizard horse battery"


def _spawn(cwd: Path, env: dict[str, str], *args: str) -> pexpect.spawn:
    return pexpect.spawn(
        sys.executable,
        ["-m", "mailwarden", "setup", *args],
        cwd=str(cwd),
        env=env,
        encoding="utf-8",
        timeout=60,
        dimensions=(60, 250),
    )


def _env(dns: KnotServer, domain: str) -> dict[str, str]:
    """No colours; DNS and the blocklist on the loopback server."""
    return {
        **CLEAN_ENV,
        "NO_COLOR": "1",
        "MAILWARDEN_DNS__NAMESERVERS": json.dumps([dns.nameserver]),
        "MAILWARDEN_REPUTATION__BLOCKLISTS": json.dumps([f"ip:dnsbl.{domain}"]),
    }


def _domain_and_new_admin(child: pexpect.spawn, domain: str) -> None:
    """Answer the domain prompt, take admin@<domain>, give it PASSWORD twice."""
    child.expect("Mail domain")
    child.sendline(domain)
    child.expect("Admin mail address")
    child.sendline("")
    child.expect("Password")
    child.sendline(PASSWORD)
    child.expect("Repeat for confirmation")
    child.sendline(PASSWORD)


def test_setup_wizard_from_nothing_to_ready(tmp_path: Path, test_tld: KnotServer) -> None:
    domain = unique_domain("wizard")
    host = f"mx.{domain}"
    ip = f"127.{random.randint(1, 250)}.{random.randint(1, 250)}.{random.randint(2, 250)}"
    test_tld.set_zone(domain, [f"mx A {ip}"])
    test_tld.add_ptr(ip, host)
    env = {**_env(test_tld, domain), "MAILWARDEN_DELIVERY__SOURCE_ADDRESS": ip}
    child = _spawn(tmp_path, env)
    try:
        child.expect("host name")
        child.sendline(host)
        child.expect("Where to keep")
        child.sendline("")
        child.expect(r"real ports")
        child.sendline("n")
        child.expect("Mail domain")
        child.sendline(domain)
        child.expect("Admin mail address")
        child.sendline("")  # the default, admin@<domain>
        child.expect("Password")
        child.sendline("short")
        child.expect("Repeat for confirmation")
        child.sendline("short")
        child.expect("at least 8 characters")
        child.expect("Password")
        child.sendline(PASSWORD)
        child.expect("Repeat for confirmation")
        child.sendline(PASSWORD)
        child.expect("Publish these DNS records")
        child.expect("press Enter to check now")
        printed = ANSI.sub("", child.before.replace("\r\n", "\n"))
        records = [f"{m[1]} {m[2]} {m[3]}" for m in ZONE_LINE.finditer(printed)]
        assert any(" MX " in r for r in records), printed
        assert "fail" in printed  # nothing is published yet
        # Publish what the wizard printed, as printed, and ask it to look again.
        test_tld.set_zone(domain, [*records, f"mx A {ip}"])
        child.sendline("")
        child.expect(f"{re.escape(domain)} is ready")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before
    config = tmp_path / "mailwarden.yaml"
    assert config.exists()
    users = json.loads(mw(tmp_path, "user", "list", "--json", env=env, check=True).stdout)
    assert [u["address"] for u in users] == [f"admin@{domain}"]
    aliases = json.loads(mw(tmp_path, "alias", "list", "--json", env=env, check=True).stdout)
    sources = {a["source"] for a in aliases}
    assert {f"postmaster@{domain}", f"abuse@{domain}", f"dmarc-reports@{domain}"} <= sources


def test_setup_wizard_can_be_stopped_and_resumed(tmp_path: Path, test_tld: KnotServer) -> None:
    """With a configuration in place and nothing published: q stops with exit 1; a second
    run finds the domain and the admin and does not ask for a password again."""
    domain = unique_domain("wizard-stop")
    host = f"mx.{domain}"
    env = _env(test_tld, domain)
    mw(tmp_path, "init", "--hostname", host, env=env, check=True)
    for run in range(2):
        child = _spawn(tmp_path, env)
        try:
            if run == 0:
                _domain_and_new_admin(child, domain)
            else:
                child.expect("Mail domain")
                child.sendline(domain)
                child.expect("Admin mail address")
                child.sendline("")
                child.expect("exists; its password is unchanged")
            child.expect("press Enter to check now")
            child.sendline("q")
            child.expect("stopped")
            child.expect(pexpect.EOF)
        finally:
            child.close()
        assert child.exitstatus == 1


def test_setup_wizard_rechecks_by_itself(tmp_path: Path, test_tld: KnotServer) -> None:
    """Nobody presses a key: the wizard looks again every --interval seconds and sees
    the records once they are published."""
    domain = unique_domain("wizard-live")
    host = f"mx.{domain}"
    env = _env(test_tld, domain)
    mw(tmp_path, "init", "--hostname", host, env=env, check=True)
    test_tld.set_zone(domain, ["mx A 127.0.0.1"])
    child = _spawn(tmp_path, env, "--interval", "1")
    try:
        _domain_and_new_admin(child, domain)
        child.expect("Checking again in 1 s")
        printed = ANSI.sub("", child.before.replace("\r\n", "\n"))
        records = [f"{m[1]} {m[2]} {m[3]}" for m in ZONE_LINE.finditer(printed)]
        test_tld.set_zone(domain, [*records, "mx A 127.0.0.1"])
        child.expect(f"{re.escape(domain)} is ready")  # no key pressed
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
