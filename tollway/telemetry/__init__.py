"""Observability: Prometheus metrics (the request log, tracing and alerts are not built yet)."""
