"""Rate limits (token buckets, concurrency caps) and currency budgets."""
