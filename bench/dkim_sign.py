#!/usr/bin/env python3
"""DKIM signing cost per message: auth/dkim_sign.py (OpenSSL) against auth/dkim.py (dkimpy).

Each message gets two signatures, RSA-2048 and Ed25519, as outbound mail does. Bodies of
2 KB and 100 KB, every line ending in two spaces so that relaxed canonicalization has work
to do. The keys are loaded before timing starts (dkimpy's PEM conversion is cached too).
Every signed message is checked once with dkimpy before any timing, so a broken signer
cannot post a good number.

    .venv/bin/python bench/dkim_sign.py                 # about 10 s
    .venv/bin/python bench/dkim_sign.py --seconds 5     # longer runs, steadier figures
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import dkim

from mailwarden.auth.dkim import dkim_txt_record, sign
from mailwarden.auth.dkim_sign import (
    ED25519_SHA256,
    RSA_SHA256,
    generate_key,
    load_signing_key,
    sign_message,
)

DOMAIN = "sender.bench.test"
SIZES = (2048, 102_400)


def make_message(size: int) -> bytes:
    line = b"The quick brown fox jumps over the lazy dog, again and again.  \r\n"
    body = (line * (size // len(line) + 1))[: size - 2] + b"\r\n"
    return (
        f"From: Bench <bench@{DOMAIN}>\r\nTo: someone@example.net\r\n"
        f"Subject: benchmark\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
        f"Message-ID: <bench@{DOMAIN}>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
    ).encode() + body


def signers(rsa_pem: bytes, ed_pem: bytes) -> dict[str, Callable[[bytes], bytes]]:
    keys = [load_signing_key("rsa", DOMAIN, rsa_pem), load_signing_key("ed", DOMAIN, ed_pem)]

    def ours(message: bytes) -> bytes:
        return sign_message(message, keys, timestamp=int(time.time()))

    def dkimpy(message: bytes) -> bytes:
        return sign(message, "rsa", DOMAIN, rsa_pem, RSA_SHA256) + sign(
            message, "ed", DOMAIN, ed_pem, ED25519_SHA256
        )

    return {"dkim_sign (cryptography)": ours, "auth/dkim.sign (dkimpy)": dkimpy}


def check(
    name: str, signer: Callable[[bytes], bytes], message: bytes, keys: dict[str, str]
) -> None:
    """Both signatures must verify with dkimpy before we time anything."""
    signed = signer(message) + message

    def lookup(qname: bytes, timeout: int = 5) -> bytes | None:
        return keys.get(qname.decode().rstrip(".").split("._domainkey.")[0], "").encode() or None

    for idx in (0, 1):
        if not dkim.DKIM(signed).verify(idx=idx, dnsfunc=lookup):
            raise SystemExit(f"{name}: signature {idx} does not verify")


def per_message_ms(signer: Callable[[bytes], bytes], message: bytes, seconds: float) -> float:
    """Median over 5 rounds of the mean time per call within a round, in ms."""
    rounds = []
    for _ in range(5):
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / 5:
            signer(message)
            count += 1
        rounds.append(elapsed / count * 1000)
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="per signer and size")
    args = parser.parse_args()
    rsa_pem, ed_pem = generate_key(RSA_SHA256), generate_key(ED25519_SHA256)
    keys = {"rsa": dkim_txt_record(rsa_pem), "ed": dkim_txt_record(ed_pem)}
    table = signers(rsa_pem, ed_pem)
    print(f"{'signer (RSA-2048 + Ed25519 per message)':42} {'size':>7} {'ms/msg':>8} {'msg/s':>8}")
    for size in SIZES:
        message = make_message(size)
        results = {}
        for name, signer in table.items():
            check(name, signer, message, keys)
            results[name] = ms = per_message_ms(signer, message, args.seconds)
            print(f"{name:42} {size:>7} {ms:8.3f} {1000 / ms:8.0f}")
        mine, theirs = results.values()
        print(f"{'  speed-up':42} {size:>7} {theirs / mine:7.1f}x")


if __name__ == "__main__":
    main()
