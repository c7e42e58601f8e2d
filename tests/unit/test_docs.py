"""docs/config.md is generated from the schema and must be current."""

from __future__ import annotations

from pathlib import Path

from mailwarden.config.docs import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def test_config_reference_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/config.md is stale: run `mailwarden config docs > docs/config.md`"
    )


def test_every_key_is_documented() -> None:
    text = render()
    for key in (
        "hostname",
        "storage.url",
        "dns.nameservers",
        "limits.max_message_size",
        "inbound.bare_newline",
        "listeners.NAME.tls",
        "tls.cert",
    ):
        assert f"`{key}`" in text, key
