"""CORS for browser pages (``server.cors``): preflights and the headers of every answer.

Built only when ``server.cors`` is set, so a gateway without it does no CORS work at all.
Preflights (``OPTIONS``) are routes of their own on each path the gateway serves, answered
without authentication (a browser sends no credentials with them); the other answers get
their headers from one ``on_response_prepare`` handler, which also covers the error
answers and the SSE streams every dialect writes, in whatever shape. The admin API takes
only ``admin_allow_origins``; ``/metrics`` and ``/health/*`` take none.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from aiohttp import hdrs, web

from tollway.config.schema import CorsConfig

_EXPOSED_PREFIXES = ("x-tollway-", "x-ratelimit-")
_EXPOSED_NAMES = frozenset({"x-request-id", "retry-after", "retry-after-ms"})
_NO_CORS_PREFIXES = ("/metrics", "/health/")


class _Origins:
    """The origins one part of the gateway answers."""

    __slots__ = ("any", "listed")

    def __init__(self, origins: Sequence[str]) -> None:
        self.listed = frozenset(origins) - {"*"}
        self.any = "*" in origins

    def allow(self, origin: str) -> bool:
        """Whether a page of ``origin`` may read the answers."""
        return self.any or origin in self.listed


_NONE = _Origins(())


class Cors:
    """``server.cors`` applied: the preflight routes and the answers' CORS headers."""

    def __init__(self, config: CorsConfig) -> None:
        self._api = _Origins(config.allow_origins)
        self._admin = _Origins(config.admin_allow_origins)
        self._credentials = config.allow_credentials
        self._max_age = str(int(config.max_age))
        self._header_names = frozenset(h for h in config.allow_headers if not h.endswith("*"))
        self._header_prefixes = tuple(h[:-1] for h in config.allow_headers if h.endswith("*"))

    def install(self, app: web.Application) -> None:
        """Answer preflights on every path ``app``'s routes serve so far (catch-alls aside)
        and put CORS headers on its answers; call before the catch-all routes are added."""
        methods: dict[str, set[str]] = {}
        first: dict[str, web.Resource] = {}
        for resource in app.router.resources():
            taken = {route.method for route in resource}
            if not isinstance(resource, web.Resource) or hdrs.METH_ANY in taken:
                continue
            if self._origins(resource.canonical) is _NONE:
                continue
            methods.setdefault(resource.canonical, set()).update(taken)
            first.setdefault(resource.canonical, resource)
        for path, resource in first.items():
            allow = ", ".join(sorted(methods[path] | {hdrs.METH_OPTIONS}))
            resource.add_route(hdrs.METH_OPTIONS, self._preflight_handler(allow))
        app.on_response_prepare.append(self.on_response_prepare)

    def _origins(self, path: str) -> _Origins:
        if path.startswith("/admin"):
            return self._admin
        if path.startswith(_NO_CORS_PREFIXES):
            return _NONE
        return self._api

    def _preflight_handler(self, allow: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def preflight(request: web.Request) -> web.Response:
            """204 for any ``OPTIONS``; to a preflight of an allowed origin, with what the
            page may send (the origin itself is added by ``on_response_prepare``)."""
            headers = {hdrs.ALLOW: allow}
            origin = request.headers.get(hdrs.ORIGIN)
            asked = request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_METHOD)
            if (
                origin is not None
                and asked is not None
                and self._origins(request.path).allow(origin)
            ):
                headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = allow
                headers[hdrs.ACCESS_CONTROL_MAX_AGE] = self._max_age
                wanted = request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_HEADERS, "")
                granted = self._granted_headers(wanted)
                if granted:
                    headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = granted
            return web.Response(status=204, headers=headers)

        return preflight

    def _granted_headers(self, wanted: str) -> str:
        """Of the header names a preflight asks for, those allowed, as a header value: the
        names themselves, since a prefix (``x-stainless-*``) is no CORS syntax."""
        granted = []
        for raw in wanted.split(","):
            name = raw.strip().lower()
            if name and (name in self._header_names or name.startswith(self._header_prefixes)):
                granted.append(name)
        return ", ".join(granted)

    async def on_response_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        """An answer to a page of an allowed origin names that origin and exposes the
        gateway's own headers; every answer to a page says it depends on the origin."""
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is None:
            return
        headers = response.headers
        vary = headers.get(hdrs.VARY)
        if vary is None:
            headers[hdrs.VARY] = "Origin"
        elif "origin" not in vary.lower():
            headers[hdrs.VARY] = vary + ", Origin"
        if not self._origins(request.path).allow(origin):
            return
        headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
        if self._credentials:
            headers[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] = "true"
        exposed = [
            name
            for name in dict.fromkeys(name.lower() for name in headers)
            if name in _EXPOSED_NAMES or name.startswith(_EXPOSED_PREFIXES)
        ]
        if exposed:
            headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = ", ".join(exposed)
