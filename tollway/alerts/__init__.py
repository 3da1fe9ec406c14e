"""Alerts delivered to webhooks: budget thresholds, spend-rate anomalies, error storms.

``manager.py`` ties it together (docs/alerts.md); ``window.py`` is the bucket arithmetic,
``spend.py`` and ``errors.py`` the two per-request sources, ``stage.py`` the pipeline stage
feeding them, ``alert.py`` the alert value, ``payloads.py`` the webhook formats and
``delivery.py`` the background posting with retries.
"""

from tollway.alerts.alert import Alert
from tollway.alerts.manager import AlertManager

__all__ = ["Alert", "AlertManager"]
