"""What an IMAP session needs from the rest of the server, built once per listener."""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, field

from mailwarden.config.schema import ImapSettings
from mailwarden.services.accounts import AccountService
from mailwarden.services.authguard import AuthGuard
from mailwarden.services.folders import FolderService
from mailwarden.services.messages import MessageService
from mailwarden.services.notify import ChangeNotifier
from mailwarden.smtp.server import ConnectionGate


@dataclass
class ImapContext:
    settings: ImapSettings
    appendlimit: int  # RFC 7889 APPENDLIMIT: the largest message APPEND accepts
    tls: ssl.SSLContext | None
    accounts: AccountService
    guard: AuthGuard
    folders: FolderService
    messages: MessageService
    notifier: ChangeNotifier
    gate: ConnectionGate
    implicit_tls: bool = False
    plaintext_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(
        default_factory=list
    )

    def __post_init__(self) -> None:
        self.plaintext_networks = [
            ipaddress.ip_network(n, strict=False) for n in self.settings.plaintext_auth_networks
        ]

    def plaintext_allowed(self, ip: str) -> bool:
        """May this client log in without TLS (imap.plaintext_auth_networks)?"""
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.plaintext_networks)
