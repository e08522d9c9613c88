"""The HTTP face: /metrics, health endpoints, the status page, TLS and basic auth."""
