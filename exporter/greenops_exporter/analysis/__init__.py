"""Pure analysis: readings in, numbers out; no I/O, clocks injected."""
