"""A simulated LLM provider speaking the OpenAI, Azure OpenAI, Anthropic and Gemini wire formats.

Used by the gateway's demo mode, the test suite and the benchmark. Content is deterministic
(see ``tollway.simulator.content`` for the reply and token-count rules), latency and faults are
steerable per request (``x-sim-*`` headers) or server-wide (settings, ``/_sim/config``).
"""

from tollway.simulator.content import FILLER_WORDS
from tollway.simulator.server import Simulator, create_app, serve
from tollway.simulator.settings import RecordedRequest, SimulatorSettings
from tollway.simulator.state import SimulatorState

__all__ = [
    "FILLER_WORDS",
    "RecordedRequest",
    "Simulator",
    "SimulatorSettings",
    "SimulatorState",
    "create_app",
    "serve",
]
