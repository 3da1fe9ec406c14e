"""``tollway prices``: the price catalog as a table (or JSON)."""

from __future__ import annotations

import fnmatch
import json
from typing import Annotated

import typer
from rich.table import Table

from tollway.admin.cli import table_console
from tollway.core.types import Price
from tollway.pricing.catalog import PriceCatalog

prices_app = typer.Typer(add_completion=False)


@prices_app.command("prices")
def prices(
    provider: Annotated[str | None, typer.Option(help="Only this provider family")] = None,
    model: Annotated[str | None, typer.Option(help="Only models matching this glob")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table")] = False,
) -> None:
    """List the price catalog shipped with this version (USD per 1M tokens)."""
    catalog = PriceCatalog.load()
    rows = [
        entry
        for entry in catalog.entries()
        if (provider is None or entry.provider == provider)
        and (model is None or fnmatch.fnmatchcase(entry.model, model))
    ]
    if as_json:
        payload = {
            "version": catalog.version,
            "prices": [
                {"provider": e.provider, "model": e.model, **_fields(e.price)} for e in rows
            ],
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    table = Table(title=f"Tollway price catalog {catalog.version} (USD per 1M tokens)")
    for header in ("provider", "model", "input", "cached in", "cache write", "output", "context",
                   "max out", "long context"):  # fmt: skip
        if header in ("provider", "model"):
            table.add_column(header, no_wrap=True)
        else:
            table.add_column(header, justify="right")
    for entry in rows:
        price = entry.price
        table.add_row(
            entry.provider,
            entry.model,
            _money(price.input),
            _money(price.cached_input),
            _money(price.cache_write),
            _money(price.output),
            _count(price.context_window),
            _count(price.max_output),
            ", ".join(
                f">{_count(t.above_input_tokens)}: {_money(t.input)} / {_money(t.output)}"
                for t in price.tiers
            ),
        )
    if not rows:
        typer.echo("No catalog entry matches.", err=True)
        raise typer.Exit(1)
    table_console().print(table)


def _fields(price: Price) -> dict[str, object]:
    fields = {
        "input": price.input,
        "output": price.output,
        "cached_input": price.cached_input,
        "cache_write": price.cache_write,
        "cache_write_1h": price.cache_write_1h,
        "reasoning": price.reasoning,
        "per_image": price.per_image,
        "per_request": price.per_request,
        "tool_calls": dict(price.tool_calls) or None,
        "tool_requests": dict(price.tool_requests) or None,
        "context_window": price.context_window,
        "max_output": price.max_output,
        "tiers": [
            {
                "above_input_tokens": t.above_input_tokens,
                "input": t.input,
                "output": t.output,
                "cached_input": t.cached_input,
                "cache_write": t.cache_write,
                "cache_write_1h": t.cache_write_1h,
            }
            for t in price.tiers
        ],
    }
    return {key: value for key, value in fields.items() if value not in (None, [])}


def _money(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _count(value: int | None) -> str:
    return "" if value is None else f"{value:,}"
