"""LangChain chat models with only the base URL changed: invoke, stream, tool binding."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from langchain_anthropic import ChatAnthropic
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI, OpenAIEmbeddings

from tests.support import CLIENT_KEY
from tollway.pricing.tokens import TokenCounter

# Every model group is served by a different provider family behind the gateway.
MODELS = ["test-chat", "test-azure", "test-claude", "test-gemini", "test-bedrock"]
UPSTREAM_MODEL = {"test-bedrock": "anthropic.claude-sim-v1:0"}


@tool
def get_weather(city: str) -> str:
    """Weather for a city."""
    return f"sunny in {city}"


def openai_chat(gateway_url: str, model: str) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=gateway_url + "/v1", api_key=CLIENT_KEY, model=model, max_retries=0, timeout=30
    )  # type: ignore[arg-type]


def anthropic_chat(gateway_url: str, model: str) -> ChatAnthropic:
    return ChatAnthropic(
        base_url=gateway_url,
        api_key=CLIENT_KEY,
        model=model,
        max_retries=0,
        timeout=30,
        max_tokens=256,
    )  # type: ignore[call-arg]


def responses_chat(gateway_url: str, model: str) -> ChatOpenAI:
    """ChatOpenAI on the Responses API (``/v1/responses``)."""
    return ChatOpenAI(
        base_url=gateway_url + "/v1",
        api_key=CLIENT_KEY,
        model=model,
        max_retries=0,
        timeout=30,
        use_responses_api=True,
    )  # type: ignore[arg-type]


CLIENTS = [openai_chat, anthropic_chat]
ALL_CLIENTS = [openai_chat, anthropic_chat, responses_chat]
ALL_IDS = ["langchain-openai", "langchain-anthropic", "langchain-openai-responses"]


@pytest.mark.parametrize("make", CLIENTS, ids=["langchain-openai", "langchain-anthropic"])
@pytest.mark.parametrize("model", MODELS)
def test_invoke(gateway_url: str, make, model: str) -> None:  # type: ignore[no-untyped-def]
    reply = make(gateway_url, model).invoke("hello from langchain")
    assert isinstance(reply, AIMessage)
    assert "hello from langchain" in reply.text
    assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] > 0


@pytest.mark.parametrize("make", CLIENTS, ids=["langchain-openai", "langchain-anthropic"])
@pytest.mark.parametrize("model", MODELS)
def test_stream(gateway_url: str, make, model: str) -> None:  # type: ignore[no-untyped-def]
    pieces = [chunk.text for chunk in make(gateway_url, model).stream("stream from langchain")]
    assert len([p for p in pieces if p]) > 3
    assert "stream from langchain" in "".join(pieces)


@pytest.mark.parametrize("make", CLIENTS, ids=["langchain-openai", "langchain-anthropic"])
@pytest.mark.parametrize("model", MODELS)
def test_tool_binding_round_trip(gateway_url: str, make, model: str) -> None:  # type: ignore[no-untyped-def]
    chat = make(gateway_url, model).bind_tools([get_weather])
    question = HumanMessage("what is the weather in Oslo?")
    first = chat.invoke([question])
    assert first.tool_calls and first.tool_calls[0]["name"] == "get_weather"
    call = first.tool_calls[0]
    assert "city" in call["args"]
    result = ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])
    second = chat.invoke([question, first, result])
    assert "sunny in" in second.text


def _merged(chunks):  # type: ignore[no-untyped-def]
    merged = None
    for chunk in chunks:
        merged = chunk if merged is None else merged + chunk
    assert merged is not None
    return merged


@pytest.mark.parametrize("make", ALL_CLIENTS, ids=ALL_IDS)
@pytest.mark.parametrize("model", MODELS)
def test_stream_metadata_names_the_answer(gateway_url: str, make, model: str) -> None:  # type: ignore[no-untyped-def]
    """Streamed metadata names the model whatever chunk the upstream opens with (Azure's
    first is an id-less, model-less ``prompt_filter_results`` chunk)."""
    merged = _merged(make(gateway_url, model).stream("name yourself"))
    assert merged.response_metadata["model_name"] == UPSTREAM_MODEL.get(model, "sim-chat")


def _upstream_body(simulator_url: str, marker: str) -> dict:  # type: ignore[type-arg]
    for request in reversed(httpx.get(simulator_url + "/_sim/requests").json()):
        if marker in str((request["json"] or {}).get("messages")):
            return dict(request["json"])
    raise AssertionError(f"the simulator received no request saying {marker!r}")


@pytest.mark.parametrize("make", [anthropic_chat, responses_chat], ids=ALL_IDS[1:])
def test_an_azure_deployment_is_sent_the_limit_its_reasoning_models_accept(
    gateway_url: str, simulator_url: str, make
) -> None:  # type: ignore[no-untyped-def]
    """Azure's o-series and gpt-5 deployments refuse ``max_tokens``; an api-version that knows
    ``max_completion_tokens`` (2024-10-21 here) is sent the limit by that name."""
    marker = f"azure limit {make.__name__}"
    # 16: the least the Responses API takes (its ``max_output_tokens``).
    reply = make(gateway_url, "test-azure").bind(max_tokens=16).invoke(marker)
    assert reply.text
    body = _upstream_body(simulator_url, marker)
    assert body.get("max_completion_tokens") == 16 and "max_tokens" not in body


@tool
def get_time(zone: str) -> str:
    """Time in a zone."""
    return f"noon in {zone}"


@pytest.mark.parametrize("make", ALL_CLIENTS, ids=ALL_IDS)
@pytest.mark.parametrize("model", ["test-chat", "test-claude", "test-gemini", "test-bedrock"])
def test_streamed_parallel_tool_calls_are_the_invoked_ones(  # type: ignore[no-untyped-def]
    gateway_url: str, make, model: str
) -> None:
    """Tool calls assembled from a stream's chunks (each client's own deltas: OpenAI's
    indexed fragments, Anthropic's input_json_delta, the Responses API's argument deltas)
    are the calls a plain request gets, and the answer to their results streams too."""
    chat = make(gateway_url, model).bind_tools([get_weather, get_time])
    question = HumanMessage("weather and time in parallel please")
    plain = chat.invoke([question])
    streamed = _merged(chat.stream([question]))
    assert not streamed.invalid_tool_calls
    calls = [(call["name"], call["args"]) for call in streamed.tool_calls]
    assert calls == [(call["name"], call["args"]) for call in plain.tool_calls]
    assert [name for name, _ in calls] == ["get_weather", "get_time"]
    results = [ToolMessage("done", tool_call_id=call["id"]) for call in streamed.tool_calls]
    answer = _merged(chat.stream([question, streamed, *results]))
    assert "Simulated reply to tool result" in answer.text


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
def test_cache_writes_reach_chat_openai_usage(gateway_url: str, stream: bool) -> None:
    """A ``cache_control`` a ChatOpenAI user puts on a part makes Claude on Bedrock write the
    prompt to its cache; the Chat Completions usage says so in OpenAI's own field,
    ``prompt_tokens_details.cache_write_tokens``, which langchain-openai reads as
    ``cache_creation`` (the writes are billed above the input rate)."""
    chat = ChatOpenAI(
        base_url=gateway_url + "/v1",
        api_key=CLIENT_KEY,
        model="test-bedrock",
        max_retries=0,
        timeout=30,
        stream_usage=True,
    )  # type: ignore[arg-type]
    system = SystemMessage(
        [{"type": "text", "text": "you help " * 40, "cache_control": {"type": "ephemeral"}}]
    )
    messages = [system, HumanMessage("cache this prompt")]
    reply = _merged(chat.stream(messages)) if stream else chat.invoke(messages)
    usage = reply.usage_metadata
    assert usage is not None
    assert usage["input_token_details"].get("cache_creation") == usage["input_tokens"] > 80


@pytest.fixture(scope="module")
def offline_cl100k() -> None:
    """OpenAIEmbeddings encodes its inputs with tiktoken, which would download cl100k_base:
    the gateway's bundled copy is put in tiktoken's offline cache instead."""
    TokenCounter().encoding("cl100k_base")


@pytest.mark.usefixtures("offline_cl100k")
def test_openai_embeddings_token_arrays_reach_a_gemini_deployment_as_text(
    gateway_url: str, simulator_url: str
) -> None:
    """OpenAIEmbeddings sends token arrays by default (``check_embedding_ctx_length``); a
    Gemini model embeds text only, so the gateway sends it the text those ids encode, and the
    vectors are the ones the texts themselves get."""
    texts = ["token arrays from langchain", "a second document, naïve café"]

    def embeddings(**settings: Any) -> OpenAIEmbeddings:
        return OpenAIEmbeddings(
            base_url=gateway_url + "/v1",
            api_key=CLIENT_KEY,
            model="test-gemini-embed",
            max_retries=0,
            **settings,
        )  # type: ignore[call-arg]

    from_ids = embeddings().embed_documents(texts)
    sent = httpx.get(simulator_url + "/_sim/requests").json()[-1]["json"]
    assert [r["content"]["parts"][0]["text"] for r in sent["requests"]] == texts
    from_texts = embeddings(check_embedding_ctx_length=False).embed_documents(texts)
    assert len(from_ids) == len(from_texts) == 2
    for by_ids, by_text in zip(from_ids, from_texts, strict=True):
        assert by_ids == pytest.approx(by_text)


@pytest.mark.parametrize("started_on", ["test-gemini-3", "test-chat"])
@pytest.mark.parametrize("finished_on", ["test-claude", "test-bedrock"])
def test_a_thinking_tool_loop_moves_to_claude_mid_way(
    gateway_url: str, started_on: str, finished_on: str
) -> None:
    """A ChatAnthropic agent with thinking on whose calls another family made (a fallback,
    or a model group of several families) has them answered by Claude: the turn holds no
    thinking Claude signed (Gemini's signature goes back to Gemini only, an OpenAI model shows
    none), which Claude, thinking, refuses; that one request goes without thinking, as an
    OpenAI client's does."""

    def chat(model: str) -> Any:
        return anthropic_chat(gateway_url, model).bind_tools([get_weather, get_time])

    thinking = {"thinking": {"type": "enabled", "budget_tokens": 1024}, "max_tokens": 2048}
    question = HumanMessage("weather and time in parallel please")
    first = chat(started_on).bind(**thinking).invoke([question])
    assert [call["name"] for call in first.tool_calls] == ["get_weather", "get_time"]
    results = [ToolMessage("done", tool_call_id=call["id"]) for call in first.tool_calls]
    answer = chat(finished_on).bind(**thinking).invoke([question, first, *results])
    assert "Simulated reply to tool result" in answer.text
    conversation = [question, first, *results, answer, HumanMessage("and tomorrow?")]
    thought = chat(finished_on).bind(**thinking).invoke(conversation)
    assert thought.content[0]["type"] == "thinking"  # the next question thinks again
