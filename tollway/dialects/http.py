"""What every dialect does at the HTTP edge: read a JSON body, name the request."""

from __future__ import annotations

import fnmatch
import re
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from aiohttp import web

from tollway.core.context import RequestContext
from tollway.core.errors import InvalidRequest, PayloadTooLarge

_MAX_REQUEST_ID = 128
# Never forwarded whatever the patterns say: client credentials and hop-by-hop headers.
_NEVER_FORWARDED = frozenset(
    {
        "authorization", "api-key", "x-api-key", "cookie", "proxy-authorization", "host",
        "content-length", "content-type", "transfer-encoding", "connection", "keep-alive",
        "upgrade", "te", "trailer", "accept-encoding",
    }
)  # fmt: skip


class HeaderForwarder:
    """Picks the client headers that may go on to the provider (``upstream.forward_headers``)."""

    def __init__(self, patterns: Iterable[str]) -> None:
        regexes = [fnmatch.translate(pattern.lower()) for pattern in patterns]
        self._pattern = re.compile("|".join(regexes)) if regexes else None

    def select(self, headers: Mapping[str, str]) -> dict[str, str]:
        """The forwardable subset of ``headers``."""
        if self._pattern is None:
            return {}
        match = self._pattern.match
        return {
            name: value
            for name, value in headers.items()
            if (lowered := name.lower()) not in _NEVER_FORWARDED and match(lowered)
        }


async def read_json_object(request: web.Request, max_size: int) -> dict[str, Any]:
    """The request body as a JSON object; 413 over ``max_size``, 400 when not a JSON object."""
    if request.content_length is not None and request.content_length > max_size:
        raise PayloadTooLarge(f"Request body is over the limit of {max_size} bytes.")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"Request body is over the limit of {max_size} bytes.") from None
    if not raw:
        raise InvalidRequest("Request body is empty; send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"Request body is not valid JSON: {exc.msg}.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object.")
    return body


def request_id(request: web.Request) -> str:
    """The client's ``x-request-id`` when it is sane, else a new one."""
    given = request.headers.get("x-request-id")
    if given and len(given) <= _MAX_REQUEST_ID and given.isprintable():
        return given
    return "req_" + secrets.token_hex(12)


def routing_headers(ctx: RequestContext) -> dict[str, str]:
    """Response headers naming the request and the deployment that served it."""
    headers = {"x-request-id": ctx.request_id}
    deployment = ctx.deployment
    if deployment is not None:
        headers["x-tollway-model"] = deployment.model
        headers["x-tollway-deployment"] = deployment.id
        headers["x-tollway-provider"] = deployment.provider
        headers["x-tollway-attempts"] = str(ctx.attempts)
    headers.update(ctx.response_headers)
    return headers
