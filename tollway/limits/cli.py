"""``tollway budgets``, ``tollway limits`` and ``tollway spend``: the admin API's budgets and
rate limits from the command line (``TOLLWAY_URL``, ``TOLLWAY_ADMIN_KEY``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tollway.admin.cli import (
    JsonOption,
    KeyOption,
    UrlOption,
    call,
    segment,
    show,
    show_record,
)

budgets_app = typer.Typer(no_args_is_help=True, help="Currency budgets of keys, users, teams.")
limits_app = typer.Typer(no_args_is_help=True, help="Rate limits: tokens, requests, concurrency.")

_BUDGET_COLUMNS = [
    "scope", "scope_id", "period", "limit_usd", "spent_usd", "reserved_usd", "remaining_usd",
    "used", "policy", "source",
]  # fmt: skip


@budgets_app.command("set")
def budgets_set(
    url: UrlOption,
    admin_key: KeyOption,
    scope: Annotated[str, typer.Argument(help="key, user, team or org")],
    scope_id: Annotated[str, typer.Argument(help="Key id, user id, team id, org name or *")],
    limit_usd: Annotated[float, typer.Argument(help="The limit in USD")],
    period: Annotated[str, typer.Option(help="day, week, month or total")] = "month",
    policy: Annotated[str, typer.Option(help="reject, or shrink max output to fit")] = "reject",
    soft_limit: Annotated[
        float | None, typer.Option(help="Share of the limit past which --downgrade applies")
    ] = None,
    downgrade: Annotated[list[str] | None, typer.Option(help="MODEL=CHEAPER, repeatable")] = None,
    as_json: JsonOption = False,
) -> None:
    """Set (create or replace) a budget."""
    pairs = [item.split("=", 1) for item in downgrade or []]
    if any(len(pair) != 2 for pair in pairs):
        raise typer.BadParameter("--downgrade takes MODEL=CHEAPER")
    body: dict[str, Any] = {
        "scope": scope, "scope_id": scope_id, "period": period, "limit_usd": limit_usd,
        "policy": policy, "soft_limit": soft_limit, "downgrade": dict(pairs),
    }  # fmt: skip
    row = call(url, admin_key, "PUT", "/admin/budgets", body)
    show_record(row, _BUDGET_COLUMNS, as_json, "budget set")


@budgets_app.command("list")
def budgets_list(
    url: UrlOption,
    admin_key: KeyOption,
    scope: Annotated[str | None, typer.Option(help="Only this scope")] = None,
    as_json: JsonOption = False,
) -> None:
    """Budgets with their spend in the current period."""
    params = {"scope": scope} if scope else None
    answer = call(url, admin_key, "GET", "/admin/budgets", params=params)
    show(answer, _BUDGET_COLUMNS, as_json, "budgets")


@budgets_app.command("delete")
def budgets_delete(
    url: UrlOption, admin_key: KeyOption, scope: str, scope_id: str, period: str
) -> None:
    """Remove a budget (its spend history stays)."""
    path = f"/admin/budgets/{segment(scope)}/{segment(scope_id)}/{segment(period)}"
    call(url, admin_key, "DELETE", path)
    typer.echo(f"budget {scope} {scope_id} {period} removed")


@limits_app.command("set")
def limits_set(
    url: UrlOption,
    admin_key: KeyOption,
    scope: Annotated[str, typer.Argument(help="key, user, team, model or deployment")],
    scope_id: str,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute")] = None,
    rpm: Annotated[int | None, typer.Option(help="Requests per minute")] = None,
    max_concurrent: Annotated[int | None, typer.Option(help="Requests in flight")] = None,
    as_json: JsonOption = False,
) -> None:
    """Set (create or replace) the rate limits of one scope."""
    body = {
        "scope": scope, "scope_id": scope_id, "tpm": tpm, "rpm": rpm,
        "max_concurrent": max_concurrent,
    }  # fmt: skip
    row = call(url, admin_key, "PUT", "/admin/limits", body)
    show_record(row, ["scope", "scope_id", "tpm", "rpm", "max_concurrent"], as_json, "limits set")


@limits_app.command("list")
def limits_list(url: UrlOption, admin_key: KeyOption, as_json: JsonOption = False) -> None:
    """Every rate limit, from config and store."""
    answer = call(url, admin_key, "GET", "/admin/limits")
    show(answer, ["scope", "scope_id", "tpm", "rpm", "max_concurrent", "source"], as_json, "limits")


@limits_app.command("delete")
def limits_delete(url: UrlOption, admin_key: KeyOption, scope: str, scope_id: str) -> None:
    """Remove the rate limits of one scope."""
    call(url, admin_key, "DELETE", f"/admin/limits/{segment(scope)}/{segment(scope_id)}")
    typer.echo(f"limits of {scope} {scope_id} removed")


def spend(url: UrlOption, admin_key: KeyOption, as_json: JsonOption = False) -> None:
    """Current spend against every budget you may see, fullest first."""
    answer = call(url, admin_key, "GET", "/admin/budgets")
    answer["data"].sort(key=lambda row: -(row["used"] or 0))
    show(answer, _BUDGET_COLUMNS, as_json, "spend this period")
