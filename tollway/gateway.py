"""The running gateway: its components, built from settings at start-up and torn down after."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Mapping

import aiohttp

from tollway.auth.authenticator import Authenticator
from tollway.auth.bootstrap import configured_admin_key, ensure_admin, pin_admin_key
from tollway.auth.identity import Identity
from tollway.auth.oidc import OIDCAuthenticator
from tollway.auth.stage import ModelAccess
from tollway.auth.vault import Vault
from tollway.config.schema import Settings
from tollway.core.pipeline import Pipeline
from tollway.dialects.http import HeaderForwarder
from tollway.providers import BUILTIN_PROVIDERS, ChatProvider, EmbeddingProvider, ProviderResources
from tollway.providers.http import UpstreamClient
from tollway.routing.table import build_routing_table
from tollway.simulator import Simulator
from tollway.store import RecordNotFound, Store
from tollway.telemetry.metrics import Metrics, MetricsStage

log = logging.getLogger("tollway")


class Gateway:
    """Owns the upstream session, the embedded simulator and the current pipeline."""

    def __init__(self, settings: Settings, environ: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.environ = os.environ if environ is None else environ
        self.vault = Vault(self.environ)
        self.store = Store(settings.store.url)
        self.identity = Identity(self.store)
        self.authenticator = Authenticator(
            self.identity.keys,
            anonymous_models=settings.auth.anonymous_models,
            is_blocked=self.identity.is_blocked,
        )
        self.max_body_size = int(settings.server.max_body_size)
        self.started_at = int(time.time())
        self.forwarder = HeaderForwarder(settings.upstream.forward_headers)
        self.ready = False
        self.simulator: Simulator | None = None
        self._session: aiohttp.ClientSession | None = None
        self._pipeline: Pipeline | None = None
        self._reconciler: asyncio.Task[None] | None = None
        metrics = settings.telemetry.metrics
        self.metrics = Metrics(metrics.per_key_labels) if metrics.enabled else None

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline requests run through now."""
        assert self._pipeline is not None, "the gateway has not started"
        return self._pipeline

    async def start(self) -> None:
        """Open the store, load identities, start the simulator (if enabled), open the
        upstream pool and build the pipeline."""
        await self.store.open(migrate=self.settings.store.migrate)
        await self._load_identities()
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
            auto_decompress=True,
        )
        if self.settings.auth.oidc:
            self.authenticator.tokens = OIDCAuthenticator(self.settings.auth.oidc, self._session)
        self._pipeline = self._build_pipeline(simulator_url)
        self._reconciler = asyncio.create_task(self._reconcile(), name="tollway-reconcile")
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
        # Telemetry first: its on_complete runs last, after later stages have settled cost.
        telemetry = (MetricsStage(self.metrics),) if self.metrics is not None else ()
        return Pipeline(routing, chat, embedding, stages=(*telemetry, ModelAccess()))

    async def _load_identities(self) -> None:
        await self.identity.load()
        for credential in await self.store.credentials.find():
            self.vault.set_stored(
                credential.name, await self.store.credentials.reveal(credential.name)
            )
        configured = self.settings.auth.admin_key
        admin_key = configured_admin_key(
            self.vault.reveal(configured) if configured else None, self.environ
        )
        if admin_key:
            pin_admin_key(self.identity, admin_key)
            return
        created = await ensure_admin(self.identity)
        if created:
            # Shown once, on the terminal only: never through logging, which may be shipped.
            print(
                f"\nTollway created the first admin key. Store it now; it is not shown again:"
                f"\n\n    {created}\n\nCreate keys with: TOLLWAY_ADMIN_KEY=<that key> "
                f"tollway keys create --name my-app\n",
                file=sys.stderr,
                flush=True,
            )

    async def credentials_changed(self, name: str) -> None:
        """Reload one vault credential after the admin API changed it."""
        try:
            self.vault.set_stored(name, await self.store.credentials.reveal(name))
        except RecordNotFound:
            self.vault.set_stored(name, None)

    def _warn_missing_credentials(self) -> None:
        deployments = [d for group in self.settings.models for d in group.deployments]
        refs = [ref for deployment in deployments for ref in deployment.secret_refs()]
        for missing in self.vault.missing(refs):
            log.warning("credential %s cannot be resolved; its deployments will fail", missing)

    async def _reconcile(self) -> None:
        interval = self.settings.auth.reconcile_interval
        while True:
            await asyncio.sleep(interval)
            try:
                await self.identity.load()
            except Exception:  # a store outage must not end reconciling; the next try may work
                log.warning("reloading identities from the store failed", exc_info=True)

    async def close(self) -> None:
        """Close the upstream pool and stop the simulator."""
        self.ready = False
        if self._reconciler is not None:
            self._reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconciler
        if self._session is not None:
            await self._session.close()
        if self.simulator is not None:
            await self.simulator.stop()
        await self.store.close()
