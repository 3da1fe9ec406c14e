"""Dialects: the HTTP edge where a client's API shape meets the canonical types."""
