"""The one exception tree. Protocol layers map these to wire replies in one place each."""

from __future__ import annotations


class MailwardenError(Exception):
    """Base of every error mailwarden raises on purpose."""


class ConfigError(MailwardenError):
    """A configuration problem; the message names the key."""


class InvalidAddress(MailwardenError, ValueError):
    pass


class NotFound(MailwardenError):
    pass


class AlreadyExists(MailwardenError):
    pass


class QuotaExceeded(MailwardenError):
    pass


class DnsError(MailwardenError):
    """A DNS lookup failed for a reason other than NXDOMAIN/NODATA (a temporary error)."""


class StorageError(MailwardenError):
    pass
