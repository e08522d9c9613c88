"""Commands: serve (default), check, analyze, record, measure and the carbon commands."""

from greenops_exporter.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
