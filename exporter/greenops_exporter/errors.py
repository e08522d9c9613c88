"""Errors every command shares: a usage error exits 2 with its message, like a config error."""


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key path."""


class UsageError(Exception):
    """A command-line value that cannot be used (the message says which and why)."""
