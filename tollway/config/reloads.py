"""Config reloads as audit events: what asked for one, and what the gateway runs after it.

A reload changes what every request is routed to and what it may spend, so the audit trail
records each one as ``config.reload`` (or ``config.reload_refused`` when the file did not
load and the running config stayed): through the admin API with the admin as the actor, and
the reloads nobody asked for through the API (SIGHUP, the config file changing, another
replica's ``POST /admin/reload`` on a PostgreSQL store) with the actor ``system``. The
details say which replica, the trigger, and the config versions (``settings_version``
fingerprints) before and after; never the config itself, nor why a file was refused (the
log has that: a config error may quote a value).
"""

from __future__ import annotations

from typing import Literal

Trigger = Literal["admin_api", "sighup", "file_change", "replica"]
"""What asked for a reload: ``POST /admin/reload``, SIGHUP, the watched file changing, or
another replica's ``POST /admin/reload``."""

SYSTEM_ACTOR = "system"
"""The audit trail's actor for a reload no admin asked for through the API."""


def reload_event(
    trigger: Trigger, *, reloaded: bool, before: str, after: str, models: int, replica: str
) -> tuple[str, dict[str, object]]:
    """The audit action and details of one reload."""
    details: dict[str, object] = {"trigger": trigger, "replica": replica, "version": after}
    if reloaded:
        details.update(previous_version=before, models=models)
        return "config.reload", details
    return "config.reload_refused", details
