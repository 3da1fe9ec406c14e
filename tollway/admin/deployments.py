"""Admin view of routing: every deployment's health, and a config reload.

Viewers and above may read; only admins reload, and only admins see the last error's
detail (the upstream's address, the exception, the provider's own words, which may quote
what the gateway sent): others see its name and time. No credential (key, token, reference)
is ever part of an answer: a deployment shows its id, group, provider, model and health.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from tollway.admin.access import require_role
from tollway.admin.call import AdminCall, Route
from tollway.core.errors import InvalidRequest


async def list_deployments(call: AdminCall) -> dict[str, Any]:
    require_role(call.principal, "viewer")
    now = time.monotonic()
    operator = call.principal.has_role("admin")
    rows = []
    for group, deployment, health in call.gateway.pipeline.router.deployments():
        resting = max(health.resting_until - now, 0.0)
        reopens = max(health.open_until - now, 0.0) if health.state == "open" else 0.0
        row = {
            "id": deployment.id,
            "group": group.name,
            "strategy": group.strategy,
            "provider": deployment.provider,
            "model": deployment.model,
            "weight": deployment.weight,
            "context_window": deployment.context_window,
            "circuit": health.state,
            "probe_in_flight": health.probing,
            "circuit_retry_in_s": round(reopens, 3),
            "rate_limited_for_s": round(resting, 3),
            "in_flight": health.in_flight,
            "requests": health.requests,
            "failures": health.failures,
            "consecutive_failures": health.consecutive_failures,
            "error_rate": round(health.error_rate, 4),
            "ewma_latency_ms": _ms(health.ewma_latency),
            "ewma_ttft_ms": _ms(health.ewma_ttft),
            "ewma_complete_ms": _ms(health.ewma_complete),
            "last_error": health.last_error,
            "last_error_at": _iso(health.last_error_at),
        }
        if operator:
            row["last_error_detail"] = health.last_error_detail
        rows.append(row)
    gateway = call.gateway
    # Health is this process's own: another replica behind the same load balancer keeps its
    # own circuits and averages, so the answer says whose they are.
    replica = {
        "id": gateway.fleet.replica,
        "config_version": gateway.config_version,
        "started_at": gateway.started_at,
    }
    return {"replica": replica, "data": rows}


async def reload_config(call: AdminCall) -> dict[str, Any]:
    require_role(call.principal, "admin")
    gateway = call.gateway
    before = gateway.config_version
    reloaded = gateway.reload()
    event = gateway.reload_event("admin_api", before, reloaded)
    await gateway.identity.audit(
        call.actor, event.action, event.target_type, event.target_id, event.details
    )
    if not reloaded:
        raise InvalidRequest(
            "The config was not reloaded (no config file, or it is invalid: see the log); "
            "the running model groups stay.",
            code="reload_refused",
        )
    # Behind a load balancer this reached one replica: the others reload their own files.
    await gateway.fleet.announce("config", gateway.config_version)
    return {
        "reloaded": True,
        "models": len(gateway.settings.models),
        "replica": gateway.fleet.replica,
        "config_version": gateway.config_version,
    }


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


DEPLOYMENT_ROUTES = [
    Route("GET", "/admin/deployments", list_deployments, "Every deployment's routing health"),
    Route("POST", "/admin/reload", reload_config, "Reload model groups from the config file"),
]
