"""What each command does, and the wiring from the config to the running parts; `cli/` only
parses arguments and dispatches."""
