"""Error bodies in each provider's wire shape, and the JSON response helpers around them.

OpenAI: ``{"error": {"message", "type", "param", "code"}}``. Azure OpenAI: the same for request
validation errors, and ``{"error": {"code": "<status>", "message"}}`` for the errors its gateway
produces (auth, throttling, unknown routes, outages). Anthropic:
``{"type": "error", "error": {"type", "message"}, "request_id"}``. Bedrock: ``{"message"}`` with
the exception's name in the ``x-amzn-errortype`` header. Gemini API and Vertex AI:
``{"error": {"code": <status>, "message", "status": "<gRPC code name>"}}``, with a
``google.rpc.RetryInfo`` in ``details`` when the client should wait.
"""

from __future__ import annotations

import enum
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web

from tollway.simulator import eventstream

JSON_CONTENT_TYPE = "application/json"


class Dialect(enum.Enum):
    """The wire format an endpoint speaks."""

    OPENAI = "openai"
    AZURE = "azure"
    MISTRAL = "mistral"
    ANTHROPIC = "anthropic"
    BEDROCK = "bedrock"
    GEMINI = "gemini"
    VERTEX = "vertex"


_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_OPENAI_TYPES = {
    401: "invalid_request_error",
    403: "permission_error",
    429: "requests",
}
_OPENAI_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}
_REASONS = {529: "Overloaded"}
_BEDROCK_TYPES = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
_GOOGLE_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    402: "RESOURCE_EXHAUSTED",  # the Gemini API's "your prepay credit balance is depleted"
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_BEDROCK_TYPE_SUFFIX = ":http://internal.amazon.com/coral/com.amazon.bedrock/"


def request_id_header(dialect: Dialect) -> str:
    """The response header the provider puts its request id in."""
    if dialect is Dialect.BEDROCK:
        return "x-amzn-RequestId"
    return "request-id" if dialect is Dialect.ANTHROPIC else "x-request-id"


def json_response(
    payload: Any, request_id: str, dialect: Dialect, status: int = 200
) -> web.Response:
    """A JSON response with the dialect's request-id header."""
    headers = {"Content-Type": JSON_CONTENT_TYPE, request_id_header(dialect): request_id}
    return web.Response(body=orjson.dumps(payload), status=status, headers=headers)


def reason(status: int) -> str:
    """The reason phrase of a status code, including non-standard ones like 529."""
    if status in _REASONS:
        return _REASONS[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def error_body(
    dialect: Dialect,
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    request_id: str = "",
) -> dict[str, Any]:
    """The error payload for ``status`` in ``dialect``'s shape."""
    if dialect is Dialect.BEDROCK:
        return {"message": message}
    if dialect in (Dialect.GEMINI, Dialect.VERTEX):
        default = "INTERNAL" if status >= 500 else "FAILED_PRECONDITION"
        name = code or _GOOGLE_STATUSES.get(status, default)
        return {"error": {"code": status, "message": message, "status": name}}
    if dialect is Dialect.ANTHROPIC:
        if status in _ANTHROPIC_TYPES:
            kind = _ANTHROPIC_TYPES[status]
        else:
            kind = "api_error" if status >= 500 else "invalid_request_error"
        return {
            "type": "error",
            "error": {"type": kind, "message": message},
            "request_id": request_id,
        }
    if dialect is Dialect.AZURE and status != 400:
        return {"error": {"code": code or str(status), "message": message}}
    default = "server_error" if status >= 500 else "invalid_request_error"
    kind = _OPENAI_TYPES.get(status, default)
    return {
        "error": {
            "message": message,
            "type": kind,
            "param": param,
            "code": code if code is not None else _OPENAI_CODES.get(status),
        }
    }


def google_error_response(
    dialect: Dialect, status: int, message: str, request_id: str, *, retry_delay: str
) -> web.Response:
    """A Google error asking the client to wait ``retry_delay`` (``"7s"``), as Google asks:
    a ``google.rpc.RetryInfo`` among the error's ``details``, and no ``retry-after`` header."""
    body = error_body(dialect, status, message, request_id=request_id)
    body["error"]["details"] = [{"@type": _RETRY_INFO, "retryDelay": retry_delay}]
    return json_response(body, request_id, dialect, status)


def error_response(
    dialect: Dialect,
    status: int,
    message: str,
    *,
    request_id: str,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An error response for ``status`` in ``dialect``'s shape."""
    body = error_body(dialect, status, message, param=param, code=code, request_id=request_id)
    response = json_response(body, request_id, dialect, status)
    if dialect is Dialect.BEDROCK:
        default = "InternalServerException" if status >= 500 else "ValidationException"
        kind = code or _BEDROCK_TYPES.get(status, default)
        response.headers["x-amzn-errortype"] = kind + _BEDROCK_TYPE_SUFFIX
    if headers:
        response.headers.update(headers)
    return response


def overload_status(dialect: Dialect) -> int:
    """The status an API answers an overload with: Anthropic's own 529, else 503."""
    return 529 if dialect is Dialect.ANTHROPIC else 503


def overload_event(dialect: Dialect, request_id: str, message: str | None = None) -> bytes:
    """The event a stream ends with when the provider is overloaded after it began, as each
    API sends it: Anthropic's ``event: error`` with ``overloaded_error``, an OpenAI-format or
    Google ``data:`` event holding only an ``error`` (OpenAI's in the words its overload
    events use, ``service_unavailable_error`` and ``server_is_overloaded``; Azure's with the
    status as its code), a Bedrock ``exception`` message.

    ``message`` replaces the overload's own words (the ``echo-after`` fault's).
    """
    status = overload_status(dialect)
    message = message or f"{reason(status)} (simulated fault)"
    if dialect is Dialect.BEDROCK:
        return eventstream.exception("serviceUnavailableException", message)
    payload = error_body(dialect, status, message, request_id=request_id)
    if dialect in (Dialect.OPENAI, Dialect.MISTRAL):
        payload["error"].update(type="service_unavailable_error", code="server_is_overloaded")
    body = orjson.dumps(payload)
    if dialect is Dialect.ANTHROPIC:
        return b"event: error\ndata: " + body + b"\n\n"
    return b"data: " + body + b"\n\n"
