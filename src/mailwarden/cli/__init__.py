"""The `mailwarden` command."""
