"""mailwarden: an all-in-one mail server that protects its own sender reputation."""

__version__ = "0.1.0"
