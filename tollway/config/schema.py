"""The configuration schema: every option, its default and its validation.

Every model forbids unknown keys so a typo is an error, not a silently ignored setting.
docs/configuration.md documents each field here; keep the two in step.
"""

from __future__ import annotations

import datetime
import importlib.util
import ipaddress
import re
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from tollway.config.types import ApiBase, Delay, Duration, SecretRef
from tollway.simulator.settings import SimulatorSettings

EMBEDDED_SIMULATOR = "embedded-simulator"
"""An ``api_base`` value meaning: the simulator this process starts (``simulator.enabled``)."""


class Strict(BaseModel):
    """Base for config sections: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


Location = tuple[int | str, ...]
"""Where a value is, below the section that checks it: ``("deployments", 1, "id")``."""


def located(section: BaseModel, problems: list[tuple[Location, str]]) -> None:
    """Raise the problems a check across a section's fields found, each at the value it is
    about: pydantic puts the section's own place in front, so the file's reader is told
    ``models[3].deployments[1].id`` and every such problem at once, where a ``ValueError``
    names only the section (``models[3]``, or ``(top level)`` for ``Settings``) and the
    first problem."""
    if not problems:
        return
    errors = [
        InitErrorDetails(
            type=PydanticCustomError("config", "{problem}", {"problem": problem}),
            loc=location,
            input=section,
        )
        for location, problem in problems
    ]
    raise ValidationError.from_exception_data(type(section).__name__, errors)


def _place(location: Location) -> str:
    """``("models", 0, "deployments", 1)`` as a config path: ``models[0].deployments[1]``."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else part
    return path


class Timeouts(Strict):
    """Upstream timeouts; unset fields fall back to ``upstream.timeouts``."""

    connect: Duration | None = None
    first_byte: Duration | None = None
    total: Duration | None = None


class ResolvedTimeouts(Strict):
    """Upstream timeouts with every phase set."""

    connect: Duration = 5.0
    first_byte: Duration = 60.0
    total: Duration = 600.0

    def merged(self, override: Timeouts | None) -> ResolvedTimeouts:
        """These defaults with the set fields of ``override`` on top."""
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_none=True))


class PriceTierConfig(Strict):
    """Rates for a whole request whose input exceeds ``above_input_tokens``."""

    above_input_tokens: int = Field(ge=0)
    input: float = Field(ge=0.0)
    output: float = Field(ge=0.0)
    cached_input: float | None = Field(default=None, ge=0.0)
    cache_write: float | None = Field(default=None, ge=0.0)
    cache_write_1h: float | None = Field(default=None, ge=0.0)


ToolKind = Literal["web_search", "web_search_preview", "file_search", "web_fetch"]
"""The server-side tools priced per call (``pricing/tools.py``)."""


class DeploymentPrice(Strict):
    """What a deployment costs, in USD per 1M tokens (overrides the price catalog)."""

    input: float = Field(ge=0.0)
    output: float = Field(ge=0.0)
    cached_input: float | None = Field(default=None, ge=0.0)
    cache_write: float | None = Field(default=None, ge=0.0)
    cache_write_1h: float | None = Field(default=None, ge=0.0)
    reasoning: float | None = Field(default=None, ge=0.0)
    per_image: float | None = Field(default=None, ge=0.0)
    """USD per input image."""
    per_request: float | None = Field(default=None, ge=0.0)
    """USD per request."""
    tool_calls: dict[ToolKind, Annotated[float, Field(ge=0.0)]] | None = None
    """USD per 1,000 calls of a provider's server-side tool, by kind (``web_search``,
    ``web_search_preview``, ``file_search``, ``web_fetch``); ``None``: the catalog's fees for
    the model, over which the kinds named here apply."""
    tool_requests: dict[ToolKind, Annotated[float, Field(ge=0.0)]] | None = None
    """USD per 1,000 requests that called a server-side tool of the kind, however many times
    (Gemini 2.x's grounded prompts); ``None``: the catalog's, as ``tool_calls``."""
    tiers: list[PriceTierConfig] = Field(default_factory=list)


class DeploymentConfig(Strict):
    """One concrete place a model is served: provider, upstream model, endpoint, credential."""

    provider: str
    model: str
    id: str | None = None
    api_base: ApiBase | None = None
    api_key: SecretRef | None = None
    api_version: str | None = None
    azure_deployment: str | None = None
    azure_ad_token: SecretRef | None = None
    """azure_openai: a Microsoft Entra ID (Azure AD) access token, sent as ``Authorization:
    Bearer`` in place of ``api_key`` (sent as ``api-key``); a ``file:`` one is read again as
    it changes, so a process renewing the token file keeps it fresh."""
    headers: dict[str, str] = Field(default_factory=dict)
    timeouts: Timeouts | None = None
    region: str | None = None
    aws_access_key_id: SecretRef | None = None
    aws_secret_access_key: SecretRef | None = None
    aws_session_token: SecretRef | None = None
    google_service_account: SecretRef | None = None
    """vertex_ai: a service account key (its JSON) the gateway mints access tokens from."""
    bedrock_family: Literal["claude", "nova", "other"] | None = None
    """bedrock: the family of the model behind an id that names none (an application inference
    profile's or a provisioned model's ARN, an imported model); ``None``: as the id says."""
    weight: float = Field(default=1.0, ge=0.0)
    """Share of traffic under the ``weighted`` strategy (relative to the group's other weights)."""
    context_window: int | None = Field(default=None, ge=1)
    """Tokens the model can hold (input + output); requests that cannot fit skip it. Defaults
    to the price catalog's value for the model."""
    max_output: int | None = Field(default=None, ge=1)
    """The most output tokens the model gives; defaults to the catalog's value."""
    price: DeploymentPrice | None = None
    """USD per 1M tokens; overrides the price catalog (``{input: 0, output: 0}`` for a
    self-hosted model)."""
    tokenizer: Literal["o200k_base", "cl100k_base"] | None = None
    """The OpenAI encoding this deployment's model counts tokens with (framed as OpenAI
    frames chat messages): its local count is then exact, not an estimate with
    ``limits.estimate_margin``. Without it only OpenAI's own models on OpenAI's API or Azure
    OpenAI count exactly."""
    responses_api: bool | None = None
    """Whether a Responses client's request (``POST /v1/responses``) goes to this deployment's
    own ``/responses`` endpoint, its answer sent on as it came; else it is sent as Chat
    Completions. Default: true for ``openai`` at OpenAI's own API, false for OpenAI-compatible
    servers and Azure; other families have no Responses API (true is a config error)."""

    def secret_refs(self) -> list[SecretRef]:
        """Every credential reference this deployment names."""
        refs = (
            self.api_key,
            self.azure_ad_token,
            self.aws_access_key_id,
            self.aws_secret_access_key,
            self.aws_session_token,
            self.google_service_account,
        )
        return [ref for ref in refs if ref is not None]

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        from tollway.providers import BUILTIN_PROVIDERS

        if value not in BUILTIN_PROVIDERS:
            known = ", ".join(sorted(BUILTIN_PROVIDERS))
            raise ValueError(f"unknown provider {value!r} (known: {known})")
        return value

    @model_validator(mode="after")
    def _required_fields(self) -> DeploymentConfig:
        from tollway.providers import BUILTIN_PROVIDERS

        spec = BUILTIN_PROVIDERS[self.provider]
        if self.api_base is None and spec.default_api_base is None:
            raise ValueError(f"provider {self.provider!r} needs api_base")
        missing = [name for name in spec.required_fields if getattr(self, name) is None]
        if missing:
            raise ValueError(f"provider {self.provider!r} needs {', '.join(missing)}")
        for other in BUILTIN_PROVIDERS.values():
            for name in other.own_fields if other is not spec else ():
                if getattr(self, name) is not None:
                    raise ValueError(
                        f"'{name}' is for provider {other.name!r}, not {self.provider!r}"
                    )
        if self.api_key is not None and self.azure_ad_token is not None:
            raise ValueError("set api_key or azure_ad_token, not both: Azure takes one of them")
        if self.tokenizer is not None and not spec.declares_tokenizer:
            raise ValueError(
                f"provider {self.provider!r} cannot declare a tokenizer: its input tokens are "
                "not counted with OpenAI's encodings"
            )
        if self.responses_api and spec.responses_api is None:
            raise ValueError(
                f"provider {self.provider!r} cannot set responses_api: it has no Responses API"
            )
        if spec.check_config is not None:
            spec.check_config(self)
        return self

    @field_validator("api_version", mode="before")
    @classmethod
    def _date_as_text(cls, value: object) -> object:
        # YAML reads an unquoted 2024-10-21 as a date; Azure wants the text.
        return value.isoformat() if isinstance(value, datetime.date) else value

    @field_validator("headers")
    @classmethod
    def _no_auth_headers(cls, value: dict[str, str]) -> dict[str, str]:
        credentials = {"authorization", "api-key", "x-api-key", "x-goog-api-key"}
        reserved = credentials & {k.lower() for k in value}
        if reserved:
            raise ValueError(f"{sorted(reserved)} must be set with api_key, not as a header")
        return value


Strategy = Literal["priority", "weighted", "latency", "cost", "least-busy"]


class ModelGroupConfig(Strict):
    """A model name clients ask for, the deployments that serve it and how to pick one."""

    name: str = Field(min_length=1)
    kind: Literal["chat", "embedding"] = "chat"
    strategy: Strategy = "priority"
    deployments: list[DeploymentConfig] = Field(min_length=1)
    fallbacks: list[str] = Field(default_factory=list)
    """Other model groups whose deployments are tried, in order, after this group's own;
    followed transitively, each group once (a cycle is accepted: the walk stops at a group
    already visited)."""
    retries: int = Field(default=0, ge=0, le=10)
    """Further attempts at the same deployment after a transient failure (5xx, reset), with
    backoff; rate limits and timeouts move on to the next candidate at once."""
    latency_threshold: Duration | None = None
    """Give up on a candidate that has sent nothing after this long, if another remains."""
    deadline: Duration | None = None
    """The longest a request waits for an answer over all its attempts, retries and
    fallbacks: no attempt starts after it, the one under way gets only what is left (a
    stream: until its first event), and the client then gets a 504 ``deadline_exceeded``."""
    owned_by: str = "tollway"

    @model_validator(mode="after")
    def _unique_ids(self) -> ModelGroupConfig:
        problems: list[tuple[Location, str]] = []
        first: dict[str, int] = {}
        for index, deployment in enumerate(self.deployments):
            if deployment.id is None:
                continue
            taken = first.setdefault(deployment.id, index)
            if taken != index:
                problems.append(
                    (
                        ("deployments", index, "id"),
                        f"deployment id {deployment.id!r} is deployments[{taken}]'s too: ids "
                        "must be unique in a group",
                    )
                )
        problems += [
            (("fallbacks", index), "a model group cannot fall back to itself")
            for index, fallback in enumerate(self.fallbacks)
            if fallback == self.name
        ]
        located(self, problems)
        return self


class RoutingConfig(Strict):
    """How deployments are judged healthy, retried and explored (every model group)."""

    failure_threshold: int = Field(default=5, ge=1)
    """Consecutive failures that open a deployment's circuit."""
    cooldown: Duration = 30.0
    """How long an open circuit skips the deployment before one probe is let through."""
    rate_limit_cooldown: Duration = 5.0
    """How long a 429 without ``retry-after`` keeps the deployment aside."""
    retry_after_max: Duration = Field(default=3600.0, gt=0.0)
    """The longest a provider's ``retry-after`` (a 429, an overload's 503 or 529) keeps the
    deployment aside."""
    backoff: Duration = 0.1
    """First wait before retrying the same deployment; doubles each retry, with full jitter."""
    backoff_max: Duration = 2.0
    latency_alpha: float = Field(default=0.3, gt=0.0, le=1.0)
    """Weight of the newest sample in the latency EWMA."""
    exploration: float = Field(default=0.05, ge=0.0, le=1.0)
    """Share of ``latency`` requests sent to a random candidate, so a recovered one is seen."""


def _proxy_network(value: str) -> str:
    """``value`` when it is an address or a CIDR network (``10.0.0.0/8``, ``2001:db8::/32``)."""
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(
            f"{value!r} is not an address or a CIDR network such as 10.0.0.0/8"
        ) from None
    if network.network_address != ipaddress.ip_address(value.partition("/")[0]):
        # Refused, not made 10.0.0.0/8: a mistyped prefix would trust a whole other network.
        raise ValueError(f"{value!r} has bits set past its prefix: the network is {network}")
    return value


ProxyNetwork = Annotated[str, AfterValidator(_proxy_network)]
"""A trusted proxy's address or network (``server.trusted_proxies``)."""


_SCHEME_HOST_PORT = re.compile(
    r"([a-z][a-z0-9+.-]*)://([^/?#@:\s\[\]]+|\[[0-9a-f:.]+\])(?::(\d{1,5}))?"
)
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _origin(value: str) -> str:
    """``value`` as browsers send an ``Origin`` (``https://app.example.com``), lower-cased;
    ``*``: every origin. Anything a browser never sends is refused, as it could never match."""
    origin = value.strip().lower()
    if origin == "*":
        return origin
    if origin == "null":
        raise ValueError(
            "'null' is the origin of sandboxed frames and file: pages: any page can claim it"
        )
    match = _SCHEME_HOST_PORT.fullmatch(origin)
    if match is None:
        stem = _SCHEME_HOST_PORT.match(origin)
        hint = f" (write {stem.group(0)!r})" if stem else ""
        raise ValueError(
            f"{value!r} is not an origin: scheme://host[:port], without a path or a trailing"
            f" slash{hint}"
        )
    scheme, _, port = match.groups()
    if port is not None and _DEFAULT_PORTS.get(scheme) == port:
        raise ValueError(
            f"{value!r}: browsers leave out the default port, write"
            f" {origin.removesuffix(':' + port)!r}"
        )
    return origin


_HEADER_NAME = re.compile(r"[!#$%&'+.^_`|~0-9a-z-]*\*?")


def _allowed_header(value: str) -> str:
    """A request header name (any case), or a prefix ending in ``*`` (``x-stainless-*``)."""
    name = value.strip().lower()
    if not name or _HEADER_NAME.fullmatch(name) is None:
        raise ValueError(
            f"{value!r} is not a header name (letters, digits, '-'), nor a prefix ending in '*'"
        )
    return name


Origin = Annotated[str, AfterValidator(_origin)]
"""A browser origin, or ``*`` (``server.cors``)."""
AllowedHeader = Annotated[str, AfterValidator(_allowed_header)]
"""A request header a browser may send, or a prefix glob (``server.cors.allow_headers``)."""

SDK_BROWSER_HEADERS = (
    "authorization", "content-type", "x-api-key", "anthropic-version", "anthropic-beta",
    "anthropic-dangerous-direct-browser-access", "openai-organization", "openai-project",
    "openai-beta", "x-request-id", "x-stainless-*", "user-agent",
)  # fmt: skip
"""What the ``openai`` and ``anthropic`` JavaScript SDKs send from a browser beyond the
headers browsers let through without asking (their ``X-Stainless-*`` platform, retry and
timeout headers; ``User-Agent`` where the browser lets a page set it)."""


class CorsConfig(Strict):
    """Which browser pages may call the gateway (``server.cors``); absent: none."""

    allow_origins: list[Origin] = Field(default_factory=list)
    """Origins whose pages may call the model routes; ``*``: any page."""
    admin_allow_origins: list[Origin] = Field(default_factory=list)
    """Origins whose pages may call the admin API (never ``*``)."""
    allow_headers: list[AllowedHeader] = Field(default_factory=lambda: list(SDK_BROWSER_HEADERS))
    """Request headers a page may send (``x-stainless-*``: a prefix; ``*``: any)."""
    max_age: Duration = Field(default=600.0, ge=0)
    """How long a browser may keep a preflight's answer."""
    allow_credentials: bool = False
    """Let pages send cookies and TLS client certificates (not needed for API keys)."""

    @model_validator(mode="after")
    def _coherent(self) -> CorsConfig:
        problems: list[tuple[Location, str]] = []
        if not self.allow_origins and not self.admin_allow_origins:
            problems.append(((), "cors needs allow_origins or admin_allow_origins"))
        if "*" in self.allow_origins and len(self.allow_origins) > 1:
            problems.append((("allow_origins",), "'*' allows every origin: list no other"))
        if "*" in self.allow_origins and self.allow_credentials:
            problems.append(
                (
                    ("allow_credentials",),
                    "browsers refuse credentials with every origin ('*'): list the origins",
                )
            )
        if "*" in self.admin_allow_origins:
            problems.append(
                (
                    ("admin_allow_origins",),
                    "'*' would let any page use an admin key a browser holds: list the origins",
                )
            )
        located(self, problems)
        return self


class ServerConfig(Strict):
    """The HTTP listener."""

    host: str = "127.0.0.1"
    port: int = Field(default=4000, ge=0, le=65535)
    max_body_size: ByteSize = ByteSize(64 * 1024 * 1024)
    """Request bodies over this get a 413. The default takes what the providers take: 32 MB
    for Anthropic's Messages API, up to 50 MB of images (as base64, a third more) for
    OpenAI's."""
    shutdown_timeout: Duration = 30.0
    drain_delay: Delay = 0.0
    """After the first SIGTERM / SIGINT, how long the gateway keeps listening and serving
    while ``/health/ready`` answers 503, so a load balancer takes it out of rotation before
    connections are refused; then the stop goes on as ``shutdown_timeout`` says."""
    access_log: bool = False
    reload_interval: Duration | None = 2.0
    """How often the config file is checked for changes to reload model groups (null: never;
    SIGHUP and ``POST /admin/reload`` reload at once either way)."""
    trusted_proxies: list[ProxyNetwork] = Field(default_factory=list)
    """Addresses and CIDR networks of the reverse proxies and load balancers in front of the
    gateway: a request whose peer is one of them is from the address their
    ``X-Forwarded-For`` names (the right-most one not itself trusted; dialects/
    client_address.py). Empty: no header is read, the client is the connection's peer."""
    cors: CorsConfig | None = None
    """Browser pages allowed to call the gateway (CORS); ``None``: no CORS headers at all."""


class UpstreamConfig(Strict):
    """The shared upstream HTTP client."""

    timeouts: ResolvedTimeouts = ResolvedTimeouts()
    max_connections: int = Field(default=1000, ge=1)
    max_connections_per_host: int = Field(default=0, ge=0)
    keepalive: Duration = 30.0
    forward_headers: list[str] = Field(default_factory=lambda: ["anthropic-beta", "openai-beta"])
    """Client header names (``*`` globs, any case) passed on to providers; credentials never."""
    file_secret_recheck: Duration = Field(default=5.0, ge=0)
    """How often a ``file:`` secret is checked for a change on disk (a rotated mount)."""


class OIDCIssuerConfig(Strict):
    """An OpenID Connect issuer whose JWTs are accepted as ``Authorization: Bearer``."""

    issuer: str
    audience: list[str] = Field(min_length=1)
    discovery_url: str | None = None
    """Defaults to ``<issuer>/.well-known/openid-configuration``."""
    jwks_uri: str | None = None
    """Skips discovery when set."""
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "PS256", "ES256", "EdDSA"])
    leeway: Duration = 60.0
    jwks_refresh: Duration = 600.0
    jwks_min_refetch: Duration = 10.0
    """An unknown ``kid`` refetches the keys at once, but at most this often."""
    user_claim: str = "email"
    """Claim naming the user; ``sub`` is used when it is absent."""
    team_claim: str | None = "groups"
    """Claim holding the caller's team name(s), a string or a list."""
    role_claim: str | None = None
    """Claim holding role values mapped through ``role_map``."""
    role_map: dict[str, Literal["admin", "team_admin", "member", "viewer"]] = Field(
        default_factory=dict
    )
    admin_groups: list[str] = Field(default_factory=list)
    """Members of these groups (``team_claim`` values) are admins."""
    default_role: Literal["admin", "team_admin", "member", "viewer"] = "member"
    provision: bool = True
    """Just-in-time provisioning (docs/oidc.md): a sign-in's user and claimed teams are found
    or made in the store, and the principal carries their store ids; false: the claim values
    themselves, with no store records."""

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        # Symmetric (HS*) and "none" would let anyone who knows a public value mint tokens.
        allowed = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
                   "ES512", "EdDSA"}  # fmt: skip
        bad = [alg for alg in value if alg not in allowed]
        if bad or not value:
            raise ValueError(f"algorithms must be asymmetric ones from {sorted(allowed)}")
        return value


class AuthConfig(Strict):
    """Who may call the gateway."""

    anonymous_models: list[str] = Field(default_factory=list)
    """Model names or globs callers without a credential may use; empty: a key is required."""
    admin_key: SecretRef | None = None
    """The bootstrap admin key; else ``TOLLWAY_ADMIN_KEY``, else one made and printed once."""
    oidc: list[OIDCIssuerConfig] = Field(default_factory=list)
    """Identity providers whose JWTs are accepted (docs/oidc.md); one entry per issuer."""
    reconcile_interval: Duration = 30.0
    """How often keys, users and teams are reloaded from the store in full, bounding how long
    a change made by another replica can go unseen if its change event was missed."""
    last_used_interval: Duration = 60.0
    """How often the keys used since the last write get their ``last_used_at`` written to
    the store (in one statement; the rest is written at shutdown)."""
    unknown_key_lookups_per_second: float | None = Field(default=5.0, gt=0.0)
    """Store lookups of keys not in memory (made on another replica a moment ago, or no
    key at all) each client address earns a second (an IPv6 one: its /64), with bursts of
    ``unknown_key_lookups_burst``; an unknown key beyond it is refused (401
    ``invalid_api_key``) without asking the store, and counted in
    ``tollway_unknown_key_lookups_refused_total``. null: unbounded."""
    unknown_key_lookups_burst: int = Field(default=20, ge=1)
    """The most lookups an address may have saved up (and has when first seen)."""
    admin_denials_per_second: float = Field(default=1.0, ge=0.0)
    """Admin API requests denied (401, 403) written to the audit trail a second of each kind
    (status and code), with bursts of ten seconds' worth; beyond it they are only counted
    (``tollway_admin_denials_suppressed_total``). 0: none written, all counted."""

    @field_validator("oidc")
    @classmethod
    def _one_entry_per_issuer(cls, value: list[OIDCIssuerConfig]) -> list[OIDCIssuerConfig]:
        issuers = [entry.issuer for entry in value]
        repeated = sorted({issuer for issuer in issuers if issuers.count(issuer) > 1})
        if repeated:
            raise ValueError(f"each OIDC issuer may appear once; repeated: {', '.join(repeated)}")
        return value


class StoreConfig(Strict):
    """Where keys, teams, users, credentials and the audit trail are kept."""

    url: str = "sqlite+aiosqlite:///./tollway.db"
    migrate: bool = True
    """Upgrade the schema to the newest migration at start-up."""
    connect_timeout: Duration = Field(default=10.0, gt=0)
    """How long a new PostgreSQL connection may take before the store counts as down."""
    busy_timeout: Duration = Field(default=30.0, gt=0)
    """How long a write to a SQLite file waits for other writers before answering 503."""


class SimulatorConfig(Strict):
    """The in-process simulated provider used by the demo and tests."""

    enabled: bool = False
    settings: SimulatorSettings = SimulatorSettings()


class RateLimitConfig(Strict):
    """Rate limits of one key, user, team or model; unset means unlimited."""

    tpm: int | None = Field(default=None, gt=0)
    rpm: int | None = Field(default=None, gt=0)
    max_concurrent: int | None = Field(default=None, gt=0)


class BudgetConfig(Strict):
    """A spending limit set in config (the admin API sets more; both apply)."""

    scope: Literal["key", "user", "team", "org"]
    id: str = Field(min_length=1)
    """The key id, user id, team id or organisation name; ``*`` with ``org``: every request."""
    period: Literal["day", "week", "month", "total"] = "month"
    limit_usd: float = Field(ge=0)
    policy: Literal["reject", "shrink"] = "reject"
    """Over budget: ``reject`` the request, or ``shrink`` its max output to what is left."""
    soft_limit: float | None = Field(default=None, gt=0, le=1)
    """A share of the limit past which ``downgrade`` applies."""
    downgrade: dict[str, str] = Field(default_factory=dict)
    """Past ``soft_limit``: requested model -> the cheaper model to serve instead."""


class LimitsConfig(Strict):
    """Rate limits and budgets (see docs/limits.md)."""

    backend: Literal["memory", "redis"] = "memory"
    redis_url: SecretRef | None = None
    """``backend: redis``: where, e.g. ``env:TOLLWAY_REDIS_URL`` (may hold a password)."""
    redis_prefix: str = Field(default="tollway", min_length=1)
    """Key prefix in Redis; gateways sharing limits use the same prefix."""
    redis_timeout: Duration = 0.25
    """How long one limiter round trip to Redis may take."""
    fail_open: bool = False
    """Redis unreachable: ``false`` answers 503 (nothing unmetered gets through); ``true``
    lets requests through unlimited, each logged."""
    timezone: str = "UTC"
    """The zone in which budget days, weeks and months start (an IANA name)."""
    default_max_output: int = Field(default=4096, gt=0)
    """Output tokens assumed (and, under a budget, enforced) when a request sets none."""
    default_max_tool_calls: int = Field(default=10, ge=0)
    """Under a budget: calls of a server-side tool billed per call (web search) a request
    may make when it sets no bound (Responses ``max_tool_calls``, Anthropic ``max_uses``);
    set on the request, and reserved at the tool's fee."""
    estimate_margin: float = Field(default=0.25, ge=0)
    """Budgets: extra share of input tokens reserved when the local count is an estimate
    (every deployment but OpenAI's own models on OpenAI's API or Azure OpenAI, and those
    that declare their ``tokenizer``, whose counts are exact)."""
    hold: Duration = 900.0
    """Redis: how long a dead process's reservation or concurrency slot is held."""
    spend_flush_interval: Duration = 5.0
    """How often budget spend is written to the store."""
    alert_thresholds: list[float] = Field(default_factory=lambda: [0.5, 0.8, 1.0])
    """Shares of a budget whose crossing is an event (log line, metric, alert)."""
    unpriced: Literal["allow", "refuse"] = "allow"
    """A request under a budget and a deployment with no price (none in config or the
    catalog), which a budget cannot bound: ``allow`` it (at $0), or ``refuse``: skip it for a
    priced candidate, and refuse the request (403) when none is left."""
    keys: dict[str, RateLimitConfig] = Field(default_factory=dict)
    users: dict[str, RateLimitConfig] = Field(default_factory=dict)
    teams: dict[str, RateLimitConfig] = Field(default_factory=dict)
    models: dict[str, RateLimitConfig] = Field(default_factory=dict)
    deployments: dict[str, RateLimitConfig] = Field(default_factory=dict)
    """By deployment id: stays under a provider's own limits (a refusal tries the next)."""
    budgets: list[BudgetConfig] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _redis(self) -> LimitsConfig:
        if self.backend == "redis" and self.redis_url is None:
            raise ValueError("backend redis needs redis_url (e.g. env:TOLLWAY_REDIS_URL)")
        keys = [(b.scope, b.id, b.period) for b in self.budgets]
        repeated = sorted({f"{s}:{i}:{p}" for s, i, p in keys if keys.count((s, i, p)) > 1})
        if repeated:
            raise ValueError(f"budgets repeated: {', '.join(repeated)}")
        return self


class MetricsConfig(Strict):
    """Prometheus metrics at ``GET /metrics``."""

    enabled: bool = True
    per_key_labels: bool = False
    """Add a ``key`` label (the key id) to request counts; unbounded cardinality, off by default."""


class RequestLogBodiesConfig(Strict):
    """Which requests keep their prompt and response in the request log (redacted)."""

    enabled: bool = False
    """Keep bodies of every request."""
    teams: list[str] = Field(default_factory=list)
    """Team ids whose requests keep their bodies (when ``enabled`` is false)."""
    max_chars: int = Field(default=20_000, ge=1)
    """Each text in a body is cut to this many characters."""
    redact: bool = True
    """Replace emails, API-key-looking strings, card and social security numbers."""


class RequestLogConfig(Strict):
    """The request log: one row per request, written in batches off the request path."""

    enabled: bool = True
    queue_size: int = Field(default=20_000, ge=1)
    """Records waiting to be written; when full, new records are dropped and counted."""
    batch_size: int | None = Field(default=None, ge=1)
    """Rows per transaction; unset: 1,000 on a SQLite file (its own writer thread, at a lower
    priority than the event loop: telemetry/request_log.py ``THREADED_BATCH``), 100 on
    PostgreSQL (encoded on the event loop: ``LOOP_BATCH``)."""
    flush_interval: Duration = 0.25
    """The longest a record waits before its batch is written."""
    write_timeout: Duration = 10.0
    """How long one batch insert may take before the store counts as unreachable."""
    retry_interval: Duration = 5.0
    """While the store is unreachable: the longest wait between attempts to replay the spool."""
    spool_dir: str | None = None
    """Where batches wait on disk while the store is unreachable; default: a directory per
    store under the system's temporary directory."""
    retention_days: int | None = Field(default=90, ge=1)
    """Rows older than this are deleted (null: kept for ever)."""
    purge_interval: Duration = 3600.0
    chain: bool = False
    """Hash-chain the records (tamper evidence, ``tollway logs verify``)."""
    bodies: RequestLogBodiesConfig = RequestLogBodiesConfig()
    refusals_per_second: float = Field(default=10.0, ge=0.0)
    """Requests refused before the pipeline (401, 400, 413...) recorded a second of each kind
    (status and code), with bursts of ten seconds' worth; beyond it they are only counted
    (``tollway_request_log_refusals_suppressed_total``). 0: none recorded, all counted."""


OTEL_PACKAGES = ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http")
"""What tracing imports (``pip install 'tollway[otel]'``); nothing else in the gateway does."""


class TracingConfig(Strict):
    """OpenTelemetry traces of every request and upstream attempt (docs/observability.md)."""

    enabled: bool = False
    otlp_endpoint: str | None = None
    """The collector's OTLP/HTTP traces URL, e.g. ``http://collector:4318/v1/traces``; unset:
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, else ``OTEL_EXPORTER_OTLP_ENDPOINT`` + ``/v1/traces``,
    else ``http://localhost:4318/v1/traces``."""
    headers: dict[str, SecretRef] = Field(default_factory=dict)
    """Headers sent with every export (e.g. ``authorization: env:OTLP_TOKEN``)."""
    service_name: str = Field(default="tollway", min_length=1)
    """The ``service.name`` resource attribute of every span."""
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    """Share of new traces recorded; a request with a ``traceparent`` follows its caller's
    decision (parent-based)."""
    capture_content: bool = False
    """Put prompts and completions in spans (``gen_ai.input.messages``,
    ``gen_ai.output.messages``); off, no message content is ever recorded."""
    content_max_chars: int = Field(default=20_000, ge=1)
    """With ``capture_content``: each text (and tool call's arguments) is cut to this many
    characters in a span."""
    redact: bool = True
    """With ``capture_content``: texts in spans are redacted as the request log's bodies are
    (e-mail addresses, API keys and tokens, card and social security numbers)."""
    propagate: bool = True
    """Send ``traceparent`` (and the caller's ``tracestate``) to the provider with each attempt."""

    @field_validator("otlp_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("an http:// or https:// URL, e.g. http://collector:4318/v1/traces")
        return value

    @model_validator(mode="after")
    def _installed(self) -> TracingConfig:
        if self.enabled:
            missing = [name for name in OTEL_PACKAGES if not _importable(name)]
            if missing:
                raise ValueError(
                    f"tracing needs the OpenTelemetry SDK and OTLP exporter "
                    f"(`pip install 'tollway[otel]'`); missing: {', '.join(missing)}"
                )
        return self


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or blocked in sys.modules
        return False


class TelemetryConfig(Strict):
    """Observability of the gateway."""

    metrics: MetricsConfig = MetricsConfig()
    request_log: RequestLogConfig = RequestLogConfig()
    tracing: TracingConfig = TracingConfig()


AlertKind = Literal["budget", "spend_rate", "error_storm"]
ALERT_KINDS: tuple[AlertKind, ...] = ("budget", "spend_rate", "error_storm")


class WebhookConfig(Strict):
    """One place alerts are POSTed to (docs/alerts.md)."""

    url: SecretRef
    """A secret reference to the URL (a Slack webhook URL is a secret), e.g. ``env:NAME``."""
    name: str | None = None
    """Names the webhook in logs and metrics (never the URL); default ``webhook-<index>``."""
    format: Literal["slack", "json"] = "json"
    kinds: list[AlertKind] = Field(default_factory=lambda: list(ALERT_KINDS))
    """The alert kinds this webhook takes."""


SpendScope = Literal["key", "user", "team"]
_SPEND_SCOPES: tuple[SpendScope, ...] = ("key", "team")


class SpendRateConfig(Strict):
    """Spend-rate anomalies: a recent window far above the scope's own baseline."""

    enabled: bool = True
    scopes: list[SpendScope] = Field(default_factory=lambda: list(_SPEND_SCOPES))
    """Whose spend is tracked: ``key`` (the principal's id), ``user``, ``team``."""
    window: Duration = 300.0
    baseline: Duration = 3600.0
    factor: float = Field(default=5.0, gt=1.0)
    """Alert when the window's rate is more than this many times the baseline rate ..."""
    min_usd: float = Field(default=1.0, ge=0.0)
    """... and the window's spend is at least this much."""
    max_usd_per_window: float | None = Field(default=None, gt=0.0)
    """With no baseline (a new or long-idle scope): alert when the window's spend passes it."""

    @model_validator(mode="after")
    def _windows(self) -> SpendRateConfig:
        if not self.window <= self.baseline <= 1000 * self.window:
            raise ValueError("baseline must be between window and 1000 x window")
        return self


class ErrorStormConfig(Strict):
    """Error and fallback storms per deployment."""

    enabled: bool = True
    window: Duration = 60.0
    min_attempts: int = Field(default=20, ge=1)
    """Attempts a deployment needs in the window before its error ratio is judged."""
    error_ratio: float = Field(default=0.5, gt=0.0, le=1.0)
    """Alert when at least this share of the attempts failed."""
    min_fallbacks: int | None = Field(default=None, ge=1)
    """Also alert when this many requests fell back away from the deployment in the window."""
    resolved: bool = True
    """Send a ``resolved`` message when a deployment in a storm answers well again."""


class AlertsConfig(Strict):
    """Alerts delivered to webhooks (docs/alerts.md); nothing is tracked without webhooks."""

    webhooks: list[WebhookConfig] = Field(default_factory=list)
    spend_rate: SpendRateConfig = SpendRateConfig()
    errors: ErrorStormConfig = ErrorStormConfig()
    dedup_window: Duration = 900.0
    """The same alert (kind, scope, id, threshold or window) is not sent again within this."""
    evaluate_interval: Duration = 10.0
    """How often spend rates and error ratios are judged."""
    timeout: Duration = 5.0
    """The longest one delivery attempt may take."""
    retries: int = Field(default=3, ge=0, le=10)
    """Further attempts after a failed delivery (connection error, timeout, 429, 5xx)."""
    retry_backoff: Duration = 1.0
    """Wait before the first retry; doubles each retry."""

    @field_validator("webhooks")
    @classmethod
    def _unique_names(cls, value: list[WebhookConfig]) -> list[WebhookConfig]:
        names = [hook.name or f"webhook-{index}" for index, hook in enumerate(value, 1)]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"webhook names must be unique; repeated: {', '.join(repeated)}")
        return value


class Settings(Strict):
    """The whole gateway configuration."""

    server: ServerConfig = ServerConfig()
    upstream: UpstreamConfig = UpstreamConfig()
    simulator: SimulatorConfig = SimulatorConfig()
    auth: AuthConfig = AuthConfig()
    store: StoreConfig = StoreConfig()
    routing: RoutingConfig = RoutingConfig()
    limits: LimitsConfig = LimitsConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    alerts: AlertsConfig = AlertsConfig()
    models: list[ModelGroupConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        """Checks across model groups, each problem named at its place in the file."""
        problems: list[tuple[Location, str]] = []
        names: dict[str, int] = {}
        kinds = {group.name: group.kind for group in self.models}
        # An id may name one deployment listed in several groups, never two targets: they
        # would share a health record, rate limits and metrics label.
        targets: dict[str, tuple[Location, tuple[object, ...]]] = {}
        for g, group in enumerate(self.models):
            first = names.setdefault(group.name, g)
            if first != g:
                problems.append(
                    (
                        ("models", g, "name"),
                        f"{group.name!r} is the name of models[{first}] too: model names must "
                        "be unique",
                    )
                )
            for d, deployment in enumerate(group.deployments):
                where: Location = ("models", g, "deployments", d)
                if deployment.id is not None:
                    target = (
                        deployment.provider, deployment.model, deployment.api_base,
                        deployment.azure_deployment, deployment.region,
                    )  # fmt: skip
                    place, seen = targets.setdefault(deployment.id, (where, target))
                    if seen != target:
                        problems.append(
                            (
                                (*where, "id"),
                                f"deployment id {deployment.id!r} names another deployment in "
                                f"{_place(place)}: a provider, model, api_base, "
                                "azure_deployment or region of its own needs an id of its own",
                            )
                        )
                if deployment.api_base == EMBEDDED_SIMULATOR and not self.simulator.enabled:
                    problems.append(
                        (
                            (*where, "api_base"),
                            f"{EMBEDDED_SIMULATOR!r} needs simulator.enabled: true",
                        )
                    )
            problems += [
                (("models", g, "fallbacks", f), f"{fallback!r} is not a {group.kind} model of "
                 "this config")
                for f, fallback in enumerate(group.fallbacks)
                if kinds.get(fallback) != group.kind
            ]  # fmt: skip
        located(self, problems)
        return self
