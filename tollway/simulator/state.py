"""The state one simulator instance shares between its handlers.

Settings, the request log, the callers that left before their answer was complete, the fault
PRNG, id generation, the embedding cache and the Responses API's stored responses all hang off
a ``SimulatorState`` so several simulators can run in one process without sharing anything.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from tollway.simulator.embeddings import EmbeddingCache
from tollway.simulator.faults import Fault, parse_fault
from tollway.simulator.settings import RecordedRequest, SimulatorSettings

MAX_RECORDED = 200
MAX_STORED_RESPONSES = 1000
MAX_STORED_ITEMS = 4000

_RawRecord = tuple[str, str, Mapping[str, str], Mapping[str, str], Any]


class SimulatorState:
    """Settings, request log, fault PRNG, ids and caches of one simulator."""

    def __init__(self, settings: SimulatorSettings | None = None) -> None:
        self._settings = settings or SimulatorSettings()
        # Raw (method, path, query, headers, body): converting to RecordedRequest only when the
        # log is read keeps the per-request cost to one tuple.
        self._log: deque[_RawRecord] = deque(maxlen=MAX_RECORDED)
        self._departures: deque[dict[str, Any]] = deque(maxlen=MAX_RECORDED)
        self.embeddings = EmbeddingCache()
        # Set while the server stops, so hung requests give up at once instead of at timeout.
        self.stopping = asyncio.Event()
        self._rng = random.Random(self._settings.seed)
        self._ids = itertools.count(1)
        self._run = secrets.token_hex(4)
        # Responses API ids a later request may continue (``previous_response_id``), with the
        # tokens of their whole context; the oldest are forgotten first.
        self._responses: OrderedDict[str, int] = OrderedDict()
        # Output item ids of stored responses: a later request may send the items back by id
        # alone (a reasoning item without its ``encrypted_content``); the oldest are forgotten.
        self._items: OrderedDict[str, None] = OrderedDict()

    @property
    def settings(self) -> SimulatorSettings:
        """The settings in force."""
        return self._settings

    @settings.setter
    def settings(self, value: SimulatorSettings) -> None:
        self._settings = value
        self._rng = random.Random(value.seed)

    def configure(self, **changes: object) -> SimulatorSettings:
        """Replace some settings (validated as a whole) and restart the fault PRNG."""
        merged = {**self._settings.model_dump(), **changes}
        self.settings = SimulatorSettings.model_validate(merged)
        return self._settings

    def new_id(self, prefix: str) -> str:
        """A unique id such as ``chatcmpl-…``, ``msg_…``, ``toolu_…`` or ``call_…``."""
        return f"{prefix}{self._run}{next(self._ids):012x}"

    def store_response(self, response_id: str, context_tokens: int) -> None:
        """Keep a stored Responses API response: a later request may continue it."""
        self._responses[response_id] = context_tokens
        if len(self._responses) > MAX_STORED_RESPONSES:
            self._responses.popitem(last=False)

    def stored_response(self, response_id: str) -> int | None:
        """The context tokens (its input and output) of a stored response; ``None``: unknown."""
        return self._responses.get(response_id)

    def store_items(self, item_ids: list[str]) -> None:
        """Keep the output item ids of a stored Responses API response."""
        for item_id in item_ids:
            self._items[item_id] = None
        while len(self._items) > MAX_STORED_ITEMS:
            self._items.popitem(last=False)

    def stored_item(self, item_id: str) -> bool:
        """Whether an output item of a stored response has ``item_id``."""
        return item_id in self._items

    def pick_fault(self, header: str | None) -> Fault | None:
        """The fault for this request: the header's, else the server-wide one by fault_rate."""
        if header:
            # "none" lets one request through a server-wide fault.
            return None if header.strip().lower() == "none" else parse_fault(header)
        spec = self._settings.fault
        if spec is None:
            return None
        rate = self._settings.fault_rate
        if rate < 1.0 and self._rng.random() >= rate:
            return None
        return parse_fault(spec)

    def record(self, request: web.BaseRequest, body: Any) -> None:
        """Remember a request (the log keeps the last MAX_RECORDED)."""
        self._log.append((request.method, request.path, request.query, request.headers, body))

    def recorded(self) -> list[RecordedRequest]:
        """The logged requests, oldest first."""
        return [
            RecordedRequest(
                method=method,
                path=path,
                query={str(k): v for k, v in query.items()},
                # Lower-cased plain-str keys: header names are case-insensitive, and orjson
                # refuses the str subclass (istr) aiohttp uses for them.
                headers={k.lower(): v for k, v in headers.items()},
                json=body,
            )
            for method, path, query, headers, body in self._log
        ]

    def clear_requests(self) -> int:
        """Forget the logged requests; returns how many there were."""
        count = len(self._log)
        self._log.clear()
        return count

    def departed(self, request: web.BaseRequest) -> None:
        """Remember that the caller of ``request`` closed its connection before the answer
        was complete (its handler was cancelled)."""
        self._departures.append(
            {
                "method": request.method,
                "path": request.path,
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "at": time.time(),
            }
        )

    def departures(self) -> list[dict[str, Any]]:
        """The requests whose caller left before their answer was complete, oldest first."""
        return list(self._departures)

    def clear_departures(self) -> int:
        """Forget the departures; returns how many there were."""
        count = len(self._departures)
        self._departures.clear()
        return count
