"""Observability: Prometheus metrics (the request log and tracing are not built yet; alerts
are in tollway/alerts)."""
