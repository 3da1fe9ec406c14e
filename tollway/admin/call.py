"""One admin API call (``AdminCall``), its route (``Route``), and how routes become aiohttp
routes that authenticate, authorise and answer in one error shape (``admin_routes``).

The handlers live in one module per resource; routes.py assembles their table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from tollway.auth.identity import Actor
from tollway.auth.principal import Principal
from tollway.core.errors import (
    AuthenticationFailed,
    GatewayError,
    InvalidRequest,
    NotFound,
)
from tollway.dialects.client_address import client_address
from tollway.dialects.http import log_internal_error, read_json_object, request_id
from tollway.dialects.openai import error_response
from tollway.store import (
    InvalidRecord,
    RecordConflict,
    RecordNotFound,
    VaultKeyError,
)

if TYPE_CHECKING:
    from tollway.gateway import Gateway

B = TypeVar("B", bound=BaseModel)

Handler = Callable[["AdminCall"], Awaitable[Any]]


class Conflict(GatewayError):
    """The change conflicts with what exists (a duplicate name, a revoked key...)."""

    status = 409
    openai_type = "invalid_request_error"


class VaultUnavailable(GatewayError):
    """The vault key (``TOLLWAY_VAULT_KEY``) is missing or wrong, so a credential cannot be
    stored or read until the operator sets it: the message says what to do."""

    status = 503
    openai_type = "server_error"
    anthropic_type = "api_error"


@dataclass(frozen=True, slots=True)
class AdminCall:
    """One admin request: the caller, its parameters, and the gateway."""

    request: web.Request
    actor: Actor
    gateway: Gateway

    @property
    def principal(self) -> Principal:
        """The caller."""
        return self.actor.principal

    def param(self, name: str) -> str:
        """A path parameter."""
        return self.request.match_info[name]

    def page_limit(self, maximum: int) -> int:
        """The ``limit`` query parameter of a paged list (default 100): 400 naming it unless
        it is a whole number from 1 to ``maximum``."""
        try:
            limit = int(self.request.query.get("limit", "100"))
        except ValueError:
            raise InvalidRequest("'limit' must be an integer", param="limit") from None
        if not 1 <= limit <= maximum:
            raise InvalidRequest(f"'limit' must be between 1 and {maximum}", param="limit")
        return limit

    async def body(self, model: type[B]) -> B:
        """The JSON body validated as ``model``; 400 naming the field otherwise."""
        raw = await read_json_object(self.request, self.gateway.max_body_size)
        where = nul_location(raw)
        if where is not None:
            raise _holds_nul(where)
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            field = ".".join(str(part) for part in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            raise InvalidRequest(f"'{field}': {message}", param=field) from None


@dataclass(frozen=True, slots=True)
class Query:
    """A query parameter an admin endpoint reads (for its OpenAPI document)."""

    name: str
    description: str


@dataclass(frozen=True, slots=True)
class Route:
    """One admin endpoint: method, path, handler, what it does, its body model (and whether
    it may be left out), the query parameters it reads."""

    method: str
    path: str
    handler: Handler
    summary: str
    body: type[BaseModel] | None = None
    status: int = 200
    query: tuple[Query, ...] = ()
    body_required: bool = True


def refuse_nul_parameters(request: web.Request) -> None:
    """400 naming the path or query parameter that holds a NUL character: no store keeps
    one (PostgreSQL's text refuses it even in a lookup), so it can name nothing stored."""
    for name, value in (*request.match_info.items(), *request.query.items()):
        if "\x00" in name or "\x00" in value:
            raise _holds_nul(name.replace("\x00", "\\u0000"))


def nul_location(value: Any, where: str = "") -> str | None:
    """Where in a parsed JSON value a text (a value or a key) holds a NUL character, as
    ``metadata.tags[0]`` (a key holding one: its mapping's location), or None."""
    if isinstance(value, str):
        return where if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                return where or "(body)"
            found = nul_location(item, f"{where}.{key}" if where else key)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = nul_location(item, f"{where}[{index}]")
            if found is not None:
                return found
    return None


def _holds_nul(where: str) -> InvalidRequest:
    return InvalidRequest(
        f"'{where}' holds a NUL character (\\u0000), which the store cannot keep", param=where
    )


def admin_routes(gateway: Gateway, routes: list[Route]) -> list[web.RouteDef]:
    """aiohttp routes that authenticate, authorise and answer in one error shape."""

    def wrap(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            rid = request_id(request)
            headers = {"x-request-id": rid}
            principal: Principal | None = None
            source = client_address(request, gateway.proxies)
            try:
                principal = await gateway.authenticator.authenticate(request.headers, source)
                if principal.kind == "anonymous":
                    # Not authenticated (401), whatever anonymous callers may do elsewhere.
                    raise AuthenticationFailed(
                        "The admin API needs a key or a token: send 'Authorization: Bearer <key>'.",
                        code="missing_api_key",
                    )
                actor = Actor(principal, source, rid)
                refuse_nul_parameters(request)
                result = await route.handler(AdminCall(request, actor, gateway))
            except GatewayError as exc:
                if exc.status in (401, 403):  # who tried without the right to: denials.py
                    gateway.admin_denials.denied(request, source, route.path, rid, exc, principal)
                return error_response(exc, headers)
            except RecordNotFound as exc:
                return error_response(NotFound(str(exc), code="not_found"), headers)
            except RecordConflict as exc:
                return error_response(Conflict(str(exc), code="conflict"), headers)
            except InvalidRecord as exc:
                return error_response(InvalidRequest(str(exc), param=exc.param), headers)
            except VaultKeyError as exc:  # names the variable, never a key
                return error_response(VaultUnavailable(str(exc), code="vault_unavailable"), headers)
            except Exception as exc:
                down = await gateway.outage(exc)
                return error_response(down or log_internal_error(rid, exc), headers)
            if result is None:
                return web.Response(status=204, headers=headers)
            if isinstance(result, web.StreamResponse):  # streamed by the handler itself
                return result
            return web.Response(
                status=route.status,
                body=orjson.dumps(result),
                content_type="application/json",
                headers=headers,
            )

        return handle

    return [web.route(r.method, r.path, wrap(r)) for r in routes]
