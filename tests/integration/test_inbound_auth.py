"""Inbound MX with SPF, DKIM and DMARC checked against a real DNS server on loopback.

Each test publishes its sender domain's records in knot, signs its message with dkimpy
(keys published in that zone), sends it with smtplib, and checks the stored message:
the folder it landed in and the Authentication-Results header we added.
"""

from __future__ import annotations

import smtplib
import uuid

import dkim
import pytest

from dkimkeys import DkimKeys
from dnsserver import ZoneSet, txt
from mwserver import LOCAL_DOMAIN, ServerThread

ALICE = f"alice@{LOCAL_DOMAIN}"


def message(sender: str, subject: str = "hello", body: str = "Hi Alice.\r\n") -> bytes:
    return (
        f"From: Sender <{sender}>\r\nTo: Alice <{ALICE}>\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@{sender.split('@')[1]}>\r\n"
        f"Date: Sat, 21 Nov 2026 10:00:00 +0000\r\n\r\n{body}"
    ).encode()


def sign(msg: bytes, domain: str, keys: DkimKeys, algo: str = "rsa") -> bytes:
    if algo == "rsa":
        sig = dkim.sign(msg, b"rsa", domain.encode(), keys.rsa_pem)
    else:
        sig = dkim.sign(
            msg, b"ed", domain.encode(), keys.ed_private, signature_algorithm=b"ed25519-sha256"
        )
    return sig + msg


def publish(
    zones: ZoneSet,
    keys: DkimKeys,
    spf: str | None = "v=spf1 ip4:127.0.0.1 -all",
    dmarc: str | None = "v=DMARC1; p=reject; rua=mailto:dmarc@example.test",
    extra: list[str] | None = None,
) -> str:
    domain = zones.domain
    records = [f"rsa._domainkey TXT {txt(keys.rsa_txt)}", f"ed._domainkey TXT {txt(keys.ed_txt)}"]
    if spf is not None:
        records.append(f"@ TXT {txt(spf)}")
    if dmarc is not None:
        records.append(f"_dmarc TXT {txt(dmarc)}")
    records += extra or []
    zones.set_zone(domain, records)
    return domain


def send(srv: ServerThread, mail_from: str, msg: bytes, helo: str = "client.sender.test") -> None:
    with smtplib.SMTP("127.0.0.1", srv.port(), local_hostname=helo, timeout=30) as s:
        s.sendmail(mail_from, [ALICE], msg)


def stored(srv: ServerThread, mailbox: str = "INBOX") -> list[bytes]:
    ms = srv.services.mailstore
    records = srv.call(ms.messages(ALICE, mailbox))
    return [srv.call(ms.raw_message(ALICE, mailbox, m.uid)) for m in records]


def auth_header(raw: bytes) -> str:
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    lines = head.split("\r\n")
    for i, line in enumerate(lines):
        if line.lower().startswith("authentication-results:"):
            out = line
            for cont in lines[i + 1 :]:
                if not cont.startswith((" ", "\t")):
                    break
                out += " " + cont.strip()
            return out
    raise AssertionError("no Authentication-Results header")


@pytest.mark.parametrize("algo", ["rsa", "ed25519"])
def test_all_pass_goes_to_inbox(
    server: ServerThread, dns_zones: ZoneSet, dkim_keys: DkimKeys, algo: str
) -> None:
    domain = publish(dns_zones, dkim_keys)
    sender = f"news@{domain}"
    send(server, sender, sign(message(sender), domain, dkim_keys, algo))
    (raw,) = stored(server)
    ar = auth_header(raw)
    assert ar.startswith("Authentication-Results: mx.mailwarden.test;")
    assert f"spf=pass smtp.mailfrom={sender}" in ar
    assert f"dkim=pass header.d={domain}" in ar
    assert f"header.s={'rsa' if algo == 'rsa' else 'ed'}" in ar
    assert "dmarc=pass" in ar and f"header.from={domain}" in ar
    assert raw.startswith(b"Received: from client.sender.test ([127.0.0.1])")


def test_dmarc_reject_is_refused(
    server: ServerThread, dns_zones: ZoneSet, dkim_keys: DkimKeys
) -> None:
    domain = publish(dns_zones, dkim_keys, spf="v=spf1 ip4:192.0.2.1 -all")
    sender = f"ceo@{domain}"
    with pytest.raises(smtplib.SMTPDataError) as exc:
        send(server, sender, message(sender))  # unsigned, SPF fails → DMARC fails
    assert exc.value.smtp_code == 550
    assert exc.value.smtp_error.startswith(b"5.7.1")
    assert stored(server) == [] and stored(server, "Junk") == []


def test_dmarc_quarantine_goes_to_junk(
    server: ServerThread, dns_zones: ZoneSet, dkim_keys: DkimKeys
) -> None:
    domain = publish(
        dns_zones, dkim_keys, spf="v=spf1 ip4:192.0.2.1 -all", dmarc="v=DMARC1; p=quarantine"
    )
    sender = f"x@{domain}"
    send(server, sender, message(sender))
    assert stored(server) == []
    (raw,) = stored(server, "Junk")
    ar = auth_header(raw)
    assert "spf=fail" in ar and "dmarc=fail" in ar


def test_softfail_and_no_dmarc_is_delivered(
    server: ServerThread, dns_zones: ZoneSet, dkim_keys: DkimKeys
) -> None:
    domain = publish(dns_zones, dkim_keys, spf="v=spf1 ip4:192.0.2.1 ~all", dmarc=None)
    sender = f"x@{domain}"
    send(server, sender, message(sender))
    ar = auth_header(stored(server)[0])
    assert "spf=softfail" in ar
    assert "dmarc=none" in ar


def test_spf_none(server: ServerThread, dns_zones: ZoneSet, dkim_keys: DkimKeys) -> None:
    domain = publish(dns_zones, dkim_keys, spf=None, dmarc=None)
    sender = f"x@{domain}"
    send(server, sender, message(sender))
    assert "spf=none" in auth_header(stored(server)[0])


def test_spf_permerror(server: ServerThread, dns_zones: ZoneSet, dkim_keys: DkimKeys) -> None:
    # RFC 7208 §4.5: two SPF records are a permerror.
    domain = publish(dns_zones, dkim_keys, dmarc=None, extra=[f"@ TXT {txt('v=spf1 -all')}"])
    sender = f"x@{domain}"
    send(server, sender, message(sender))
    assert "spf=permerror" in auth_header(stored(server)[0])


def test_spf_temperror(server: ServerThread, dns_zones: ZoneSet, dkim_keys: DkimKeys) -> None:
    domain = publish(
        dns_zones, dkim_keys, spf=f"v=spf1 include:broken.{dns_zones.domain} -all", dmarc=None
    )
    dns_zones.add_failing_zone(f"broken.{domain}")
    sender = f"x@{domain}"
    send(server, sender, message(sender))
    assert "spf=temperror" in auth_header(stored(server)[0])


def test_dkim_fail_on_tampered_body(
    server: ServerThread, dns_zones: ZoneSet, dkim_keys: DkimKeys
) -> None:
    domain = publish(dns_zones, dkim_keys, dmarc="v=DMARC1; p=none")
    sender = f"x@{domain}"
    signed = sign(message(sender), domain, dkim_keys).replace(b"Hi Alice.", b"Hi Mallory")
    send(server, sender, signed)
    ar = auth_header(stored(server)[0])
    assert "dkim=fail" in ar
    assert "dmarc=pass" in ar  # SPF still passes and is aligned


def test_dkim_only_alignment_passes_dmarc_when_spf_fails(
    server: ServerThread, dns_zones: ZoneSet, dkim_keys: DkimKeys
) -> None:
    # Forwarded mail: SPF fails for our IP, but the aligned DKIM signature carries DMARC.
    domain = publish(dns_zones, dkim_keys, spf="v=spf1 ip4:192.0.2.1 -all")
    sender = f"x@{domain}"
    send(server, sender, sign(message(sender), domain, dkim_keys))
    ar = auth_header(stored(server)[0])
    assert "spf=fail" in ar and "dkim=pass" in ar and "dmarc=pass" in ar


def test_forged_authentication_results_are_removed(
    server: ServerThread, dns_zones: ZoneSet, dkim_keys: DkimKeys
) -> None:
    domain = publish(dns_zones, dkim_keys, dmarc=None)
    sender = f"x@{domain}"
    forged = b"Authentication-Results: mx.mailwarden.test; dkim=pass header.d=bank.test\r\n"
    send(server, sender, forged + message(sender))
    raw = stored(server)[0]
    assert b"bank.test" not in raw
    assert raw.count(b"Authentication-Results:") == 1


def arc_sealed(domain: str, keys: DkimKeys) -> bytes:
    """What a forwarder sends: its own Authentication-Results, then an ARC set over it."""
    original = message(f"x@{domain}")
    with_ar = (
        f"Authentication-Results: {domain}; dkim=pass header.d={domain}\r\n".encode() + original
    )
    arc = dkim.arc_sign(with_ar, b"rsa", domain.encode(), keys.rsa_pem, domain.encode())
    return b"".join(arc) + with_ar


def test_arc_chain_pass(server: ServerThread, dns_zones: ZoneSet, dkim_keys: DkimKeys) -> None:
    domain = publish(dns_zones, dkim_keys, dmarc=None)
    send(server, f"x@{domain}", arc_sealed(domain, dkim_keys))
    assert "arc=pass" in auth_header(stored(server)[0])


def test_arc_chain_tampered_fails(
    server: ServerThread, dns_zones: ZoneSet, dkim_keys: DkimKeys
) -> None:
    domain = publish(dns_zones, dkim_keys, dmarc=None)
    sealed = arc_sealed(domain, dkim_keys).replace(b"Subject: hello", b"Subject: HELLO")
    send(server, f"x@{domain}", sealed)
    assert "arc=fail" in auth_header(stored(server)[0])


def test_no_arc_is_none(server: ServerThread, dns_zones: ZoneSet, dkim_keys: DkimKeys) -> None:
    domain = publish(dns_zones, dkim_keys, dmarc=None)
    send(server, f"x@{domain}", message(f"x@{domain}"))
    assert "arc=none" in auth_header(stored(server)[0])
