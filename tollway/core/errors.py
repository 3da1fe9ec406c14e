"""The gateway's one exception tree; each dialect renders it in its own error shape.

    GatewayError                      status, message, and how each dialect names it
    ├── InvalidRequest                400  malformed JSON, bad fields, untranslatable feature
    │   └── ThreadUnsupported         400  Anthropic's ``thread`` (server-held conversation)
    │                                      for a deployment that holds none
    ├── AuthenticationFailed          401
    ├── PermissionDenied              403
    ├── NotFound                      404  unknown model or route
    ├── MethodNotAllowed              405  a known route asked with another method (``Allow``)
    ├── PayloadTooLarge               413
    ├── RateLimited                   429  over a rate limit or a budget (``code`` says which)
    ├── ClientDisconnected            499  the client left before its answer was complete
    ├── RequestCancelled              503  cut before its end by the gateway shutting down
    │                                      (recorded, never sent)
    ├── LimiterDown                   503  the shared limiter (Redis) is unreachable
    ├── StoreUnavailable              503  the store (PostgreSQL) is unreachable: the admin
    │                                      API, a key not in memory that must be looked up;
    │                                      or too busy with other writes (``store_busy``)
    └── UpstreamError                      the provider could not give an answer
        ├── UpstreamStatusError       4xx passed through as is, but 401 / 403 (the provider
        │                             refused the gateway's own key) become 502; an overload
        │                             (503, Anthropic's 529) 503, sent to Anthropic clients as
        │                             Anthropic sends it (529 overloaded_error); other 5xx 502
        ├── UpstreamTimeout           504  connect, first byte or total timeout
        │   └── DeadlineExceeded      504  the model group's deadline passed (no further try)
        ├── UpstreamUnavailable       502  connection refused, reset, DNS
        ├── UpstreamProtocolError     502  unparseable answer, stream cut before its terminal event
        └── InvalidModelOutput        502  the provider ended the answer as unusable (Gemini's
                                           MALFORMED_FUNCTION_CALL, Bedrock's malformed_tool_use)

``retryable`` tells the router whether another candidate deployment may still succeed.

An upstream's URL or host never reaches a client: it is an internal address. An
``UpstreamError``'s ``message`` says what failed in words and, once the pipeline knows which
deployment failed, names it (``blame``); ``detail`` keeps the operator's side (the host, the
exception) for the log and ``/admin/deployments``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from tollway.auth.principal import Principal
    from tollway.core.types import Usage


class GatewayError(Exception):
    """Base of every error the gateway answers a client with."""

    status: int = 500
    anthropic_status: int | None = None
    """The status Anthropic-dialect clients get when it is not ``status``: Anthropic's API
    answers an overload with 529, a status no other API uses."""
    openai_type: str = "server_error"
    anthropic_type: str = "api_error"
    retryable: bool = False
    details: Mapping[str, Any] | None = None
    """Fields an OpenAI-format upstream's error object adds to OpenAI's four that OpenAI
    clients read (Azure's ``innererror``: what its content filters caught), sent on to them
    beside the four when the error passes through (a 4xx)."""
    anthropic_details: Mapping[str, Any] | None = None
    """Anthropic's ``error.details`` for this error (its ``error_code``), which Anthropic's
    SDKs read to pick the exception class and to recover (a tool runner drops ``thread``)."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}


class InvalidRequest(GatewayError):
    """The client's request cannot be served as sent."""

    status = 400
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"


class ThreadUnsupported(InvalidRequest):
    """An Anthropic client asked a deployment whose provider holds no conversation to hold
    one (``thread``): said as Anthropic says it, so the SDK sends the whole conversation."""

    anthropic_details = MappingProxyType({"error_code": "thread_unsupported_request"})


class AuthenticationFailed(GatewayError):
    """No usable credential was presented."""

    status = 401
    openai_type = "authentication_error"
    anthropic_type = "authentication_error"

    def __init__(
        self, message: str, *, code: str | None = None, principal: Principal | None = None
    ) -> None:
        """``principal``: whom the credential names when it is known but not usable (a
        revoked, blocked or expired key, a blocked user), for the request log; never sent."""
        super().__init__(message, code=code)
        self.principal = principal


class PermissionDenied(GatewayError):
    """The caller is known but may not do this."""

    status = 403
    openai_type = "permission_error"
    anthropic_type = "permission_error"


class NotFound(GatewayError):
    """An unknown model or route."""

    status = 404
    openai_type = "invalid_request_error"
    anthropic_type = "not_found_error"


class MethodNotAllowed(GatewayError):
    """A known route asked with a method it does not answer; ``Allow`` lists those it does."""

    status = 405
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"


class PayloadTooLarge(GatewayError):
    """The request body is over the configured limit."""

    status = 413
    openai_type = "invalid_request_error"
    anthropic_type = "request_too_large"


class RateLimited(GatewayError):
    """Over a rate limit or budget; ``code`` distinguishes them."""

    status = 429
    openai_type = "rate_limit_error"
    anthropic_type = "rate_limit_error"


class DeploymentBusy(RateLimited):
    """A deployment's own limit is reached; the router moves on to the next candidate."""

    retryable = True


class ClientDisconnected(GatewayError):
    """The client went away before its answer was complete (mid-stream, or while the gateway
    waited for the upstream, which is then given up): how the request ended, for metrics, the
    request log and traces (nginx's 499), not a failure of the gateway or a provider."""

    status = 499
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    prompt_sent = False
    """The upstream call it cut had sent its request whole: the provider read (and bills) the
    prompt. Not when it was cut while connecting, nor outside an upstream call."""


class RequestCancelled(GatewayError):
    """The request was cancelled before it ended (the server stopping: a request still
    running when ``server.shutdown_timeout`` is over): how it ended, for metrics, the request
    log and traces; the client gets a cut answer, never this."""

    status = 503


class LimiterDown(GatewayError):
    """The shared limiter (Redis) cannot be reached and ``limits.fail_open`` is off."""

    status = 503
    openai_type = "server_error"
    anthropic_type = "overloaded_error"


class StoreUnavailable(GatewayError):
    """The store cannot be reached: what needs it (the admin API, looking up a key this
    replica does not hold yet) cannot be answered now; requests with known keys still run."""

    status = 503
    openai_type = "server_error"
    anthropic_type = "overloaded_error"

    def __init__(self, message: str, *, code: str = "store_unavailable") -> None:
        """``code``: ``store_unavailable``, or ``store_busy`` when it answers but other
        writes kept this one waiting past the busy timeout."""
        super().__init__(message, code=code, headers={"retry-after": "1"})


class UpstreamError(GatewayError):
    """The upstream provider failed to answer."""

    status = 502
    openai_type = "upstream_error"
    anthropic_type = "api_error"
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message, code=code, param=param, headers=headers)
        self.detail = detail
        """For the operator only (log, admin view): may name the upstream's host."""
        self.deployment_id: str | None = None
        self.spent: Usage | None = None
        """What the failed attempt used all the same (the batches of a split embeddings
        request answered before another failed, the tool calls a stream's head reported done
        before it failed), which the provider bills."""

    def blame(self, deployment_id: str, group: str, api_base: str) -> None:
        """Name the deployment that failed in the client's message (once), and mask its
        address wherever the upstream's own words (an error body, a proxy's page, a stream's
        error event) named it.

        Only a failure the gateway answers for (5xx) names the deployment; a provider's own
        4xx passes on in the provider's words.
        """
        if self.deployment_id is not None:
            return
        self.deployment_id = deployment_id
        message = without_address(self.message, api_base)
        if self.status >= 500:
            message = f"deployment {deployment_id!r} (model group {group!r}): {message}"
        self.message = message


class UpstreamErrorBody(NamedTuple):
    """What a provider's error body says (a provider's error parser reads it).

    ``type``, ``code`` and ``param`` are OpenAI's vocabulary, which OpenAI-dialect clients are
    sent: only an OpenAI-format upstream gives them. ``kind`` is the provider's own name for
    the error (Anthropic's ``overloaded_error``, Gemini's ``RESOURCE_EXHAUSTED``, Bedrock's
    ``ThrottlingException``), for operators and the gateway's own decisions.
    ``retry_after`` is a wait the body asks for (Google's ``RetryInfo``), as the delta-seconds
    of a ``retry-after`` header, for providers that say it there rather than in the header.
    """

    message: str
    type: str | None = None
    code: str | None = None
    param: str | None = None
    kind: str | None = None
    retry_after: str | None = None
    details: Mapping[str, Any] | None = None
    """The error object's fields beside OpenAI's four that OpenAI clients read
    (``GatewayError.details``)."""
    status: int | None = None
    """The status the error stands for, when the provider answers it with another: the
    Gemini API refuses the gateway's own key with a 400 (``API_KEY_INVALID``), which is a 401
    (the deployment's credential), not the client's malformed request."""


class UpstreamStatusError(UpstreamError):
    """The provider answered with an error status; 4xx keep their status, 5xx become 502,
    and so do 401 and 403: the provider refused the gateway's credential, not the client's,
    and 402: the deployment's account cannot pay (a depleted prepay balance, billing not set
    up), which another deployment may still serve,
    and 424 (Failed Dependency: Bedrock's ``ModelErrorException`` and
    ``ModelStreamErrorException``, the model failing behind the API), a failed attempt another
    deployment may still serve, not a fault of the client's request.

    An overload (503 from any provider: OpenAI's "server is overloaded", Gemini's
    ``UNAVAILABLE``, Bedrock's ``ServiceUnavailableException``; Anthropic's 529
    ``overloaded_error``) is not the gateway's failure but the provider's "try again later":
    OpenAI-dialect clients get 503 as OpenAI sends it (``service_unavailable_error``,
    ``server_is_overloaded``), Anthropic-dialect clients 529 ``overloaded_error``, as Anthropic
    sends it, so code written against either SDK's overload error works through the gateway.

    ``code`` is what OpenAI-dialect clients read: an OpenAI-format upstream's own, else one
    of OpenAI's codes the status means (``rate_limit_exceeded``) or none; ``kind`` is the
    provider's own name for the error, never sent as an OpenAI code. ``own_type``: an
    OpenAI-format upstream's ``error_type`` reaches OpenAI-dialect clients whatever the status
    (an error event that ends a stream, passed on in the stream it ends), where otherwise a
    5xx is the gateway's own ``upstream_error`` or ``service_unavailable_error``.
    """

    def __init__(
        self,
        upstream_status: int,
        message: str,
        *,
        error_type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        retry_after: str | None = None,
        kind: str | None = None,
        detail: str | None = None,
        own_type: bool = False,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        headers = wait_headers(retry_after) if retry_after else None
        refusal = _CREDENTIAL_REFUSALS.get(upstream_status)
        if refusal is not None:
            # The provider refused the gateway's own key for this deployment: the client's key
            # was accepted, so this is the gateway's failure (a 502), never in words that read
            # as the client's key being wrong. The provider's own words are the operator's.
            detail = detail or f"upstream answered {upstream_status}: {message}"
            code, message = refusal
            error_type = param = None
        code = code or _OPENAI_CODES.get(upstream_status)
        super().__init__(message, code=code, param=param, headers=headers, detail=detail)
        self.upstream_status = upstream_status
        self.retry_after = retry_after
        self.kind = kind
        # A request the provider refuses as malformed fails on every candidate alike; an
        # auth or not-found answer is about this deployment (its key, its model), so another
        # candidate may still serve, like a timeout, a conflict, a rate limit or a 5xx.
        self.retryable = upstream_status not in _CALLER_FAULTS and not (
            400 <= upstream_status < 500 and upstream_status not in _DEPLOYMENT_FAULTS
        )
        passed = upstream_status < 500 and upstream_status not in _DEPENDENCY_FAILURES
        self.status = upstream_status if passed and refusal is None else 502
        if upstream_status in _OVERLOADS:
            self.status, self.anthropic_status = 503, 529
            self.openai_type, self.anthropic_type = "service_unavailable_error", "overloaded_error"
        elif self.status < 500:
            # Passed through: keep the provider's own error type where it gave one.
            self.openai_type = error_type or _OPENAI_TYPES.get(self.status, "invalid_request_error")
            self.details = details
            self.anthropic_type = _ANTHROPIC_TYPES.get(self.status, "invalid_request_error")
        if own_type and error_type:  # none when the gateway's credential was refused
            self.openai_type = error_type

    @property
    def rests(self) -> bool:
        """Whether the deployment is set aside for a while rather than retried: a rate limit,
        or an overload that says how long to wait (``retry_after``)."""
        status = self.upstream_status
        return status == 429 or (status in _OVERLOADS and self.retry_after is not None)

    @property
    def overflows_context(self) -> bool:
        """Whether the provider refused the request as longer than the deployment's context
        window: the request's fault on this deployment only, which one with a larger window
        may still serve (the router fails over to it; the circuit is not blamed)."""
        if self.upstream_status not in (400, 413):
            return False
        return self.code == "context_length_exceeded" or bool(_OVERFLOW.search(self.message))


class UpstreamTimeout(UpstreamError):
    """The provider did not answer in time (``phase``: connect, first_byte or total)."""

    status = 504
    openai_type = "timeout_error"
    anthropic_type = "timeout_error"  # Anthropic's own 504 (the SDK's GatewayTimeoutError)

    def __init__(
        self, message: str, *, phase: str, detail: str | None = None, client_held: bool = False
    ) -> None:
        super().__init__(message, code=f"upstream_{phase}_timeout", detail=detail)
        self.phase = phase
        self.client_held = client_held
        """The limit passed while the stream waited on its consumer, not on the upstream
        (writing to a client that reads it slower than it comes): not the deployment's
        failure."""
        self.prompt_sent = False
        """The call it cut had sent its request whole: the provider read (and bills) the
        prompt. Not when it was cut while connecting."""


class DeadlineExceeded(UpstreamTimeout):
    """The model group's ``deadline`` passed before any candidate answered: nothing more is
    tried."""

    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message, phase="deadline")
        self.code = "deadline_exceeded"


class UpstreamUnavailable(UpstreamError):
    """The provider could not be reached or dropped the connection."""


class UpstreamProtocolError(UpstreamError):
    """The provider's answer was malformed or cut short."""


class InvalidModelOutput(UpstreamError):
    """The provider answered, but ended the answer with a reason that says the model's output
    is unusable (a tool call it could not parse, a call to a tool it was not given, ...).

    Not a finish reason a client could act on (OpenAI's API has none for it, and an empty
    ``stop`` would read as a finished answer): a failure the router may retry or fail over,
    named by the provider's own reason (``reason``) for the client and the operator.
    """

    def __init__(self, provider: str, reason: str, meaning: str) -> None:
        message = f"the model's answer was unusable: {provider} ended it with {reason} ({meaning})"
        super().__init__(message, code="invalid_model_output")
        self.reason = reason


_CALLER_FAULTS = frozenset({400, 413, 415, 422})
_DEPENDENCY_FAILURES = frozenset({424})
_DEPLOYMENT_FAULTS = frozenset({401, 402, 403, 404, 408, 409, 429, *_DEPENDENCY_FAILURES})

_OVERLOADS = frozenset({503, 529})
_OVERFLOW = re.compile(
    # OpenAI, vLLM, Mistral ("maximum context length"); Anthropic and Claude on Bedrock
    # ("prompt is too long", "input length and `max_tokens` exceed context limit"); Bedrock
    # ("Input is too long for requested model", "too many input tokens"); Gemini ("The input
    # token count (N) exceeds the maximum number of tokens allowed"); others ("context window").
    r"context (?:length|window|limit)|prompt is too long|input is too long"
    r"|too many input tokens|input token count.{0,40}exceeds",
    re.IGNORECASE,
)
_OPENAI_CODES = {
    429: "rate_limit_exceeded",
    503: "server_is_overloaded",
    529: "server_is_overloaded",
}
_CREDENTIAL_REFUSALS = {
    401: (
        "upstream_authentication_failed",
        "the provider refused the gateway's credential for this deployment (upstream 401: "
        "authentication failed); the client's own key was accepted",
    ),
    402: (
        "upstream_payment_required",
        "the provider will not serve this deployment until its account is paid for (upstream "
        "402: payment required); the client's own key was accepted",
    ),
    403: (
        "upstream_permission_denied",
        "the provider refused the gateway's credential for this deployment (upstream 403: "
        "permission denied); the client's own key was accepted",
    ),
}
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    502: "api_error",
}


def wait_headers(retry_after: str) -> dict[str, str]:
    """The headers that tell a client to wait ``retry_after`` (delta-seconds or an HTTP
    date): ``retry-after`` in whole seconds (RFC 9110), a fraction rounded up, an HTTP date
    as it is; and, for delta-seconds, ``retry-after-ms``, which the ``openai`` and
    ``anthropic`` SDKs read first (a wait of 1.5 s is 1,500 ms there, not 2 s)."""
    try:
        seconds = float(retry_after)
    except ValueError:
        return {"retry-after": retry_after}
    if seconds.is_integer() and "." not in retry_after:
        whole = retry_after
    else:
        whole = str(max(0, math.ceil(seconds)))
    millis = seconds * 1000
    if not math.isfinite(millis):  # a wait too long to say in milliseconds
        return {"retry-after": whole}
    return {"retry-after": whole, "retry-after-ms": str(max(0, math.ceil(millis)))}


def wait_value(seconds: float) -> str:
    """A wait of ``seconds`` the gateway measured (a token bucket's refill, a deployment's
    rest) as delta-seconds to the millisecond, rounded up and at least one: ``wait_headers``
    of it are ``retry-after`` of at least 1 and the exact ``retry-after-ms``."""
    return f"{max(0.001, math.ceil(round(seconds * 1000, 6)) / 1000):.3f}".rstrip("0").rstrip(".")


def without_address(text: str, api_base: str) -> str:
    """``text`` with the host of ``api_base`` (and any scheme, user and port with it) masked.

    A proxy's error page or a compatible server's message may name the address the gateway
    called: an internal one, which the client must not learn from an error passed on to it.
    """
    try:
        host = urlsplit(api_base).hostname
    except ValueError:
        return text
    if not host or host not in text.lower():
        return text
    pattern = (
        rf"(?<![\w.-])(?:[a-z][\w+.-]*://)?(?:[^\s/@\"']*@)?{re.escape(host)}(?::\d+)?(?![\w-])"
    )
    return re.sub(pattern, "<upstream>", text, flags=re.IGNORECASE)
