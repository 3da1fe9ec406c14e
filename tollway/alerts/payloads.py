"""Webhook bodies: a generic JSON object, or a Slack-compatible message.

``json``: one flat object with every field of the alert and its time in ISO 8601 UTC.
``slack``: what a Slack incoming webhook (or anything that speaks its format: Mattermost,
Rocket.Chat, Discord's ``/slack`` endpoint) takes: ``text`` (the notification line) and
``blocks`` (a header line, the message, the values as fields, and a context line).
Slack's mrkdwn treats ``&``, ``<`` and ``>`` as markup, so they are escaped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import orjson

from tollway.alerts.alert import Alert

_TITLES = MappingProxyType(
    {"budget": "Budget threshold", "spend_rate": "Spend rate", "error_storm": "Error storm"}
)
_ICONS = MappingProxyType(
    {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:"}
)
_SLACK_FIELDS = 10


def iso_time(seconds: float) -> str:
    """Epoch seconds as ISO 8601 in UTC, to the millisecond."""
    moment = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_payload(alert: Alert) -> dict[str, Any]:
    """The generic JSON body."""
    return {
        "source": "tollway",
        "kind": alert.kind,
        "status": alert.status,
        "severity": alert.severity,
        "scope": alert.scope,
        "scope_id": alert.scope_id,
        "values": alert.values,
        "message": alert.message,
        "dedup_key": alert.dedup_key,
        "time": iso_time(alert.time),
    }


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(alert: Alert) -> dict[str, Any]:
    """A Slack incoming-webhook message."""
    icon = ":white_check_mark:" if alert.status == "resolved" else _ICONS[alert.severity]
    title = _TITLES[alert.kind] + (" resolved" if alert.status == "resolved" else "")
    message = _escape(alert.message)
    fields = [
        {"type": "mrkdwn", "text": f"*{_escape(name)}*\n{_escape(str(value))}"}
        for name, value in list(alert.values.items())[:_SLACK_FIELDS]
    ]
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"{icon} *{title}* ({alert.severity})\n{message}"},
        }
    ]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    context = (
        f"Tollway · {_escape(alert.scope)} `{_escape(alert.scope_id)}` · "
        f"{iso_time(alert.time)} · dedup `{_escape(alert.dedup_key)}`"
    )
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return {"text": f"{icon} Tollway {title.lower()}: {message}", "blocks": blocks}


FORMATS: Mapping[str, Callable[[Alert], dict[str, Any]]] = MappingProxyType(
    {"json": json_payload, "slack": slack_payload}
)


def render(alert: Alert, format_name: str) -> bytes:
    """The body to POST for ``alert`` in ``format_name`` (``json`` or ``slack``)."""
    return orjson.dumps(FORMATS[format_name](alert))
