"""What an upstream answered instead of its answer, as the gateway's error: an error status
with its body (JSON, an HTML page's words, a reason phrase), a redirect, a body that is not
JSON, a whole body answering a stream request.

The upstream's words are read with its credential masked (``masking.py``).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

import orjson
from yarl import URL

from tollway.core.errors import (
    UpstreamError,
    UpstreamErrorBody,
    UpstreamProtocolError,
    UpstreamStatusError,
)
from tollway.providers.http1 import Body, Response
from tollway.providers.masking import Secrets, scrub
from tollway.providers.retry_waits import reset_wait, retry_after

ErrorParser = Callable[[Any], UpstreamErrorBody]
"""Reads an upstream error body (parsed JSON, else its text)."""
_MAX_ERROR_BODY = 64 * 1024
BOM = b"\xef\xbb\xbf"
"""UTF-8's byte order mark: a stream or a JSON body may begin with it, and the SSE spec says
a reader ignores it there (JSON readers such as orjson refuse it)."""


async def status_error(
    response: Response,
    parse_error: ErrorParser,
    secret: Secrets,
    url: str | URL,
) -> Exception:
    """The error an answer of status 300 or more stands for (a redirect is never followed)."""
    if response.status < 400:
        # A redirect is never followed: the gateway would send the provider key to wherever
        # it points (an Authorization, x-api-key, api-key or x-goog-api-key header), and the
        # request body with it.
        return UpstreamProtocolError(
            f"upstream answered with a redirect ({response.status}), which is not followed",
            detail=f"{upstream_host(url)} answered {response.status}: a redirect, not followed",
        )
    raw = await error_body(response.content)
    # The reason phrase and the error type header are the upstream's words too.
    reason = response.reason or ""
    named_type = response.headers.get("x-amzn-errortype", "")
    if secret:
        raw = scrub(raw, secret)
        reason = scrub(reason.encode(), secret).decode()
        named_type = scrub(named_type.encode(), secret).decode()
    if raw.startswith(BOM):
        raw = raw[len(BOM) :]
    try:
        parsed: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = raw.decode("utf-8", "replace").strip()
        if _HTML_START.match(parsed):
            parsed = _page_words(parsed)
        parsed = parsed or reason
    body = parse_error(parsed)
    # AWS services name the error in a header (``ThrottlingException:http://...``), not the body.
    kind = body.kind or named_type.split(":", 1)[0] or None
    message = body.message or f"upstream answered {response.status}"
    if response.status >= 500 and body.message:
        # The gateway answers for a 5xx in its own words: say what the provider answered.
        # (Azure's gateway names an error by its status again: said once.)
        named = f"{response.status} {kind}" if kind and not kind.isdigit() else str(response.status)
        message = f"upstream answered {named}: {body.message}"
    return UpstreamStatusError(
        body.status or response.status,
        message,
        error_type=body.type,
        code=body.code,
        param=body.param,
        retry_after=retry_after(response.headers)
        or body.retry_after
        or (reset_wait(response.headers) if response.status == 429 else None),
        kind=kind,
        detail=f"{upstream_host(url)} answered {response.status}: {body.message or message}",
        details=body.details,
    )


def invalid_json(url: str | URL, payload: bytes, secret: Secrets) -> UpstreamProtocolError:
    """An answer that is not JSON: an HTML page (a captive portal, a proxy's page, an
    ``api_base`` pointing at a web site) is named by its words, as for a stream request, so
    the client and the operator can tell what answered; anything else as invalid JSON."""
    raw = payload[:_MAX_ERROR_BODY]
    if secret:
        raw = scrub(raw, secret)
    text = raw.decode("utf-8", "replace").strip()
    message = "upstream answered with invalid JSON"
    if _HTML_START.match(text):
        message = f"upstream answered with a page, not JSON: {_page_words(text)}"
    return UpstreamProtocolError(message, detail=f"{upstream_host(url)}: {message}")


_ERROR_FIELDS = ("error", "message", "Message", "__type")
_STATUS_FIELDS = ("status_code", "code", "status")


async def whole_body_error(
    content: Body, first: bytes, secret: Secrets, parse_error: ErrorParser
) -> UpstreamError:
    """A binary stream request answered by one whole body: an error object (a proxy's, a 200
    carrying ``{"error": ...}``) is that error, with the status it names (else 502), any other
    body a failed attempt naming what it said, as ``sse._whole_answer`` does for events."""
    raw = first + await error_body(content)
    if secret:
        raw = scrub(raw, secret)
    raw = raw.lstrip(BOM + b" \t\r\n")
    try:
        parsed: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, list) and len(parsed) == 1:
        parsed = parsed[0]
    if isinstance(parsed, dict) and any(parsed.get(field) for field in _ERROR_FIELDS):
        body = parse_error(parsed)
        message = f"upstream answered a stream request with an error: {body.message}"
        failure = UpstreamStatusError(
            body.status or _status_named(parsed) or 502,
            message,
            kind=body.kind,
            retry_after=body.retry_after,
            detail=message,
        )
        failure.retryable = True  # the upstream took the request: this attempt's failure
        return failure
    if parsed is not None:
        said = "a JSON body, not events"
    else:
        text = raw.decode("utf-8", "replace").strip()
        said = body_words(text)
    message = f"upstream answered a stream request with {said}"
    return UpstreamProtocolError(message, detail=message)


def _status_named(raw: dict[str, Any]) -> int | None:
    """The HTTP status an error object names (``{"error": {"code": 429}}``), if any."""
    nested = raw.get("error")
    for fields in (nested if isinstance(nested, dict) else {}, raw):
        for name in _STATUS_FIELDS:
            value = fields.get(name)
            if isinstance(value, str) and value.isdigit():
                value = int(value)
            if type(value) is int and 400 <= value <= 599:
                return value
    return None


_HTML_START = re.compile(r"<(?:!doctype\s+html|html|head|body|title|h1)\b", re.IGNORECASE)
_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)
_HTML_SKIPPED = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL)
_HTML_TAG = re.compile(r"<[^>]*>")
_MAX_PAGE_WORDS = 300


def _page_words(page: str) -> str:
    """An HTML error page's words: its title, else its text, without the markup.

    A proxy or load balancer in front of a self-hosted server (nginx, Cloudflare, an ingress)
    answers a 502 or a 413 with a page of its own; the client is told what it says
    (``502 Bad Gateway``), not sent the page's markup as the error's message."""
    title = _HTML_TITLE.search(page)
    text = title.group(1) if title else _HTML_TAG.sub(" ", _HTML_SKIPPED.sub(" ", page))
    words = " ".join(html.unescape(text).split())
    return words if len(words) <= _MAX_PAGE_WORDS else words[: _MAX_PAGE_WORDS - 3] + "..."


def body_words(text: str) -> str:
    """What a whole body said, for an error's message: an HTML page's words, else its start."""
    return _page_words(text) if _HTML_START.match(text) else text[:_MAX_PAGE_WORDS]


async def error_body(content: Body) -> bytes:
    """An error answer's body up to its end, or its first ``_MAX_ERROR_BODY`` bytes.

    ``read(n)`` gives what one network read brought, not ``n`` bytes: a body that comes in
    several (a chunked answer written in parts, a TLS record boundary, a proxy passing on
    what it has) was cut there, and its JSON lost with it (code, param, the wait a body asks
    for). The wait is under the call's first-byte limit: a body that stalls times out."""
    raw = b""
    while len(raw) < _MAX_ERROR_BODY:
        piece = await content.read(_MAX_ERROR_BODY - len(raw))
        if not piece:
            break
        raw += piece
    return raw


def upstream_host(url: str | URL) -> str:
    """Only ``url``'s scheme and authority, for the operator's detail: a path or query could
    carry a credential (some APIs take keys in the query string)."""
    scheme, _, rest = str(url).partition("://")
    return f"{scheme}://{rest.split('/', 1)[0].rsplit('@', 1)[-1]}"
