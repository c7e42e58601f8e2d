"""Use-cases shared by the CLI, the web API and the protocol layers."""
