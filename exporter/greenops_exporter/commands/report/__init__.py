"""`report`: what each group's GPUs cost, used, wasted and emitted over a period, from the
exporter's counters in Prometheus (or Thanos, Mimir, VictoriaMetrics), and what to change.

client (HTTP API) -> promql (expressions) -> fetch (figures over the period) -> compute
(pure: groups, fleet, the reconciliation, recommendations) -> model -> a renderer."""
