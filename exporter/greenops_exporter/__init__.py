"""greenops-exporter: GPU energy and efficiency for Prometheus."""

__version__ = "0.1.0"
