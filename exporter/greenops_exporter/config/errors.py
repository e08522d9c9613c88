"""Errors every command shares: a usage error exits 2, an interruption 128 + the signal's number."""


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key path."""


class UsageError(Exception):
    """A command-line value that cannot be used (the message says which and why)."""


class Interrupted(Exception):
    """A stop signal came before there was anything to keep or report: exit 128 + its
    number, as a shell reports a job that the signal ended."""

    def __init__(self, signum: int, name: str) -> None:
        super().__init__(f"interrupted by {name}")
        self.exit_code = 128 + signum
