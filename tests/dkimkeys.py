"""DKIM test keys (RSA-2048 and Ed25519) with the TXT records that publish them.

Used by the integration tests and by bench/smtp_inbound.py. Keys are made fresh per run.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa


@dataclass(frozen=True)
class DkimKeys:
    rsa_pem: bytes
    rsa_txt: str
    ed_private: bytes  # base64 of the 32-byte seed, as dkimpy wants it
    ed_txt: str


def make_dkim_keys() -> DkimKeys:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    pub = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    ed = ed25519.Ed25519PrivateKey.generate()
    raw = serialization.Encoding.Raw
    seed = ed.private_bytes(raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    ed_pub = ed.public_key().public_bytes(raw, serialization.PublicFormat.Raw)
    return DkimKeys(
        rsa_pem=pem,
        rsa_txt=f"v=DKIM1; k=rsa; p={base64.b64encode(pub).decode()}",
        ed_private=base64.b64encode(seed),
        ed_txt=f"v=DKIM1; k=ed25519; p={base64.b64encode(ed_pub).decode()}",
    )
