"""The `mailwarden` command as an operator uses it: init, accounts, run, inspect, stop."""

from __future__ import annotations

import json
import re
import signal
import smtplib
from pathlib import Path

import pytest
import yaml

from mwserver import ServerProcess, mw


@pytest.fixture
def site(tmp_path: Path) -> Path:
    res = mw(tmp_path, "init", "--hostname", "mail.example.test", "--data-dir", "./data")
    assert res.returncode == 0, res.stderr
    return tmp_path


def test_init_writes_embedded_default(site: Path) -> None:
    cfg = yaml.safe_load((site / "mailwarden.yaml").read_text())
    assert cfg["hostname"] == "mail.example.test"
    ports = {name: (lst["address"], lst["port"]) for name, lst in cfg["listeners"].items()}
    assert ports["mx"] == ("127.0.0.1", 2525)
    assert ports["submissions"] == ("127.0.0.1", 2465)
    assert ports["http"] == ("127.0.0.1", 8025)
    assert (site / "data" / "tls" / "cert.pem").exists()
    assert (site / "data" / "mailwarden.db").exists()
    assert oct((site / "data" / "tls" / "key.pem").stat().st_mode & 0o777) == "0o600"
    again = mw(site, "init", "--hostname", "mail.example.test")
    assert again.returncode == 1 and "already exists" in again.stderr
    assert mw(site, "config", "check").returncode == 0


def test_init_production_ports(tmp_path: Path) -> None:
    res = mw(tmp_path, "init", "--hostname", "mail.example.test", "--production")
    assert res.returncode == 0, res.stderr
    cfg = yaml.safe_load((tmp_path / "mailwarden.yaml").read_text())
    ports = sorted(lst["port"] for lst in cfg["listeners"].values())
    assert ports == [25, 143, 443, 465, 587, 993]
    assert {lst["address"] for lst in cfg["listeners"].values()} == {"*"}
    assert cfg["workers"] == 0


def test_config_check_names_bad_keys(site: Path) -> None:
    path = site / "mailwarden.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg["limits"] = {"max_recipients": "many", "frobnicate": 1}
    path.write_text(yaml.safe_dump(cfg))
    res = mw(site, "config", "check")
    assert res.returncode == 78
    assert "limits.max_recipients" in res.stderr
    assert "limits.frobnicate: unknown key" in res.stderr
    env_res = mw(site, "domain", "list", env={"MAILWARDEN_CONFIG": str(path)})
    assert env_res.returncode == 78


def test_no_config_is_explained(tmp_path: Path) -> None:
    res = mw(tmp_path, "domain", "list")
    assert res.returncode == 78
    assert "mailwarden init" in res.stderr


def test_accounts_and_listing(site: Path) -> None:
    assert mw(site, "domain", "add", "Example.TEST").returncode == 0
    res = mw(site, "user", "add", "alice@example.test", "--password-stdin", stdin="s3cret-pass\n")
    assert res.returncode == 0, res.stderr
    assert "s3cret" not in res.stdout + res.stderr
    assert mw(site, "alias", "add", "postmaster@example.test", "alice@example.test").returncode == 0
    assert mw(site, "alias", "add", "@example.test", "alice@example.test").returncode == 0
    domains = json.loads(mw(site, "domain", "list", "--json").stdout)
    assert [d["name"] for d in domains] == ["example.test"]
    aliases = json.loads(mw(site, "alias", "list", "--json").stdout)
    assert {(a["source"], a["destination"]) for a in aliases} == {
        ("postmaster@example.test", "alice@example.test"),
        ("@example.test", "alice@example.test"),
    }
    boxes = json.loads(mw(site, "mailbox", "list", "alice@example.test", "--json").stdout)
    assert [b["name"] for b in boxes] == ["INBOX", "Sent", "Drafts", "Junk", "Trash", "Archive"]
    assert all(b["messages"] == 0 for b in boxes)
    # errors have distinct exit codes
    dup = mw(site, "domain", "add", "example.test")
    assert dup.returncode == 1 and "already exists" in dup.stderr
    missing = mw(site, "user", "add", "x@nowhere.test", "--password-stdin", stdin="longenough\n")
    assert missing.returncode == 3 and "not hosted here" in missing.stderr
    short = mw(site, "user", "add", "bob@example.test", "--password-stdin", stdin="short\n")
    assert short.returncode == 1
    assert mw(site, "message", "list", "nobody@example.test").returncode == 3


@pytest.mark.parametrize(
    "cmd",
    [
        [],
        ["init"],
        ["run"],
        ["domain"],
        ["domain", "add"],
        ["user", "add"],
        ["alias", "add"],
        ["mailbox", "list"],
        ["message", "list"],
        ["message", "show"],
        ["config", "check"],
    ],
)
def test_help_everywhere(tmp_path: Path, cmd: list[str]) -> None:
    res = mw(tmp_path, *cmd, "--help")
    assert res.returncode == 0
    assert "Usage" in res.stdout
    if cmd not in ([], ["domain"]):
        assert "--config" in res.stdout


def test_run_receive_inspect_and_stop(site: Path) -> None:
    mw(site, "domain", "add", "example.test")
    mw(site, "user", "add", "alice@example.test", "--password-stdin", stdin="s3cret-pass\n")
    cfg_path = site / "mailwarden.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["listeners"]["mx"]["port"] = 0  # a free port; READY says which
    cfg["dns"] = {"nameservers": ["127.0.0.1:9"], "timeout": 1}  # nothing there: temperrors
    cfg_path.write_text(yaml.safe_dump(cfg))
    proc = ServerProcess(cfg_path, site / "server.log")
    proc.start()
    try:
        ready = re.search(rb"READY .*mx=127\.0\.0\.1:(\d+)", (site / "server.log").read_bytes())
        assert ready
        port = int(ready.group(1))
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.sendmail(
                "someone@nowhere.test",
                ["alice+news@example.test"],
                b"From: someone@nowhere.test\r\nSubject: =?utf-8?q?gr=C3=BC=C3=9Fe?=\r\n\r\nhi\r\n",
            )
    finally:
        code = proc.signal(signal.SIGTERM)
    assert code == 0
    log = (site / "server.log").read_text()
    assert "mailwarden stopped" in log
    listed = json.loads(mw(site, "message", "list", "alice@example.test", "--json").stdout)
    assert len(listed) == 1
    assert listed[0]["subject"] == "grüße"
    assert listed[0]["uid"] == 1
    assert "spf=temperror" in listed[0]["auth_results"]
    raw = mw(site, "message", "show", "alice@example.test", "--mailbox", "INBOX", "--uid", "1")
    assert raw.returncode == 0
    assert "Subject: =?utf-8?q?gr=C3=BC=C3=9Fe?=" in raw.stdout
    assert raw.stdout.startswith("Received: from ")


def test_run_with_two_workers(site: Path) -> None:
    mw(site, "domain", "add", "example.test")
    mw(site, "user", "add", "alice@example.test", "--password-stdin", stdin="s3cret-pass\n")
    cfg_path = site / "mailwarden.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["listeners"] = {"mx": {"protocol": "smtp", "address": "127.0.0.1", "port": 0}}
    cfg["dns"] = {"nameservers": ["127.0.0.1:9"], "timeout": 0.2}
    cfg["workers"] = 2
    cfg_path.write_text(yaml.safe_dump(cfg))
    proc = ServerProcess(cfg_path, site / "server.log")
    proc.start()
    try:
        ready = re.search(rb"READY mx=127\.0\.0\.1:(\d+)", (site / "server.log").read_bytes())
        assert ready
        for i in range(12):  # a new connection each: the kernel spreads them over both workers
            with smtplib.SMTP("127.0.0.1", int(ready.group(1)), timeout=30) as s:
                s.sendmail(
                    "x@nowhere.test", ["alice@example.test"], f"Subject: {i}\r\n\r\n.".encode()
                )
    finally:
        code = proc.signal(signal.SIGTERM)
    assert code == 0
    log = (site / "server.log").read_text()
    assert "started 2 workers" in log and "supervisor stopped" in log
    assert log.count("mailwarden stopped") == 2
    listed = json.loads(mw(site, "message", "list", "alice@example.test", "--json").stdout)
    assert sorted(m["subject"] for m in listed) == sorted(str(i) for i in range(12))
    assert sorted(m["uid"] for m in listed) == list(range(1, 13))  # UIDs unique across workers
