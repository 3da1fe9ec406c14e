"""A simulated LLM provider speaking the OpenAI, Azure OpenAI, Anthropic and Gemini wire formats.

Used by the gateway's demo mode, the test suite and the benchmark. Content is deterministic
(see ``tollway.simulator.content`` for the reply and token-count rules), latency and faults are
steerable per request (``x-sim-*`` headers) or server-wide (settings, ``/_sim/config``).

The names below are imported when first used: the config models import the simulator's
settings, and every ``tollway`` command (most of which never run a simulator) imports those;
the server would bring aiohttp's with it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tollway.simulator.content import FILLER_WORDS
    from tollway.simulator.server import Simulator, create_app, serve
    from tollway.simulator.settings import RecordedRequest, SimulatorSettings
    from tollway.simulator.state import SimulatorState

_HOMES = {
    "FILLER_WORDS": "content",
    "RecordedRequest": "settings",
    "Simulator": "server",
    "SimulatorSettings": "settings",
    "SimulatorState": "state",
    "create_app": "server",
    "serve": "server",
}

__all__ = [
    "FILLER_WORDS",
    "RecordedRequest",
    "Simulator",
    "SimulatorSettings",
    "SimulatorState",
    "create_app",
    "serve",
]


def __getattr__(name: str) -> Any:
    """One of ``__all__``, from the module that defines it (imported on first use)."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
