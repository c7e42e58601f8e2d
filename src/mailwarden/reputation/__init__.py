"""Sender reputation: what comes back about the mail we send."""
