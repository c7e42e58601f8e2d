"""Config loading: defaults, env overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailwarden.config.loader import load_settings
from mailwarden.core.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "mailwarden.yaml"
    p.write_text(text)
    return p


def test_defaults_are_the_embedded_default(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, "hostname: mail.example.test\n"), env={})
    assert s.data_dir == tmp_path / "data"
    assert s.tls.cert == tmp_path / "data" / "tls" / "cert.pem"
    ports = {n: (lst.address, lst.port) for n, lst in s.listeners.items()}
    assert ports == {
        "mx": ("127.0.0.1", 2525),
        "submission": ("127.0.0.1", 2587),
        "submissions": ("127.0.0.1", 2465),
        "imap": ("127.0.0.1", 2143),
        "imaps": ("127.0.0.1", 2993),
        "http": ("127.0.0.1", 8025),
    }
    assert s.storage.url == ""


def test_env_overrides(tmp_path: Path) -> None:
    env = {
        "MAILWARDEN_LIMITS__MAX_RECIPIENTS": "7",
        "MAILWARDEN_DNS__NAMESERVERS": '["127.0.0.1:5353"]',
        "MAILWARDEN_HOSTNAME": "other.example.test",
    }
    s = load_settings(write(tmp_path, "hostname: mail.example.test\n"), env=env)
    assert s.limits.max_recipients == 7
    assert s.dns.nameservers == ["127.0.0.1:5353"]
    assert s.hostname == "other.example.test"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("hostname: mail.example.test\nbogus: 1\n", "bogus: unknown key"),
        (
            "hostname: mail.example.test\nlimits:\n  max_recipients: lots\n",
            "limits.max_recipients:",
        ),
        (
            "hostname: mail.example.test\nlimits:\n  max_message_size: 10\n",
            "limits.max_message_size:",
        ),
        ("hostname: mail.example.test\ndns:\n  nameservers: ['nonsense']\n", "dns.nameservers:"),
        ("hostname: localhost\n", "hostname:"),
        ("limits: {}\n", "hostname: required key is missing"),
        (
            "hostname: a.example.test\nlisteners:\n  mx: {protocol: smtp, port: 25, tls: maybe}\n",
            "listeners.mx.tls:",
        ),
        ("hostname: a.example.test\nstorage:\n  url: mysql://x\n", "storage.url:"),
        ("hostname: [unclosed\n", "not valid YAML"),
        (
            "hostname: a.example.test\nreputation:\n  limits: {gmail: {rate: 5}}\n",
            "limits.gmail.rate: unknown field",
        ),
        (
            "hostname: a.example.test\nreputation:\n  breaker: {probez: 3}\n",
            "reputation.breaker.probez: unknown key",
        ),
        (
            "hostname: a.example.test\nreputation:\n  breaker: {backoffs: 5}\n",
            "reputation.breaker.backoffs: expected a list",
        ),
        (
            "hostname: a.example.test\nreputation:\n  warmup: {schedule: fast}\n",
            "reputation.warmup: Value error, schedule: 'fast' is not one of",
        ),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(write(tmp_path, text), env={})
    assert needle in str(exc.value)


def test_duplicate_ports_are_named(tmp_path: Path) -> None:
    text = (
        "hostname: a.example.test\nlisteners:\n"
        "  one: {protocol: smtp, port: 2600}\n  two: {protocol: smtp, port: 2600}\n"
    )
    with pytest.raises(ConfigError, match=r"listeners.two: port 2600 already used by one"):
        load_settings(write(tmp_path, text), env={})


def test_missing_file_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml", env={})
