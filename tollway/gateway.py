"""The running gateway: its components, built from settings at start-up and torn down after."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping

import aiohttp

from tollway.auth.vault import Vault
from tollway.config.schema import Settings
from tollway.core.pipeline import Pipeline
from tollway.dialects.http import HeaderForwarder
from tollway.providers import BUILTIN_PROVIDERS, ChatProvider, EmbeddingProvider, ProviderResources
from tollway.providers.http import UpstreamClient
from tollway.routing.table import build_routing_table
from tollway.simulator import Simulator

log = logging.getLogger("tollway")


class Gateway:
    """Owns the upstream session, the embedded simulator and the current pipeline."""

    def __init__(self, settings: Settings, environ: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.vault = Vault(os.environ if environ is None else environ)
        self.max_body_size = int(settings.server.max_body_size)
        self.started_at = int(time.time())
        self.forwarder = HeaderForwarder(settings.upstream.forward_headers)
        self.ready = False
        self.simulator: Simulator | None = None
        self._session: aiohttp.ClientSession | None = None
        self._pipeline: Pipeline | None = None

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline requests run through now."""
        assert self._pipeline is not None, "the gateway has not started"
        return self._pipeline

    async def start(self) -> None:
        """Start the simulator (if enabled), open the upstream pool and build the pipeline."""
        simulator_url = None
        if self.settings.simulator.enabled:
            self.simulator = Simulator(self.settings.simulator.settings)
            simulator_url = await self.simulator.start("127.0.0.1", 0)
        upstream = self.settings.upstream
        connector = aiohttp.TCPConnector(
            limit=upstream.max_connections,
            limit_per_host=upstream.max_connections_per_host,
            keepalive_timeout=upstream.keepalive,
            enable_cleanup_closed=True,
        )
        # No client-wide timeout: every call passes the timeouts of its deployment. No cookie
        # jar: upstream cookies must never carry state from one client's request to another's.
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None),
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent",),
            auto_decompress=True,
        )
        self._pipeline = self._build_pipeline(simulator_url)
        self._warn_missing_credentials()
        self.ready = True

    def _build_pipeline(self, simulator_url: str | None) -> Pipeline:
        assert self._session is not None
        resources = ProviderResources(client=UpstreamClient(self._session), vault=self.vault)
        used = {d.provider for group in self.settings.models for d in group.deployments}
        built = {name: BUILTIN_PROVIDERS[name].build(resources) for name in sorted(used)}
        chat = {name: p for name, p in built.items() if isinstance(p, ChatProvider)}
        embedding = {name: p for name, p in built.items() if isinstance(p, EmbeddingProvider)}
        routing = build_routing_table(self.settings, simulator_url)
        return Pipeline(routing, chat, embedding, stages=())

    def _warn_missing_credentials(self) -> None:
        refs = [
            d.api_key
            for group in self.settings.models
            for d in group.deployments
            if d.api_key is not None
        ]
        for missing in self.vault.missing(refs):
            log.warning("credential %s cannot be resolved; its deployments will fail", missing)

    async def close(self) -> None:
        """Close the upstream pool and stop the simulator."""
        self.ready = False
        if self._session is not None:
            await self._session.close()
        if self.simulator is not None:
            await self.simulator.stop()
