"""The running gateway: its components, built from settings at start-up and torn down after."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
from sqlalchemy.exc import SQLAlchemyError

from tollway.admin.denials import AdminDenials
from tollway.alerts import AlertManager
from tollway.auth.authenticator import Authenticator
from tollway.auth.bootstrap import (
    BootstrapError,
    configured_admin_key,
    ensure_admin,
    pin_admin_key,
)
from tollway.auth.identity import Identity
from tollway.auth.key_use import KeyUse
from tollway.auth.miss_limit import UnknownKeyLimit
from tollway.auth.oidc import OIDCAuthenticator
from tollway.auth.provisioning import Provisioner
from tollway.auth.stage import ModelAccess
from tollway.auth.vault import MissingCredential, Vault
from tollway.config.loader import (
    ConfigError,
    load_settings,
    settings_version,
    with_environment,
)
from tollway.config.reloads import SYSTEM_ACTOR, Trigger, reload_event
from tollway.config.schema import Settings
from tollway.core.errors import GatewayError, StoreUnavailable
from tollway.core.pipeline import Pipeline, Stage
from tollway.dialects.client_address import TrustedProxies
from tollway.dialects.http import HeaderForwarder, RequestIds
from tollway.fleet import Fleet, first_line
from tollway.limits.backend import LimiterUnavailable, make_limiter
from tollway.limits.candidates import unpriced_warnings
from tollway.limits.refusals import limiter_down
from tollway.limits.service import LimitService, reason
from tollway.limits.stage import Admission
from tollway.pricing.catalog import PriceCatalog
from tollway.pricing.metering import Metering
from tollway.pricing.tokens import TokenCounter
from tollway.providers import BUILTIN_PROVIDERS, ChatProvider, EmbeddingProvider, ProviderResources
from tollway.providers.http import UpstreamClient
from tollway.providers.http1 import HTTP1Client
from tollway.routing.health import HealthBook
from tollway.routing.router import Router
from tollway.routing.table import build_routing_table
from tollway.simulator import Simulator
from tollway.store import AuditEntry, Store, StoreBusy, StoreError
from tollway.store.engine import redacted, store_url
from tollway.telemetry.metrics import Metrics, MetricsStage
from tollway.telemetry.refusals import RefusalLog
from tollway.telemetry.request_log import RequestLogWriter
from tollway.telemetry.request_log_stage import BodyCapturingStage, RequestLogStage
from tollway.telemetry.spool import default_spool_dir

if TYPE_CHECKING:  # OpenTelemetry is an optional extra, imported only when tracing is on
    from opentelemetry.sdk.trace.export import SpanExporter

    from tollway.telemetry.tracing import Tracing

log = logging.getLogger("tollway")
_CIRCUIT_GAUGE = {"closed": 0, "half_open": 1, "open": 2}


def _modified(path: Path) -> tuple[int, int] | None:
    """The file's modification time and size, or None when it cannot be read now."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _deployment_ids(pipeline: Pipeline) -> frozenset[str]:
    """The ids of every deployment ``pipeline`` routes to."""
    groups = pipeline.router.table.groups
    return frozenset(deployment.id for group in groups for deployment in group.deployments)


class Gateway:
    """Owns the upstream session, the embedded simulator and the current pipeline."""

    def __init__(
        self,
        settings: Settings,
        environ: Mapping[str, str] | None = None,
        config_path: Path | None = None,
        *,
        listen: tuple[str, int] | None = None,
        span_exporter: SpanExporter | None = None,
    ) -> None:
        """``listen`` is where the process listens when that is not ``settings.server``'s
        address (``--host``, ``--port``, the port 0 got); ``span_exporter`` replaces the OTLP
        exporter when tracing is on (tests)."""
        self.settings = settings
        """The config as the file (or the embedded default) says it: a reload compares its
        sections with the reloaded file's."""
        self.listen = listen or (settings.server.host, settings.server.port)
        """The address and port this process listens on."""
        self.config_path = config_path
        self.environ = os.environ if environ is None else environ
        self.vault = Vault(self.environ, settings.upstream.file_secret_recheck)
        self.store = Store(
            settings.store.url,
            connect_timeout=settings.store.connect_timeout,
            busy_timeout=settings.store.busy_timeout,
        )
        lookups = settings.auth.unknown_key_lookups_per_second
        self.unknown_keys = (
            UnknownKeyLimit(lookups, settings.auth.unknown_key_lookups_burst)
            if lookups is not None
            else None
        )
        self.identity = Identity(self.store, miss_limit=self.unknown_keys)
        self.key_use = KeyUse(self.store, settings.auth.last_used_interval)
        self.config_version = settings_version(settings)
        """A fingerprint of the config this replica runs (replicas should agree)."""
        self.authenticator = Authenticator(
            self.identity.keys,
            anonymous_models=settings.auth.anonymous_models,
            is_blocked=self.identity.is_blocked,
            on_key_use=self.key_use.note,
        )
        self.max_body_size = int(settings.server.max_body_size)
        proxies = settings.server.trusted_proxies
        self.proxies = TrustedProxies(proxies) if proxies else None
        """Whose ``X-Forwarded-For`` names the client (``client_address``); None: no one's."""
        self.started_at = int(time.time())
        self.forwarder = HeaderForwarder(settings.upstream.forward_headers)
        self.request_ids = RequestIds()
        metrics = settings.telemetry.metrics
        self.metrics = Metrics(metrics.per_key_labels) if metrics.enabled else None
        if self.metrics is not None:
            self.metrics.set_config_version(self.config_version)
        self.request_log = self._request_log_writer(settings)
        self.refusals = self._refusal_log(settings)
        self.admin_denials = AdminDenials(self.record_later, settings.auth.admin_denials_per_second)
        if self.metrics is not None:
            self.metrics.watch_admin_denials(self.admin_denials.buckets)
            if self.unknown_keys is not None:
                self.metrics.watch_unknown_keys(self.unknown_keys)
        self.health = HealthBook(settings.routing, on_circuit=self._circuit_changed)
        self.prices = PriceCatalog.load()
        self.metering = Metering(TokenCounter())
        # Buckets and budgets outlive config reloads: a reload must not refill anyone's limits.
        self.limits = LimitService(
            settings.limits, make_limiter(settings.limits, self.vault, self.store), self.store
        )
        if self.metrics is not None:
            self.limits.utilisation = self.metrics.set_budget_utilisation
            self.limits.budgets_kept = self.metrics.keep_budgets
        self.fleet = Fleet(
            self.store, self.identity, self.limits, self.vault,
            reload_config=lambda: self.reload_on("replica"),
            reconcile_interval=settings.auth.reconcile_interval,
        )  # fmt: skip
        # Alerts only when a webhook is configured; budget crossings come from the limits.
        self.alerts = AlertManager.build(settings.alerts, self.vault, self.metrics)
        if self.alerts is not None:
            self.limits.listeners.append(self.alerts.on_budget_event)
        self.ready = False
        self.simulator: Simulator | None = None
        self.tracing: Tracing | None = None
        self._span_exporter = span_exporter
        self._session: aiohttp.ClientSession | None = None
        self._upstream: UpstreamClient | None = None
        self._pipelines: tuple[Pipeline, Pipeline] | None = None
        """Without the admission stage and with it (see ``pipeline``)."""
        self._watcher: asyncio.Task[None] | None = None
        self._recording: set[asyncio.Task[None]] = set()
        self._simulator_url: str | None = None

    def _request_log_writer(self, settings: Settings) -> RequestLogWriter | None:
        config = settings.telemetry.request_log
        if not config.enabled:
            return None
        spool = config.spool_dir
        where = redacted(store_url(settings.store.url))
        writer = RequestLogWriter(
            self.store, config, Path(spool) if spool else default_spool_dir(where)
        )
        if self.metrics is not None:
            self.metrics.watch_request_log(writer)
        return writer

    def _refusal_log(self, settings: Settings) -> RefusalLog | None:
        """Requests refused before the pipeline, into the request log at a bounded rate."""
        if self.request_log is None:
            return None
        refusals = RefusalLog(
            self.request_log.put_nowait, settings.telemetry.request_log.refusals_per_second
        )
        if self.metrics is not None:
            self.metrics.watch_refusals(refusals)
        return refusals

    def _request_log_stage(self) -> tuple[Stage, ...]:
        if self.request_log is None:
            return ()
        bodies = self.settings.telemetry.request_log.bodies
        put = self.request_log.put_nowait
        if bodies.enabled:
            return (BodyCapturingStage(put, None),)
        if bodies.teams:
            return (BodyCapturingStage(put, bodies.teams),)
        return (RequestLogStage(put),)

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline requests run through now: without the admission stage while no rate
        limit or budget is in force (its five hooks would find nothing to do, on every
        request), with it from the moment the limits' book has something to enforce."""
        pipelines = self._pipelines
        assert pipelines is not None, "the gateway has not started"
        return pipelines[0] if self.limits.book.empty else pipelines[1]

    async def start(self) -> None:
        """Open the store, load identities, start the simulator (if enabled), open the
        upstream pool and build the pipeline; a start that fails part way releases what it
        opened."""
        try:
            await self._start()
        except BaseException:
            await self._release_failed_start()
            raise

    async def _release_failed_start(self) -> None:
        # aiohttp runs no cleanup for a start that raised: left open, an HTTP session
        # was reported unclosed ("Unclosed client session", an error in the log) under the
        # one line saying why the gateway did not start, and the store kept its connections.
        await self.fleet.close()
        if self.request_log is not None:
            await self.request_log.close()
        if self._upstream is not None:
            await self._upstream.close()
        if self._session is not None:
            await self._session.close()
        if self.simulator is not None:
            await self.simulator.stop()
        await self.store.close()

    async def _start(self) -> None:
        await self.store.open(migrate=self.settings.store.migrate)
        await self._load_identities()
        await self.limits.load()
        if self.request_log is not None:
            await self.request_log.start()
        simulator_url = None
        if self.settings.simulator.enabled:
            self.simulator = Simulator(self.settings.simulator.settings)
            simulator_url = await self.simulator.start("127.0.0.1", 0)
        upstream = self.settings.upstream
        self._upstream = UpstreamClient(
            HTTP1Client(
                max_connections=upstream.max_connections,
                max_connections_per_host=upstream.max_connections_per_host,
                keepalive=upstream.keepalive,
            )
        )
        if self.settings.auth.oidc:
            # The identity provider's own calls (discovery, keys). No client-wide timeout:
            # each call passes its own. No cookie jar: no state is carried between calls.
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None), cookie_jar=aiohttp.DummyCookieJar()
            )
            self.authenticator.tokens = OIDCAuthenticator(
                self.settings.auth.oidc, self._session, provisioner=Provisioner(self.identity)
            )
        self._simulator_url = simulator_url
        if self.settings.telemetry.tracing.enabled:
            self.tracing = _start_tracing(self.settings, self.vault, self._span_exporter)
        self._pipelines = self._build_pipelines(self.settings)
        if self.metrics is not None:
            self.metrics.keep_circuits(_deployment_ids(self._pipelines[0]))
        self.fleet.start()
        self.limits.start()
        self.key_use.start()
        if self.alerts is not None:
            await self.alerts.start()
        if self.config_path is not None and self.settings.server.reload_interval:
            self._watcher = asyncio.create_task(self._watch_config(), name="tollway-config")
        self._warn_missing_credentials()
        log.info("replica %s runs config version %s", self.fleet.replica, self.config_version)
        self.ready = True

    def _circuit_changed(self, deployment_id: str, state: str) -> None:
        if self.metrics is not None:
            self.metrics.set_circuit_state(deployment_id, _CIRCUIT_GAUGE[state])

    def _build_pipelines(self, settings: Settings) -> tuple[Pipeline, Pipeline]:
        """The pipeline without admission and the one with it, on one router and one set of
        stages (stages keep no per-request state, so the two share them)."""
        assert self._upstream is not None
        resources = ProviderResources(client=self._upstream, vault=self.vault)
        used = {d.provider for group in settings.models for d in group.deployments}
        built = {name: BUILTIN_PROVIDERS[name].build(resources) for name in sorted(used)}
        chat = {name: p for name, p in built.items() if isinstance(p, ChatProvider)}
        embedding = {name: p for name, p in built.items() if isinstance(p, EmbeddingProvider)}
        table = build_routing_table(settings, self._simulator_url, self.prices)
        for group in table.groups:
            for deployment in group.deployments:
                if deployment.price is None:
                    # A warning: budgets cannot bound what costs nothing (docs/pricing.md).
                    log.warning(
                        "deployment %s (%s %s) has no price in config or the catalog %s: its "
                        "requests count as costing nothing against every budget; give it a "
                        "price (0 for a model that really is free, e.g. self-hosted)",
                        deployment.id, deployment.provider, deployment.model, self.prices.version,
                    )  # fmt: skip
        if settings.limits.unpriced == "refuse":
            for warning in unpriced_warnings(table):
                log.warning("%s", warning)
        router = Router(table, self.health, counter=self.metering.counter, config=settings.routing)

        # Telemetry first: its on_complete runs last, after the others have settled.
        telemetry: tuple[Stage, ...] = (
            (MetricsStage(self.metrics, table.get),) if self.metrics is not None else ()
        )
        telemetry += self._request_log_stage()
        # Tracing next: its on_complete too runs after admission has settled the cost.
        if self.tracing is not None:
            telemetry += (self.tracing.stage(table),)
        # Alerts next: their on_complete also sees the settled cost and every attempt.
        alerting = self.alerts.stage() if self.alerts is not None else None
        alerts = (alerting,) if alerting is not None else ()
        stages: tuple[Stage, ...] = (*telemetry, *alerts, ModelAccess())
        # Admission is built always: budgets and limits set through the admin API (or read by
        # a reconcile) apply from the next request, which ``pipeline`` then gives this one.
        admission = Admission(self.limits, table, self.metering.input_tokens)
        return (
            Pipeline(router, chat, embedding, stages=stages, metering=self.metering),
            Pipeline(router, chat, embedding, stages=(*stages, admission), metering=self.metering),
        )

    def reload(self) -> bool:
        """Read the config file again and swap in its model groups and routing settings.

        Requests in flight finish on the pipeline they started with; deployment health
        carries over by deployment id. A config that does not load or build is refused with
        one log line and the running one stays. ``limits`` applies too (but a different limiter
        backend needs a restart); other sections need a restart.
        """
        if self.config_path is None:
            log.warning("reload asked, but the gateway runs on the embedded default config")
            return False
        try:
            settings = with_environment(load_settings(self.config_path), self.environ)
            pipelines = self._build_pipelines(settings)
            # The last step that can fail, and it changes nothing unless it succeeds: nothing
            # below it can leave the gateway half on one config and half on the other.
            self.limits.reconfigure(settings.limits)
        except (ConfigError, ValueError, RuntimeError) as exc:
            # One line (log collectors split on newlines): the problems joined with "; ", the
            # heading ("FILE: 2 problem(s):") followed by its first problem, not by ":;".
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            problems = "; ".join(lines).replace(":; ", ": ")
            log.error("config reload refused, the running model groups stay: %s", problems)
            return False
        except Exception as exc:
            # Not a problem the config check names: one line all the same (its type and first
            # line, a URL's password masked), the traceback at debug; the running config and
            # the file watch stay.
            log.error("config reload failed, the running config stays: %s", reason(exc))
            log.debug("the failed config reload", exc_info=True)
            return False
        later = [
            name
            for name in ("server", "upstream", "simulator", "auth", "store", "alerts", "telemetry")
            if getattr(settings, name) != getattr(self.settings, name)
        ]
        if later:
            log.warning("config sections %s changed: they apply at restart", ", ".join(later))
        self.settings = self.settings.model_copy(
            update={
                "models": settings.models,
                "routing": settings.routing,
                "limits": self.limits.config,  # the file's, but the backend it runs on
            }
        )
        self.health.config = settings.routing
        self._pipelines = pipelines
        deployments = _deployment_ids(pipelines[0])
        if self.alerts is not None:
            self.alerts.keep_deployments(deployments)
        if self.metrics is not None:
            self.metrics.keep_circuits(deployments)
        self._warn_missing_credentials()
        self.config_version = settings_version(self.settings)
        if self.metrics is not None:
            self.metrics.set_config_version(self.config_version)
        log.info(
            "config reloaded: %d model groups (config version %s)",
            len(settings.models), self.config_version,
        )  # fmt: skip
        return True

    def reload_event(self, trigger: Trigger, before: str, reloaded: bool) -> AuditEntry:
        """The audit event of a reload from config version ``before`` (actor: ``system``)."""
        action, details = reload_event(
            trigger, reloaded=reloaded, before=before, after=self.config_version,
            models=len(self.settings.models), replica=self.fleet.replica,
        )  # fmt: skip
        return AuditEntry(SYSTEM_ACTOR, action, "config", self.config_version, details)

    def reload_on(self, trigger: Trigger) -> bool:
        """``reload`` for a reason no admin gave through the API, recorded in the audit
        trail (written in the background: SIGHUP and the file watch cannot wait)."""
        before = self.config_version
        reloaded = self.reload()
        self.record_later(self.reload_event(trigger, before, reloaded))
        return reloaded

    def record_later(self, event: AuditEntry) -> None:
        """Append ``event`` to the audit trail in the background (``close`` waits for it);
        a failure is a warning, never the caller's."""
        task = asyncio.get_running_loop().create_task(self._record(event))
        self._recording.add(task)
        task.add_done_callback(self._recording.discard)

    async def _record(self, event: AuditEntry) -> None:
        try:
            await self.store.audit.append(event)
        except Exception as exc:  # the reload stands; the log keeps it
            log.warning("the audit trail missed %s: %s", event.action, first_line(exc))

    async def _watch_config(self) -> None:
        assert self.config_path is not None
        seen = _modified(self.config_path)
        while True:
            await asyncio.sleep(self.settings.server.reload_interval or 2.0)
            current = _modified(self.config_path)
            if current != seen:
                seen = current
                try:
                    self.reload_on("file_change")
                except Exception as exc:  # reload logs its own; this keeps the watch alive
                    log.error("config reload failed, the file watch goes on: %s", reason(exc))
                    log.debug("the failed config reload", exc_info=True)

    async def _load_identities(self) -> None:
        await self.identity.load()
        await self.fleet.load_credentials(at_start=True)
        configured = self.settings.auth.admin_key
        try:
            revealed = self.vault.reveal(configured) if configured else None
        except MissingCredential as exc:
            raise BootstrapError(f"auth.admin_key: {exc}") from None
        admin_key = configured_admin_key(revealed, self.environ)
        if admin_key:
            pin_admin_key(self.identity, admin_key)
            return
        created = await ensure_admin(self.identity)
        if created:
            host, port = self.listen
            host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
            url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
            # Shown once, on the terminal only: never through logging, which may be shipped.
            print(
                f"\nTollway created the first admin key. Store it now; it is not shown again:"
                f"\n\n    {created}\n\nCreate keys with: TOLLWAY_URL={url} "
                f"TOLLWAY_ADMIN_KEY=<that key> tollway keys create --name my-app\n",
                file=sys.stderr,
                flush=True,
            )

    async def outage(self, exc: BaseException) -> GatewayError | None:
        """The answer when ``exc`` came of a shared service being down rather than a fault:
        503 ``limiter_unavailable`` (Redis), ``store_busy`` (other writes kept a store write
        past its busy timeout) or ``store_unavailable`` (the store does not answer a ping
        now); None for anything else, which stays a 500 with its traceback logged."""
        if isinstance(exc, LimiterUnavailable):
            return limiter_down()
        if isinstance(exc, StoreBusy):  # reachable, but other writes kept this one waiting
            return StoreUnavailable(
                "The gateway's store is busy with other writes; nothing was changed. Retry "
                "shortly.",
                code="store_busy",
            )
        store_failure = isinstance(exc, (SQLAlchemyError, StoreError, OSError, TimeoutError))
        if store_failure and not await self.store.reachable():
            log.warning("the store is unreachable: %s", first_line(exc))
            return StoreUnavailable(
                "The gateway's store is unreachable, so this cannot be answered now; "
                "model requests with known keys still work. Retry shortly."
            )
        return None

    def _warn_missing_credentials(self) -> None:
        deployments = [d for group in self.settings.models for d in group.deployments]
        refs = [ref for deployment in deployments for ref in deployment.secret_refs()]
        for missing in self.vault.missing(refs):
            log.warning("credential %s cannot be resolved; its deployments will fail", missing)

    async def close(self) -> None:
        """Write out the request log, close the upstream pool and stop the simulator."""
        self.ready = False
        # The request log's last writes start first (the requests are over) and run beside
        # the rest: what else closes may wait on a store that stopped answering (the spend's
        # last write does, for connect_timeout), and a process manager's SIGKILL would then
        # take the log's queue with it; nor does the spend's last write wait for the log.
        log_closed = None
        if self.request_log is not None:
            log_closed = asyncio.ensure_future(self.request_log.close())
        await self.fleet.close()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await asyncio.gather(*self._recording)  # audit events in writing, before the store
        if self._upstream is not None:
            await self._upstream.close()
        if self._session is not None:
            await self._session.close()
        if self.simulator is not None:
            await self.simulator.stop()
        await self.limits.close()
        await self.key_use.close()  # the last uses, before the store closes
        if self.alerts is not None:
            await self.alerts.close()
        if log_closed is not None:
            await log_closed
        await self.store.close()
        if self.tracing is not None:
            await self.tracing.close()


class StartFailure(Exception):
    """The gateway cannot start as configured; the message says why, in one line."""


def _start_tracing(settings: Settings, vault: Vault, exporter: SpanExporter | None) -> Tracing:
    """The process's tracer provider; the config check already found the packages, this
    says the same should they have gone since."""
    try:
        from tollway.telemetry.tracing import Tracing
    except ImportError as exc:
        raise StartFailure(
            f"telemetry.tracing.enabled needs `pip install 'tollway[otel]'`: {exc}"
        ) from None
    try:
        return Tracing(settings.telemetry.tracing, vault, exporter)
    except MissingCredential as exc:
        raise StartFailure(f"telemetry.tracing.headers: {exc}") from None
