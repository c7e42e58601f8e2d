"""The DNS records a domain must publish for mail to reach the inbox.

``records_for`` is pure; ``records_to_publish`` gathers its inputs. `mailwarden domain
dns` prints them; the auditor (later) checks them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mailwarden.auth.dkim import dkim_txt_record
from mailwarden.config.schema import Settings
from mailwarden.core.address import normalize_domain
from mailwarden.core.errors import NotFound
from mailwarden.delivery.transports import parse_table
from mailwarden.services.accounts import AccountService
from mailwarden.services.dkim_keys import DkimService
from mailwarden.store.records import DkimKeyRecord


@dataclass(frozen=True, slots=True)
class DnsRecord:
    name: str  # fully-qualified, without the trailing dot
    type: str
    value: str
    note: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type, "value": self.value}

    def zone_line(self) -> str:
        """The record as a zone-file line; long TXT values split into 255-octet strings."""
        value = self.value
        if self.type == "TXT":
            chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
            value = " ".join(
                '"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks
            )
        return f"{self.name}. 3600 IN {self.type} {value}"


def records_for(
    domain: str,
    *,
    hostname: str,
    keys: Sequence[DkimKeyRecord],
    sending_ips: Sequence[str] = (),
    relay_hosts: Sequence[str] = (),
) -> list[DnsRecord]:
    """MX, SPF, every published DKIM selector, DMARC with rua, and TLS-RPT."""
    spf = ["v=spf1", "mx"]
    spf += [f"ip6:{ip}" if ":" in ip else f"ip4:{ip}" for ip in sending_ips]
    spf += [f"a:{h}" for h in relay_hosts]  # a smarthost relays our mail: authorise it
    # RFC 7208 §5.1: "~all" while setting up; the auditor advises "-all" once DMARC is
    # enforced. Either ends the record, so unknown senders never pass.
    spf.append("~all")
    out = [
        # RFC 5321 §5.1: our host name is the mail exchanger.
        DnsRecord(domain, "MX", f"10 {hostname}.", "mail for the domain comes here"),
        DnsRecord(domain, "TXT", " ".join(spf), "SPF: who may send for the domain"),
    ]
    for key in keys:
        note = "DKIM (signing)" if key.state == "active" else "DKIM (rotated out; keep until "
        if key.state != "active" and key.retire_at is not None:
            note += key.retire_at.date().isoformat() + ")"
        out.append(
            DnsRecord(
                f"{key.selector}._domainkey.{domain}",
                "TXT",
                dkim_txt_record(key.private_key.encode()),
                note,
            )
        )
    # RFC 7489 §6.3: start at p=none with reports, then move to quarantine and reject.
    out.append(
        DnsRecord(
            f"_dmarc.{domain}",
            "TXT",
            f"v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}; adkim=r; aspf=r",
            "DMARC: start with p=none, move to quarantine then reject once reports are clean",
        )
    )
    # RFC 8460 §3: where receivers send TLS reports about mail to this domain.
    out.append(
        DnsRecord(
            f"_smtp._tls.{domain}",
            "TXT",
            f"v=TLSRPTv1; rua=mailto:tls-reports@{domain}",
            "TLS-RPT: reports about TLS problems delivering to us",
        )
    )
    return out


async def records_to_publish(
    settings: Settings, accounts: AccountService, dkim: DkimService, domain: str
) -> list[DnsRecord]:
    """Every record for a hosted ``domain``, from its keys and the delivery settings."""
    d = normalize_domain(domain)
    if not await accounts.is_local_domain(d):
        raise NotFound(f"domain {d} is not hosted here")
    return records_for(
        d,
        hostname=settings.hostname,
        keys=await dkim.published(d),
        sending_ips=settings.delivery.sending_ips,
        relay_hosts=[t.host for t in parse_table(settings.delivery.transports).values()],
    )
