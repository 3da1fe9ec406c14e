"""The routing table: built once from config, then read-only; a reload builds a new one.

It also holds each group's fallback chain: its ``fallbacks`` followed transitively,
breadth-first in the order written, each group once (a cycle ends where it meets a group
already in the chain), flattened once per table so a request only reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from tollway.config.schema import EMBEDDED_SIMULATOR, DeploymentConfig, ResolvedTimeouts, Settings
from tollway.core.errors import InvalidRequest, NotFound
from tollway.core.types import AwsCredentials, Deployment, UpstreamTimeouts
from tollway.pricing.catalog import PriceCatalog, ToolFees, price_from_row
from tollway.pricing.tokens import exact_encoding
from tollway.providers import BUILTIN_PROVIDERS
from tollway.providers.base import ProviderSpec


@dataclass(frozen=True, slots=True)
class ModelGroup:
    """A client-facing model name, its kind, its deployments (config order) and its policy."""

    name: str
    kind: Literal["chat", "embedding"]
    deployments: tuple[Deployment, ...]
    owned_by: str
    strategy: str = "priority"
    fallbacks: tuple[str, ...] = ()
    retries: int = 0
    hurried: Mapping[str, Deployment] = field(default_factory=dict)
    """With a ``latency_threshold``: each deployment with its first-byte limit lowered to it,
    used for every candidate but the last."""
    deadline: float | None = None
    """Seconds a request may wait for an answer over all its attempts (``None``: no limit)."""


class RoutingTable:
    """Answers which deployments may serve a model name, best first."""

    def __init__(self, groups: Sequence[ModelGroup]) -> None:
        self._groups: Mapping[str, ModelGroup] = {group.name: group for group in groups}
        self._chains: Mapping[str, tuple[ModelGroup, ...]] = {
            group.name: _walk(self._groups, group, None) for group in groups if group.fallbacks
        }

    @property
    def groups(self) -> Sequence[ModelGroup]:
        """Every model group, in config order."""
        return tuple(self._groups.values())

    def candidates(self, model: str, kind: Literal["chat", "embedding"]) -> Sequence[Deployment]:
        """The deployments of ``model`` in config order; unknown or wrong-kind names are
        client errors."""
        return self.group(model, kind).deployments

    def group(self, model: str, kind: Literal["chat", "embedding"]) -> ModelGroup:
        """The group named ``model``; unknown or wrong-kind names are client errors."""
        group = self._groups.get(model)
        if group is None:
            raise NotFound(
                f"The model '{model}' does not exist or you do not have access to it.",
                code="model_not_found",
                param="model",
            )
        if group.kind != kind:
            what = "an embedding" if group.kind == "embedding" else "a chat"
            raise InvalidRequest(
                f"The model '{model}' is {what} model and cannot serve this endpoint.",
                code="model_not_supported",
                param="model",
            )
        return group

    def get(self, model: str) -> ModelGroup | None:
        """The group named ``model``, if any."""
        return self._groups.get(model)

    def fallback_chain(
        self, model: str, may_use: Callable[[str], bool] | None = None
    ) -> tuple[ModelGroup, ...]:
        """The groups ``model`` falls back to, transitively, in the order they are tried.

        ``may_use``: whether the caller may use a group (``None``: every group). A group it
        may not use is left out, and so are the groups reached only through it: its own
        ``fallbacks`` are not followed. The chain made at load serves a caller who may use
        every group in it; only one who may not is walked for.
        """
        chain = self._chains.get(model, ())
        if may_use is None or all(may_use(group.name) for group in chain):
            return chain
        return _walk(self._groups, self._groups[model], may_use)

    def unhurried(self, deployment: Deployment) -> Deployment:
        """The deployment a hurried copy was made from (its own first-byte limit)."""
        group = self._groups.get(deployment.group)
        if group is not None:
            for own in group.deployments:
                if own.id == deployment.id:
                    return own
        return deployment


def _walk(
    groups: Mapping[str, ModelGroup], start: ModelGroup, may_use: Callable[[str], bool] | None
) -> tuple[ModelGroup, ...]:
    """``start``'s fallback groups breadth-first, each once, through those ``may_use`` allows;
    unknown and other-kind names (config validation refuses them) are skipped."""
    seen = {start.name}
    chain: list[ModelGroup] = []
    queue = [start]
    for group in queue:  # grows as it goes: breadth-first
        for name in group.fallbacks:
            fallback = groups.get(name)
            if name in seen or fallback is None or fallback.kind != start.kind:
                continue
            seen.add(name)
            if may_use is not None and not may_use(name):
                continue
            chain.append(fallback)
            queue.append(fallback)
    return tuple(chain)


def build_routing_table(
    settings: Settings, simulator_url: str | None, prices: PriceCatalog | None = None
) -> RoutingTable:
    """Resolve every deployment in ``settings``; ``simulator_url`` is the embedded simulator,
    ``prices`` the catalog that prices deployments without a ``price`` of their own."""
    defaults = settings.upstream.timeouts
    groups = []
    for group in settings.models:
        deployments = tuple(
            _deployment(
                group.name,
                index,
                config,
                simulator_url,
                defaults.merged(config.timeouts),
                prices,
            )
            for index, config in enumerate(group.deployments)
        )
        groups.append(
            ModelGroup(
                group.name,
                group.kind,
                deployments,
                group.owned_by,
                strategy=group.strategy,
                fallbacks=tuple(group.fallbacks),
                retries=group.retries,
                hurried=_hurried(deployments, group.latency_threshold),
                deadline=group.deadline,
            )
        )
    return RoutingTable(groups)


def _hurried(
    deployments: tuple[Deployment, ...], threshold: float | None
) -> Mapping[str, Deployment]:
    if threshold is None:
        return {}
    return {
        d.id: replace(
            d,
            timeouts=replace(d.timeouts, first_byte=threshold, gap=_gap(d.timeouts)),
            hurried=True,
        )
        for d in deployments
        if d.timeouts.first_byte > threshold
    }


def within(deployment: Deployment, left: float, streaming: bool, ends_at: float) -> Deployment:
    """``deployment`` with its limits cut to the ``left`` seconds of a deadline that passes at
    ``ends_at`` (the loop's clock): ``UpstreamTimeouts.within``."""
    return replace(deployment, timeouts=deployment.timeouts.within(left, streaming, ends_at))


def _gap(timeouts: UpstreamTimeouts) -> float:
    """The limit between a stream's events: its own, else the first-byte limit's."""
    return timeouts.first_byte if timeouts.gap is None else timeouts.gap


def _deployment(
    group: str,
    index: int,
    config: DeploymentConfig,
    simulator_url: str | None,
    timeouts: ResolvedTimeouts,
    prices: PriceCatalog | None,
) -> Deployment:
    spec = BUILTIN_PROVIDERS[config.provider]
    listed = prices.lookup(config.provider, config.model) if prices is not None else None
    price = listed
    if config.price is not None:
        # The deployment's own rates replace the catalog's; its context window and output
        # limit are still the model's, which a price in config does not state.
        # Tool fees the config does not name stay the provider's list fees (a negotiated
        # token rate says nothing of them).
        fees = ToolFees() if listed is None else ToolFees(listed.tool_calls, listed.tool_requests)
        price = price_from_row(config.price.model_dump(), "config", fees)
    api_base = config.api_base or (spec.default_api_base or "").format(region=config.region)
    if api_base == EMBEDDED_SIMULATOR:
        if simulator_url is None:
            raise RuntimeError("the embedded simulator is not running")
        api_base = simulator_url + spec.simulator_path
    return Deployment(
        id=config.id or f"{group}#{index}",
        provider=config.provider,
        model=config.model,
        api_base=api_base.rstrip("/"),
        timeouts=UpstreamTimeouts(timeouts.connect, timeouts.first_byte, timeouts.total),
        api_key=config.api_key or config.azure_ad_token,
        bearer_key=config.azure_ad_token is not None,
        api_version=config.api_version,
        azure_deployment=config.azure_deployment,
        headers=tuple(config.headers.items()),
        region=config.region,
        aws_credentials=_aws_credentials(config),
        google_service_account=config.google_service_account,
        bedrock_family=config.bedrock_family,
        group=group,
        weight=config.weight,
        context_window=config.context_window or (listed.context_window if listed else None),
        max_output=config.max_output or (listed.max_output if listed else None),
        price=price,
        tokenizer=config.tokenizer or exact_encoding(config.model, api_base, spec.openai_hosts),
        responses_api=_responses_api(config, spec, api_base),
    )


def _responses_api(config: DeploymentConfig, spec: ProviderSpec, api_base: str) -> bool:
    """Whether the deployment is sent Responses requests as they are: as config says, else
    as its family's default for its ``api_base``."""
    if spec.responses_api is None:
        return False
    if config.responses_api is not None:
        return config.responses_api
    return spec.responses_api(api_base)


def _aws_credentials(config: DeploymentConfig) -> AwsCredentials | None:
    if config.aws_access_key_id is None or config.aws_secret_access_key is None:
        return None
    return AwsCredentials(
        config.aws_access_key_id, config.aws_secret_access_key, config.aws_session_token
    )
