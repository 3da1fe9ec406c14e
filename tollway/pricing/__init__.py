"""Prices and tokens: the price catalog, cost by each provider's rules, local token counts."""

from tollway.pricing.catalog import CatalogEntry, PriceCatalog
from tollway.pricing.cost import cost_usd, worst_case_usd

__all__ = ["CatalogEntry", "PriceCatalog", "cost_usd", "worst_case_usd"]
