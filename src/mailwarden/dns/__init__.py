"""DNS: the Resolver protocol every layer uses, and its dnspython implementation."""

from mailwarden.dns.resolver import Answer, DnsPythonResolver, Resolver, StaticResolver

__all__ = ["Answer", "DnsPythonResolver", "Resolver", "StaticResolver"]
