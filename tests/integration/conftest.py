"""SDK clients on the session's gateway, for the integration tests that drive it through them
(a module that needs other settings defines its own ``gpt`` or ``claude``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anthropic
import openai
import pytest

from tests.support import CLIENT_KEY
from tollway.simulator import Simulator


@pytest.fixture(scope="module")
def gpt(gateway_url: str) -> Iterator[openai.OpenAI]:
    """The ``openai`` SDK on the gateway, without retries (a test sees every failure)."""
    with openai.OpenAI(base_url=gateway_url + "/v1", api_key=CLIENT_KEY, max_retries=0) as c:
        yield c


@pytest.fixture(scope="module")
def claude(gateway_url: str) -> Iterator[anthropic.Anthropic]:
    """The ``anthropic`` SDK on the gateway, without retries."""
    with anthropic.Anthropic(base_url=gateway_url, api_key=CLIENT_KEY, max_retries=0) as c:
        yield c


@pytest.fixture
async def oai() -> AsyncIterator[openai.AsyncOpenAI]:
    """The async ``openai`` SDK on a simulator of the test's own, in process (the simulator's
    own wire format, no gateway in between)."""
    simulator = Simulator()
    await simulator.start()
    client = openai.AsyncOpenAI(base_url=simulator.url + "/v1", api_key="sk-test", max_retries=0)
    yield client
    await client.close()
    await simulator.stop()
