"""The admin API's route table: every resource module's routes, in one list, which app.py
serves (through ``admin_routes`` in call.py) and which also drives the OpenAPI document.

A new resource: its handlers and its ``Route`` list in a module of its own, added here.
"""

from __future__ import annotations

from tollway.admin.audit import AUDIT_ROUTES
from tollway.admin.call import Route
from tollway.admin.credentials import CREDENTIAL_ROUTES
from tollway.admin.deployments import DEPLOYMENT_ROUTES
from tollway.admin.keys import KEY_ROUTES
from tollway.admin.limits import LIMIT_ROUTES
from tollway.admin.logs import LOG_ROUTES
from tollway.admin.reports import REPORT_ROUTES
from tollway.admin.teams import TEAM_ROUTES
from tollway.admin.users import CALLER_ROUTES, USER_ROUTES
from tollway.admin.vault_key import VAULT_KEY_ROUTES

ROUTES: list[Route] = [
    *CALLER_ROUTES,
    *TEAM_ROUTES,
    *USER_ROUTES,
    *KEY_ROUTES,
    *CREDENTIAL_ROUTES,
    *AUDIT_ROUTES,
    *DEPLOYMENT_ROUTES,
    *LIMIT_ROUTES,
    *LOG_ROUTES,
    *REPORT_ROUTES,
    *VAULT_KEY_ROUTES,
]
