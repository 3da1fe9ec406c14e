"""``POST /v1/embeddings`` against what OpenAI's API does, through a gateway process, with the
real ``openai`` SDK: the inputs OpenAI refuses are refused before any provider is called, in
OpenAI's words, for every family."""

from __future__ import annotations

import base64
import json
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from aiohttp import web

from tests.conftest import UPSTREAM_KEY
from tests.integration.in_process import gateway_in_process, serving
from tests.support import CLIENT_KEY, running_gateway
from tollway.pricing.tokens import TokenCounter

FAMILIES = pytest.mark.parametrize("model", ["test-embed", "test-gemini-embed"])


def _sent(simulator_url: str, marker: str) -> list[dict[str, Any]]:
    """The requests the simulator received whose body mentions ``marker``."""
    recorded = httpx.get(simulator_url + "/_sim/requests").json()
    return [request for request in recorded if marker in json.dumps(request["json"])]


GOOGLE_SPLIT = {"gemini": "sim-embed", "vertex_ai": "gemini-embedding-001"}


@pytest.fixture(scope="module")
def embedder(log_dir: Path, simulator_url: str) -> Iterator[str]:
    """A gateway with this module's embedding groups on the simulator (one process for the
    tests that each started their own): ``mistral-embed``, ``azure-embed`` and
    ``split-<provider>``."""

    def group(name: str, provider: str, model: str, api_base: str, **more: str) -> dict[str, Any]:
        deployment = {"provider": provider, "model": model, "api_base": api_base,
                      "api_key": "env:KEY", **more}  # fmt: skip
        return {"name": name, "kind": "embedding", "deployments": [deployment]}

    vertex = f"{simulator_url}/v1/projects/test/locations/europe-west4"
    groups = [
        group("mistral-embed", "mistral", "sim-embed", f"{simulator_url}/mistral/v1"),
        group(
            "azure-embed",
            "azure_openai",
            "sim-embed",
            simulator_url,
            azure_deployment="my-embed",
            api_version="2024-10-21",
        ),
        group("split-gemini", "gemini", GOOGLE_SPLIT["gemini"], simulator_url),
        group("split-vertex_ai", "vertex_ai", GOOGLE_SPLIT["vertex_ai"], vertex),
    ]
    with running_gateway(log_dir, {"models": groups}, {"KEY": UPSTREAM_KEY}) as (url, _):
        yield url


def _in_process(group: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """The config of an in-process gateway serving ``group`` alone."""
    return {
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}"},
        "server": {"reload_interval": None},
        "models": [group],
    }


@FAMILIES
@pytest.mark.parametrize("empty", ["", ["a text", ""], [[1, 2], []]], ids=["str", "list", "ids"])
def test_an_empty_input_is_openais_400(
    gpt: openai.OpenAI, simulator_url: str, model: str, empty: Any
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.embeddings.create(model=model, input=empty, user=f"empty-{model}")
    assert caught.value.status_code == 400
    assert caught.value.param == "input"
    assert "'$.input' is invalid" in caught.value.message
    assert not _sent(simulator_url, f"empty-{model}")


@FAMILIES
def test_a_boolean_is_no_token_id(gpt: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.embeddings.create(model=model, input=[[1, 2], [True, 3]])  # type: ignore[list-item]
    assert caught.value.param == "input"


@FAMILIES
def test_more_than_2048_inputs_is_openais_400_before_any_call(
    gpt: openai.OpenAI, simulator_url: str, model: str
) -> None:
    marker = f"too many for {model}"
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.embeddings.create(model=model, input=[marker] * 2049)
    assert caught.value.param == "input"
    assert "2048" in caught.value.message
    assert not _sent(simulator_url, marker)
    # The boundary is accepted (short vectors: 2,048 full ones are tens of megabytes of JSON).
    answer = gpt.embeddings.create(
        model=model, input=[marker] * 2048, encoding_format="float", dimensions=4
    )
    assert len(answer.data) == 2048


async def _no_usage(request: web.Request) -> web.Response:
    """A Gemini API ``batchEmbedContents`` as Google answers it: the embeddings only, no
    ``usageMetadata`` (``BatchEmbedContentsResponse`` has none)."""
    body = await request.json()
    return web.json_response({"embeddings": [{"values": [0.6, 0.8]} for _ in body["requests"]]})


async def test_a_gemini_answer_without_usage_is_counted_and_charged(tmp_path: Path) -> None:
    app = web.Application()
    app.router.add_post("/v1beta/models/{call}", _no_usage)
    async with serving(app) as upstream:
        deployment = {
            "provider": "gemini",
            "model": "gemini-embedding-001",
            "api_base": upstream,
            "api_key": "env:TEST_UPSTREAM_KEY",
            "price": {"input": 1000, "output": 0},
        }
        group = {"name": "google-embed", "kind": "embedding", "deployments": [deployment]}
        async with (
            gateway_in_process(_in_process(group, tmp_path)) as (url, _),
            openai.AsyncOpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0) as client,
        ):
            raw = await client.embeddings.with_raw_response.create(
                model="google-embed", input=["the quick brown fox", "jumps over the dog"]
            )
    answer = raw.parse()
    assert len(answer.data) == 2
    # Counted by the gateway, as a chat answer without usage is: never 0 tokens for 2 texts.
    assert answer.usage.prompt_tokens >= 8
    assert answer.usage.total_tokens == answer.usage.prompt_tokens
    cost = float(raw.headers["x-tollway-cost-usd"])
    assert cost == pytest.approx(answer.usage.prompt_tokens * 1000 / 1e6)
    assert answer.data[1].embedding == pytest.approx([0.6, 0.8])  # base64, the SDK's default


def test_mistral_takes_dimensions_as_output_dimension_and_no_user(
    embedder: str, simulator_url: str
) -> None:
    # mistral-embed: the simulator's Mistral API, as strict as Mistral.
    marker = "mistral sized text"
    with openai.OpenAI(base_url=embedder + "/v1", api_key=CLIENT_KEY, max_retries=0) as client:
        answer = client.embeddings.create(
            model="mistral-embed", input=[marker], dimensions=64, user="alice"
        )
        plain = client.embeddings.create(model="mistral-embed", input=marker)
    assert len(answer.data[0].embedding) == 64
    assert len(plain.data[0].embedding) == 1536
    sent = _sent(simulator_url, marker)[-2]["json"]
    assert sent["output_dimension"] == 64
    assert "dimensions" not in sent and "user" not in sent


async def _floats_only(request: web.Request) -> web.Response:
    """An OpenAI-compatible server that ignores ``encoding_format`` and answers floats."""
    body = await request.json()
    texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
    data = [
        {"object": "embedding", "index": index, "embedding": [0.6, -0.8]}
        for index in range(len(texts))
    ]
    usage = {"prompt_tokens": 2 * len(texts), "total_tokens": 2 * len(texts)}
    return web.json_response({"object": "list", "data": data, "model": "m", "usage": usage})


async def test_base64_is_base64_from_a_server_that_answers_floats(tmp_path: Path) -> None:
    app = web.Application()
    app.router.add_post("/v1/embeddings", _floats_only)
    async with serving(app) as upstream:
        deployment = {
            "provider": "ollama",
            "model": "m",
            "api_base": upstream + "/v1",
            "api_key": "env:TEST_UPSTREAM_KEY",
        }
        group = {"name": "floats", "kind": "embedding", "deployments": [deployment]}
        async with (
            gateway_in_process(_in_process(group, tmp_path)) as (url, _),
            httpx.AsyncClient(headers={"authorization": f"Bearer {CLIENT_KEY}"}) as http,
        ):
            packed = await http.post(
                url + "/v1/embeddings",
                json={"model": "floats", "input": ["a", "b"], "encoding_format": "base64"},
            )
            floats = await http.post(url + "/v1/embeddings", json={"model": "floats", "input": "a"})
    assert packed.status_code == 200, packed.text
    for item in packed.json()["data"]:
        decoded = array("f", base64.b64decode(item["embedding"])).tolist()
        assert decoded == pytest.approx([0.6, -0.8])
    assert floats.json()["data"][0]["embedding"] == [0.6, -0.8]


async def _ollama_embed(request: web.Request) -> web.Response:
    """Ollama's /v1/embeddings: text only; token arrays are its 400 (its embed handler takes a
    string or a list of strings)."""
    body = await request.json()
    texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
    if not all(isinstance(text, str) for text in texts):
        error = {"message": "invalid input type", "type": "invalid_request_error"}
        return web.json_response({"error": error}, status=400)
    data = [
        {"object": "embedding", "index": i, "embedding": [float(len(t))]}
        for i, t in enumerate(texts)
    ]
    usage = {"prompt_tokens": len(texts), "total_tokens": len(texts)}
    return web.json_response({"object": "list", "data": data, "model": "m", "usage": usage})


@pytest.mark.parametrize("provider", ["ollama", "vllm"])
async def test_token_arrays_reach_a_self_hosted_server_as_the_text_they_encode(
    tmp_path: Path, provider: str
) -> None:
    # LangChain's OpenAIEmbeddings sends cl100k_base token ids by default: Ollama refuses them
    # and a vLLM model would read them as ids of its own tokenizer, another text altogether.
    encoding = TokenCounter().encoding("cl100k_base")
    texts = ["self hosted one", "self hosted, two"]
    app = web.Application()
    app.router.add_post("/v1/embeddings", _ollama_embed)
    async with serving(app) as upstream:
        deployment = {"provider": provider, "model": "m", "api_base": upstream + "/v1"}
        group = {"name": "local", "kind": "embedding", "deployments": [deployment]}
        async with gateway_in_process(_in_process(group, tmp_path)) as (url, _):
            client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)
            answer = await client.embeddings.create(
                model="local",
                input=[encoding.encode(text) for text in texts],
                encoding_format="float",
            )
    assert [item.embedding for item in answer.data] == [[len(text)] for text in texts]


@pytest.mark.parametrize(
    ("provider", "model", "texts"),
    [("gemini", "sim-embed", 230), ("vertex_ai", "gemini-embedding-001", 9)],
)
def test_texts_over_googles_call_limit_come_back_in_order(
    embedder: str, provider: str, model: str, texts: int
) -> None:
    assert GOOGLE_SPLIT[provider] == model  # split-<provider>: this model on the simulator
    split = f"split-{provider}"
    inputs = [f"split text {index} of {provider}" for index in range(texts)]
    with openai.OpenAI(base_url=embedder + "/v1", api_key=CLIENT_KEY, max_retries=0) as client:
        whole = client.embeddings.create(model=split, input=inputs, dimensions=16)
        alone = [
            client.embeddings.create(model=split, input=inputs[index], dimensions=16)
            for index in (0, texts // 2, texts - 1)
        ]
    assert [item.index for item in whole.data] == list(range(texts))
    for index, single in zip((0, texts // 2, texts - 1), alone, strict=True):
        assert whole.data[index].embedding == pytest.approx(single.data[0].embedding)
    assert whole.usage.prompt_tokens == 5 * texts  # the simulator's words, every call's


def test_token_arrays_reach_mistral_as_the_text_they_encode(
    embedder: str, simulator_url: str
) -> None:
    # LangChain's OpenAIEmbeddings sends token arrays by default; Mistral embeds text only.
    encoding = TokenCounter().encoding("cl100k_base")  # the bundled copy, offline
    texts = ["tokens for mistral one", "tokens for mistral two"]
    with openai.OpenAI(base_url=embedder + "/v1", api_key=CLIENT_KEY, max_retries=0) as client:
        answer = client.embeddings.create(
            model="mistral-embed", input=[encoding.encode(text) for text in texts]
        )
        by_text = client.embeddings.create(model="mistral-embed", input=texts)
    assert len(answer.data) == 2
    for a, b in zip(answer.data, by_text.data, strict=True):
        assert a.embedding == pytest.approx(b.embedding)
    assert _sent(simulator_url, "tokens for mistral one")[-2]["json"]["input"] == texts


def test_an_azure_deployment_embeds_at_its_deployments_path(
    embedder: str, simulator_url: str
) -> None:
    """Azure's embeddings: the deployment's path and api-version, the key as ``api-key``;
    floats, base64 and usage as from OpenAI."""
    marker = "azure embeds this"
    with openai.OpenAI(base_url=embedder + "/v1", api_key=CLIENT_KEY, max_retries=0) as client:
        floats = client.embeddings.create(
            model="azure-embed", input=[marker, "and this"], encoding_format="float", dimensions=8
        )
        encoded = client.embeddings.create(
            model="azure-embed", input=marker, encoding_format="base64", dimensions=8
        )
    assert [item.index for item in floats.data] == [0, 1]
    assert len(floats.data[0].embedding) == 8 and floats.usage.prompt_tokens > 0
    packed = base64.b64decode(str(encoded.data[0].embedding))
    assert list(array("f", packed)) == pytest.approx(floats.data[0].embedding)
    sent = _sent(simulator_url, marker)[-1]
    assert sent["path"] == "/openai/deployments/my-embed/embeddings"
    assert sent["query"] == {"api-version": "2024-10-21"}
    headers = {name.lower() for name in sent["headers"]}
    assert "api-key" in headers and "authorization" not in headers
