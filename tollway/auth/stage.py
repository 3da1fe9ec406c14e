"""The pipeline stage that keeps principals to the models they may use."""

from __future__ import annotations

from collections.abc import Awaitable

from tollway.auth.principal import Principal
from tollway.core.context import RequestContext
from tollway.core.errors import PermissionDenied
from tollway.core.pipeline import Reply, Stage


class ModelAccess(Stage):
    """403 when the caller's key (or anonymous access) does not cover the model asked for."""

    name = "model-access"
    writes_requests = False

    def on_request(self, ctx: RequestContext) -> Awaitable[Reply | None] | None:
        """Refuse a model outside the principal's allowed models."""
        principal = ctx.principal
        if principal is not None and not principal.may_use(ctx.model):
            raise _refusal(principal, ctx.model)
        return None


def check_model_access(ctx: RequestContext) -> None:
    """``ModelAccess``'s 403, for a route that runs no stages (``count_tokens``)."""
    principal = ctx.principal
    if principal is not None and not principal.may_use(ctx.model):
        raise _refusal(principal, ctx.model)


def _refusal(principal: Principal, model: str) -> PermissionDenied:
    who = "Anonymous callers" if principal.kind == "anonymous" else "This key"
    return PermissionDenied(
        f"{who} may not use the model '{model}'.", code="model_not_allowed", param="model"
    )
