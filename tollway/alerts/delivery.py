"""Delivery of alerts to webhooks, in background tasks on one shared HTTP session.

``send`` never waits: it starts one task per webhook that takes the alert's kind (at most
``MAX_PENDING`` at once; past that an alert is dropped and counted as failed). A task
resolves the webhook's URL through the vault at that moment (a rotated ``file:`` secret is
picked up), POSTs the rendered body, and retries a connection error, a timeout, a 429 or a
5xx up to ``retries`` more times, waiting ``retry_backoff`` and doubling. Any other answer
(a 4xx: the URL is wrong or revoked) fails at once, and so does a redirect (3xx), which is
never followed: the alert would go wherever it points.

A webhook URL is a secret (Slack's carries its token in the path): it is never logged.
Failures are logged with the webhook's name, the alert's kind and dedup key, and only the
error's type or the HTTP status, never an exception's text (aiohttp's names the URL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from tollway.alerts.alert import Alert
from tollway.alerts.payloads import render
from tollway.auth.vault import MissingCredential, Vault
from tollway.config.schema import AlertKind, AlertsConfig
from tollway.config.types import SecretRef

_ANSWER_READ = 64 * 1024
"""Bytes of a receiver's answer read before its connection is let go."""

log = logging.getLogger("tollway.alerts")

MAX_PENDING = 1000
"""Deliveries in flight (with their retries) at once; further alerts are dropped."""


@dataclass(frozen=True, slots=True)
class Webhook:
    """A configured webhook, with its default name filled in."""

    name: str
    url: SecretRef
    format: str
    kinds: frozenset[AlertKind]


def webhooks_of(config: AlertsConfig) -> tuple[Webhook, ...]:
    """The configured webhooks; unnamed ones are ``webhook-1``, ``webhook-2``, ..."""
    return tuple(
        Webhook(hook.name or f"webhook-{index}", hook.url, hook.format, frozenset(hook.kinds))
        for index, hook in enumerate(config.webhooks, 1)
    )


class Delivery:
    """Posts alerts to the webhooks that take them, with retries, never blocking a caller."""

    def __init__(
        self,
        config: AlertsConfig,
        vault: Vault,
        on_failure: Callable[[str], None] = lambda name: None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``on_failure`` is called with a webhook's name for every delivery that failed
        for good; ``sleep`` waits between retries (tests may pass a faster one)."""
        self.config = config
        self.webhooks = webhooks_of(config)
        self._vault = vault
        self._on_failure = on_failure
        self._sleep = sleep
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[bool]] = set()
        self._closing = False

    async def start(self) -> None:
        """Open the shared HTTP session."""
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=16),
            timeout=aiohttp.ClientTimeout(total=self.config.timeout),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    def missing_urls(self) -> list[str]:
        """Names of webhooks whose URL reference cannot be resolved now."""
        return [hook.name for hook in self.webhooks if self._vault.missing([hook.url])]

    def send(self, alert: Alert) -> None:
        """Start delivering ``alert`` to every webhook that takes its kind."""
        for hook in self.webhooks:
            if alert.kind not in hook.kinds:
                continue
            running = self._session is not None and not self._closing
            if not running or len(self._tasks) >= MAX_PENDING:
                log.warning(
                    "alert %s (%s) dropped for webhook %s: %s",
                    alert.kind, alert.dedup_key, hook.name,
                    "too many pending" if running else "delivery is not running",
                )  # fmt: skip
                self._on_failure(hook.name)
                continue
            task = asyncio.create_task(self._guarded(hook, alert), name="tollway-alert")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def pending(self) -> int:
        """Deliveries in flight now."""
        return len(self._tasks)

    async def _guarded(self, hook: Webhook, alert: Alert) -> bool:
        """``deliver``, with anything unexpected logged (no traceback: it may hold the URL)
        and counted instead of left in the task."""
        try:
            return await self.deliver(hook, alert)
        except Exception as exc:
            log.error(
                "alert %s (%s) not delivered to webhook %s: %s",
                alert.kind, alert.dedup_key, hook.name, type(exc).__name__,
            )  # fmt: skip
            self._on_failure(hook.name)
            return False

    async def deliver(self, hook: Webhook, alert: Alert) -> bool:
        """Post ``alert`` to ``hook`` with retries; whether it was delivered."""
        try:
            url = self._vault.reveal(hook.url)
        except MissingCredential:
            log.warning(
                "alert %s (%s) not delivered to webhook %s: its url %s cannot be resolved",
                alert.kind, alert.dedup_key, hook.name, hook.url.redacted(),
            )  # fmt: skip
            self._on_failure(hook.name)
            return False
        body = render(alert, hook.format)
        tries = self.config.retries + 1
        reason = ""
        for attempt in range(tries):
            if attempt:
                await self._sleep(self.config.retry_backoff * 2 ** (attempt - 1))
            reason, retryable = await self._post(url, body)
            if not reason:
                return True
            if not retryable:
                break
            if attempt + 1 < tries:
                log.info("alert delivery to webhook %s failed (%s), retrying", hook.name, reason)
        log.warning(
            "alert %s %s (%s) not delivered to webhook %s after %d attempt(s): %s",
            alert.kind, alert.status, alert.dedup_key, hook.name, attempt + 1, reason,
        )  # fmt: skip
        self._on_failure(hook.name)
        return False

    async def _post(self, url: str, body: bytes) -> tuple[str, bool]:
        """``("", _)`` when delivered; else why (never the URL) and whether to retry."""
        assert self._session is not None
        headers = {"content-type": "application/json"}
        try:
            # A redirect is never followed: it would send the alert (spend, keys' names) to
            # wherever the answer points, and the webhook's own URL is checked, not that one.
            async with self._session.post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                # Its status is the answer; of the body only a little is read (a receiver that
                # streamed without end held the delivery until its timeout, and the memory).
                await response.content.read(_ANSWER_READ)
                status = response.status
        except TimeoutError:
            return "timed out", True
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            # Only the type: aiohttp's messages name the host and, for a bad URL, all of it.
            return type(exc).__name__, True
        if status < 300:
            return "", False
        if status < 400:
            # Only the status: the Location may carry a token, like the webhook's own URL.
            return f"HTTP {status}, a redirect (not followed)", False
        return f"HTTP {status}", status == 429 or status >= 500

    async def close(self) -> None:
        """Give deliveries in flight up to ``timeout`` to finish, then stop them."""
        self._closing = True
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=self.config.timeout)
            for task in late:
                task.cancel()
            for task in late:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._session is not None:
            await self._session.close()
            self._session = None
