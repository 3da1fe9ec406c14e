"""``tollway report``: usage and spend from the request log, grouped, as a table."""

from __future__ import annotations

from typing import Annotated

import typer

from tollway.admin.cli import JsonOption, KeyOption, UrlOption, call, show

_NUMBERS = [
    "requests", "errors", "input_tokens", "output_tokens", "cached_tokens",
    "cache_write_tokens", "cost_usd", "avg_latency_ms",
    "p95_latency_ms", "avg_ttft_ms", "cache_hit_rate", "guardrail_triggers",
]  # fmt: skip


def report(
    url: UrlOption,
    admin_key: KeyOption,
    by: Annotated[
        str,
        typer.Option(
            help="Comma-separated: team, user, key, service, model, served_model, provider, "
            "deployment, status, day"
        ),
    ] = "team,model",
    since: Annotated[
        str | None, typer.Option(help="ISO date or time (UTC unless given), or an age: 24h, 7d")
    ] = None,
    until: Annotated[str | None, typer.Option(help="ISO date or time or an age, exclusive")] = None,
    team: Annotated[str | None, typer.Option(help="Only this team id")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model name")] = None,
    service: Annotated[str | None, typer.Option(help="Only this service tag")] = None,
    user: Annotated[str | None, typer.Option(help="Only this user id")] = None,
    key: Annotated[str | None, typer.Option(help="Only this key id")] = None,
    provider: Annotated[str | None, typer.Option(help="Only this provider")] = None,
    as_json: JsonOption = False,
) -> None:
    """Requests, tokens, cost, latency, cache and guardrails, grouped (from the request log)."""
    params = {"group_by": by}
    # Every filter the API takes (store/reports.py FILTERS): without --key, the CLI could not
    # say what one key spent, which `tollway logs list --key` shows request by request.
    for name, value in (("since", since), ("until", until), ("team", team), ("model", model),
                        ("service", service), ("user", user), ("key", key),
                        ("provider", provider)):  # fmt: skip
        if value is not None:
            params[name] = value
    answer = call(url, admin_key, "GET", "/admin/reports/usage", params=params)
    groups = [name for name in by.split(",") if name]
    show(answer, [*groups, *_NUMBERS], as_json, f"usage by {', '.join(groups)}")
