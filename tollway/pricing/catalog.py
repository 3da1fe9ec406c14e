"""The price catalog: the versioned data file shipped in the package (``catalog.yaml``).

A deployment's price is its config ``price`` if it has one, else the catalog's row for its
provider family and upstream model (exact name first, then the first glob that matches),
else the ``any`` section (the simulated provider's made-up prices), else none: an unpriced
deployment costs nothing and is logged once at start-up.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from tollway.core.types import Price, PriceTier
from tollway.pricing.tools import merged_fees

_ANY = "any"


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One row of the catalog: a provider family, a model name or glob, its price."""

    provider: str
    model: str
    price: Price


class PriceCatalog:
    """The catalog in memory: lookups by provider family and upstream model."""

    def __init__(self, version: str, entries: Sequence[CatalogEntry], aliases: Mapping[str, str]):
        self.version = version
        self._entries = tuple(entries)
        self._aliases = dict(aliases)
        self._exact = {(e.provider, e.model): e.price for e in entries if "*" not in e.model}
        self._globs = [e for e in entries if "*" in e.model]

    @classmethod
    def load(cls) -> PriceCatalog:
        """The catalog shipped in the package."""
        text = resources.files("tollway.pricing").joinpath("catalog.yaml").read_text("utf-8")
        return cls.parse(yaml.safe_load(text))

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> PriceCatalog:
        """A catalog from its parsed YAML; raises ``ValueError`` naming a bad row."""
        version = str(data["version"])
        fees = data.get("tool_calls") or {}
        request_fees = data.get("tool_requests") or {}
        entries = []
        for provider, models in data["models"].items():
            # A family's tool fees apply to each of its rows; a row may name its own.
            family = ToolFees(
                merged_fees((), fees.get(provider)), merged_fees((), request_fees.get(provider))
            )
            for model, row in models.items():
                try:
                    price = price_from_row(row, f"catalog {version}", family)
                except (KeyError, TypeError, ValueError) as exc:
                    raise ValueError(f"catalog row {provider}/{model} is invalid: {exc}") from None
                entries.append(CatalogEntry(provider, model, price))
        return cls(version, entries, data.get("aliases") or {})

    def entries(self) -> Sequence[CatalogEntry]:
        """Every row, in file order."""
        return self._entries

    def lookup(self, provider: str, model: str) -> Price | None:
        """The price of ``model`` served by the ``provider`` family, if the catalog has one."""
        family = self._aliases.get(provider, provider)
        for section in (family, _ANY):
            price = self._exact.get((section, model))
            if price is not None:
                return price
            for entry in self._globs:
                if entry.provider == section and fnmatch.fnmatchcase(model, entry.model):
                    return entry.price
        return None


@dataclass(frozen=True, slots=True)
class ToolFees:
    """Server-side tool fees by kind, USD per 1,000: per call, and per request that called
    the kind (``Price.tool_calls``, ``Price.tool_requests``)."""

    calls: tuple[tuple[str, float], ...] = ()
    requests: tuple[tuple[str, float], ...] = ()


def price_from_row(row: Mapping[str, Any], source: str, tool_fees: ToolFees = ToolFees()) -> Price:
    """A ``Price`` from a catalog row or a deployment's ``price`` config (same fields); its
    ``tool_calls`` and ``tool_requests`` (USD per 1,000, by kind) over ``tool_fees``, the
    defaults."""
    own = _fees(row, "tool_calls")
    own_requests = _fees(row, "tool_requests")
    tiers = tuple(
        PriceTier(
            above_input_tokens=int(tier["above_input_tokens"]),
            input=float(tier["input"]),
            output=float(tier["output"]),
            cached_input=_rate(tier.get("cached_input")),
            cache_write=_rate(tier.get("cache_write")),
            cache_write_1h=_rate(tier.get("cache_write_1h")),
        )
        for tier in row.get("tiers") or ()
    )
    return Price(
        input=float(row["input"]),
        output=float(row["output"]),
        cached_input=_rate(row.get("cached_input")),
        cache_write=_rate(row.get("cache_write")),
        cache_write_1h=_rate(row.get("cache_write_1h")),
        reasoning=_rate(row.get("reasoning")),
        per_image=_rate(row.get("per_image")),
        per_request=_rate(row.get("per_request")),
        tool_calls=merged_fees(tool_fees.calls, own),
        tool_requests=merged_fees(tool_fees.requests, own_requests),
        tiers=tuple(sorted(tiers, key=lambda tier: tier.above_input_tokens)),
        context_window=row.get("context_window"),
        max_output=row.get("max_output"),
        source=source,
    )


def _fees(row: Mapping[str, Any], field: str) -> dict[str, float] | None:
    own = row.get(field)
    if own is None:
        return None
    fees = {}
    for kind, fee in own.items():
        rate = _rate(fee)
        if rate is None:
            raise ValueError(f"{field}.{kind} needs a price")
        fees[kind] = rate
    return fees


def _rate(value: Any) -> float | None:
    if value is None:
        return None
    rate = float(value)
    if rate < 0:
        raise ValueError(f"a price cannot be negative ({rate})")
    return rate
