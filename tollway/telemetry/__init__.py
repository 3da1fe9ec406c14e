"""Observability: Prometheus metrics and the request log (tracing is not built yet; alerts
are in tollway/alerts)."""
