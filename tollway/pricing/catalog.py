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
        entries = []
        for provider, models in data["models"].items():
            # A family's tool fees apply to each of its rows; a row may name its own.
            family_fees = merged_fees((), fees.get(provider))
            for model, row in models.items():
                try:
                    price = price_from_row(row, f"catalog {version}", family_fees)
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


def price_from_row(
    row: Mapping[str, Any], source: str, tool_fees: Sequence[tuple[str, float]] = ()
) -> Price:
    """A ``Price`` from a catalog row or a deployment's ``price`` config (same fields); its
    ``tool_calls`` (USD per 1,000 calls by kind) over ``tool_fees``, the defaults."""
    own = row.get("tool_calls")
    for kind, fee in (own or {}).items():
        if _rate(fee) is None:
            raise ValueError(f"tool_calls.{kind} needs a price")
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
        tool_calls=merged_fees(tool_fees, {k: float(v) for k, v in (own or {}).items()}),
        tiers=tuple(sorted(tiers, key=lambda tier: tier.above_input_tokens)),
        context_window=row.get("context_window"),
        max_output=row.get("max_output"),
        source=source,
    )


def _rate(value: Any) -> float | None:
    if value is None:
        return None
    rate = float(value)
    if rate < 0:
        raise ValueError(f"a price cannot be negative ({rate})")
    return rate
