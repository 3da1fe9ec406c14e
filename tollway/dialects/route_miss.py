"""What a request no route answers gets: 404 for an unknown path, 405 for a known one.

aiohttp answers 405 itself only when no route matches, and the gateway's catch-alls (every
path, and everything under ``/v1/messages/``) match them all, so the catch-alls ask the
router which methods the path's own routes take. Only requests that missed pay for this.
"""

from __future__ import annotations

from aiohttp import hdrs, web

from tollway.core.errors import GatewayError, MethodNotAllowed, NotFound


async def route_miss(request: web.Request) -> GatewayError:
    """The error for ``request``, which reached a catch-all: 405 with ``Allow`` when other
    routes serve its path with other methods, else 404."""
    allowed = await allowed_methods(request)
    if allowed and request.method not in allowed:
        methods = ", ".join(sorted(allowed))
        return MethodNotAllowed(
            f"{request.method} is not allowed on {request.path} (allowed: {methods})",
            code="method_not_allowed",
            headers={hdrs.ALLOW: methods},
        )
    return NotFound(f"Invalid URL ({request.method} {request.path})", code="unknown_url")


async def allowed_methods(request: web.Request) -> frozenset[str]:
    """The methods the application's routes answer on ``request``'s path, catch-alls aside."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        _, methods = await resource.resolve(request)
        if hdrs.METH_ANY not in methods:  # a catch-all takes any path and any method
            allowed |= methods
    return frozenset(allowed)
