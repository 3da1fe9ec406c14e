"""Local token counts: OpenAI's encodings offline, and the chat framing around them."""

from __future__ import annotations

import base64
import math
from typing import Any

import pytest

from tests.support import pdf
from tollway.config.schema import Settings
from tollway.core.types import ChatRequest, Deployment
from tollway.pricing.document_tokens import least_pdf_tokens, max_pages, page_tokens
from tollway.pricing.image_tokens import least_image_tokens
from tollway.pricing.tokens import (
    LONG_REMEMBERED,
    REMEMBERED_CHARS,
    SEGMENT_CHARS,
    TokenCounter,
    inline_pdfs,
    long_texts,
    uncounted_parts,
)
from tollway.routing.table import build_routing_table
from tollway.wire import anthropic_request
from tollway.wire.openai_request import request_from_wire
from tollway.wire.responses_request import request_from_wire as responses_request_from_wire

COUNTER = TokenCounter()
SONNET = "claude-sonnet-4-5"


def test_the_encodings_load_offline_and_count_exactly() -> None:
    # Token ids published in tiktoken's own documentation and tests.
    cl100k = COUNTER.encoding("cl100k_base")
    assert cl100k.encode("hello world") == [15339, 1917]
    assert COUNTER.encoding("o200k_base").decode(
        COUNTER.encoding("o200k_base").encode("Bonjour, tout le monde")
    ) == ("Bonjour, tout le monde")
    assert COUNTER.text("hello world", "openai", "gpt-4") == 2


def test_models_get_their_own_encoding() -> None:
    text = "Schöne Grüße aus Köln! 🌍 " * 20
    gpt4o = COUNTER.text(text, "openai", "gpt-4o")
    gpt4 = COUNTER.text(text, "openai", "gpt-4")
    assert gpt4o != gpt4  # o200k_base and cl100k_base differ on this text
    assert COUNTER.text(text, "azure_openai", "gpt-4o") == gpt4o


def test_chat_framing_matches_openais_accounting() -> None:
    request = request_from_wire(
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello world"}]}
    )
    # 3 to prime the reply + 3 for the message + 2 for its text.
    assert COUNTER.chat(request, "openai", "gpt-4o") == 8


def test_tools_and_images_are_counted() -> None:
    plain = request_from_wire({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    with_tool = request_from_wire(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "description": "Weather for a city",
                        "parameters": {
                            "type": "object",
                            "properties": {"city": {"type": "string"}},
                        },
                    },
                }
            ],
        }
    )
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    low = {
        "type": "image_url",
        "image_url": {"url": "https://example.com/cat.png", "detail": "low"},
    }
    with_image = request_from_wire(
        {"model": "m", "messages": [{"role": "user", "content": [image]}]}
    )
    with_low = request_from_wire({"model": "m", "messages": [{"role": "user", "content": [low]}]})
    base = COUNTER.chat(plain, "openai", "gpt-4o")
    assert COUNTER.chat(with_tool, "openai", "gpt-4o") > base + 15
    # An image by URL, of a size unknown: the most one image costs (image_tokens.py).
    assert COUNTER.chat(with_image, "openai", "gpt-4o") == 6 + 85 + 170 * 8
    assert COUNTER.chat(with_low, "openai", "gpt-4o") == 6 + 85
    assert COUNTER.chat(with_image, "gemini", "gemini-2.5-flash") == 6 + 258 * 16


def test_families_without_an_offline_tokenizer_are_estimated_higher_for_claude() -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 10
    assert COUNTER.text(text, "anthropic", "claude-sonnet-4-5") > COUNTER.text(text)


def _encoded(text: str, encoding: str = "o200k_base") -> int:
    return len(COUNTER.encoding(encoding).encode_ordinary(text))


def test_a_repeated_text_counts_the_same_as_the_first_time() -> None:
    counter = TokenCounter()
    texts = [
        "hello world",
        "Schöne Grüße aus Köln! 🌍 " * 30,
        "x" * (REMEMBERED_CHARS + 1),  # too long to keep: encoded each time
    ]
    for text in texts:
        assert counter.text(text) == _encoded(text)
        assert counter.text(text) == _encoded(text)
        assert counter.text(text, "anthropic", "claude-sonnet-4-5") == math.ceil(
            _encoded(text) * 1.15
        )


def test_each_encoding_keeps_its_own_count_of_a_text() -> None:
    counter = TokenCounter()
    text = "Schöne Grüße aus Köln! 🌍 " * 20
    gpt4o = counter.text(text, "openai", "gpt-4o")
    gpt4 = counter.text(text, "openai", "gpt-4")
    assert gpt4o == _encoded(text, "o200k_base")
    assert gpt4 == _encoded(text, "cl100k_base")
    assert gpt4o != gpt4
    assert counter.text(text, "openai", "gpt-4o") == gpt4o


def test_the_counts_kept_are_bounded_and_long_texts_are_not_kept() -> None:
    counter = TokenCounter(remembered=2)
    for text in ("one", "two", "three"):
        counter.text(text)
    assert counter.remembered() == 2
    roomy = TokenCounter()
    roomy.text("y" * (REMEMBERED_CHARS + 1))
    assert roomy.remembered() == 0
    roomy.text("y" * REMEMBERED_CHARS)
    assert roomy.remembered() == 1
    assert TokenCounter(remembered=0).text("hello world") == 2


def test_a_conversation_counts_the_same_with_and_without_kept_counts() -> None:
    turns: list[dict[str, Any]] = [{"role": "system", "content": "You answer briefly. " * 40}]
    for index in range(6):
        turns.append({"role": "user", "content": f"Question {index}: what is {index} + 1?"})
        turns.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call_{index}",
                        "type": "function",
                        "function": {"name": "add", "arguments": f'{{"a": {index}, "b": 1}}'},
                    }
                ],
            }
        )
        turns.append({"role": "tool", "tool_call_id": f"call_{index}", "content": str(index + 1)})
    tool = {
        "type": "function",
        "function": {"name": "add", "description": "Adds two numbers", "parameters": {}},
    }
    kept = TokenCounter()
    fresh = TokenCounter(remembered=0)
    for length in range(1, len(turns) + 1):  # each turn resends every message before it
        request = request_from_wire({"model": "m", "messages": turns[:length], "tools": [tool]})
        expected = fresh.chat(request, "openai", "gpt-4o")
        assert kept.chat(request, "openai", "gpt-4o") == expected
        assert kept.chat(request, "anthropic", "claude-sonnet-4-5") == fresh.chat(
            request, "anthropic", "claude-sonnet-4-5"
        )
    assert fresh.remembered() == 0
    assert 0 < kept.remembered() <= len(turns) + 2


def _anthropic_turn(*blocks: dict[str, Any]) -> ChatRequest:
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": list(blocks)}]}
    return anthropic_request.request_from_wire(body)


def test_anthropic_documents_count_by_what_they_hold() -> None:
    text = "Cars pay 3 euros, lorries 9. " * 30
    as_text = COUNTER.chat(_anthropic_turn({"type": "text", "text": text}), "openai", "gpt-4o")
    plain = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": text},
    }
    assert COUNTER.chat(_anthropic_turn(plain), "openai", "gpt-4o") == as_text
    titled = {**plain, "title": "Tolls", "context": "from the 2026 schedule"}
    described = _encoded("Tolls") + _encoded("from the 2026 schedule")
    assert COUNTER.chat(_anthropic_turn(titled), "openai", "gpt-4o") == as_text + described
    blocks = [
        {"type": "text", "text": text},
        {"type": "image", "source": {"type": "url", "url": "u"}},
    ]
    content = {"type": "document", "source": {"type": "content", "content": blocks}}
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    for provider in ("anthropic", "openai"):
        assert COUNTER.chat(_anthropic_turn(content), provider, "m") == COUNTER.chat(
            _anthropic_turn({"type": "text", "text": text}, image), provider, "m"
        )
    as_string = {"type": "document", "source": {"type": "content", "content": text}}
    assert COUNTER.chat(_anthropic_turn(as_string), "openai", "gpt-4o") == as_text


def _pdf_tokens(source: dict[str, Any], provider: str = "anthropic", model: str = SONNET) -> int:
    """The tokens one Anthropic ``document`` block adds to a request."""
    caption = {"type": "text", "text": "read"}  # (Anthropic refuses a turn with nothing)
    empty = COUNTER.chat(_anthropic_turn(caption), provider, model)
    document = {"type": "document", "source": source}
    return COUNTER.chat(_anthropic_turn(caption, document), provider, model) - empty


def _base64_pdf(data: bytes) -> dict[str, Any]:
    encoded = base64.b64encode(data).decode()
    return {"type": "base64", "media_type": "application/pdf", "data": encoded}


def test_a_base64_pdf_counts_by_its_pages_at_the_most_a_page_costs() -> None:
    page = page_tokens("anthropic", SONNET)
    assert page == 3_000 + 1_600  # its text at most, and the image of the page
    one = _pdf_tokens(_base64_pdf(pdf(1)))
    many = _pdf_tokens(_base64_pdf(pdf(40, fan_out=8, object_streams=True)))
    assert one >= page and many >= 40 * page  # the family factor on top
    assert many - one >= 39 * page
    # A heavy page is one page: the old guess from the size said eight.
    assert _pdf_tokens(_base64_pdf(pdf(1, pad=400_000))) == one


def test_a_pdf_whose_pages_are_unknown_counts_as_the_most_the_family_takes() -> None:
    most = max_pages("anthropic") * page_tokens("anthropic", SONNET)
    by_url = _pdf_tokens({"type": "url", "url": "https://example.com/tolls.pdf"})
    uploaded = _pdf_tokens({"type": "file", "file_id": "file_011"})
    data = pdf(40)
    truncated = _pdf_tokens(_base64_pdf(data[: len(data) // 2]))
    assert most <= by_url == uploaded == truncated
    # Never below the guess from the size, for data too large for the family's page limit.
    huge = _pdf_tokens(
        {"type": "base64", "media_type": "application/pdf", "data": "A" * 60_000_000}
    )
    assert huge >= math.ceil(45_000_000 / 50_000) * page_tokens("anthropic", SONNET)
    on_gemini = _pdf_tokens(
        {"type": "url", "url": "https://example.com/t.pdf"}, "gemini", "gemini-2.5-pro"
    )
    assert on_gemini >= 1_000 * 258


def test_what_the_provider_alone_can_size_counts_at_its_least_for_the_window_check() -> None:
    caption = {"type": "text", "text": "read"}
    url = {"type": "document", "source": {"type": "url", "url": "https://example.com/t.pdf"}}
    uploaded = {"type": "document", "source": {"type": "file", "file_id": "file_011"}}
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    inline = {"type": "document", "source": _base64_pdf(pdf(3))}
    for provider, model in (("anthropic", SONNET), ("gemini", "gemini-3-pro"), ("openai", "m")):
        alone = COUNTER.chat(_anthropic_turn(caption), provider, model, least=True)
        for block, least in (
            (url, least_pdf_tokens(provider, model)),
            (uploaded, least_pdf_tokens(provider, model)),
            (image, least_image_tokens(provider, model, None)),
        ):
            request = _anthropic_turn(caption, block)
            assert uncounted_parts(request)
            most = COUNTER.chat(request, provider, model)
            counted = COUNTER.chat(request, provider, model, least=True)
            assert 0 < least <= counted - alone < most - alone
            assert counted - alone <= least * 1.15 + 1  # the family factor
        known = _anthropic_turn(caption, inline)
        assert not uncounted_parts(known)  # nothing to split: one count
        assert COUNTER.chat(known, provider, model, least=True) == COUNTER.chat(
            known, provider, model
        )
    assert least_pdf_tokens("anthropic", SONNET) < page_tokens("anthropic", SONNET)


def test_a_responses_file_url_counts_as_the_most_the_family_takes() -> None:
    # Its pages cannot be counted before Claude fetches it: as a PDF by URL in a document.
    url = "https://example.com/tolls.pdf"
    caption = {"type": "input_text", "text": "read"}
    by_url = {"type": "input_file", "file_url": url}

    def counted(*parts: Any) -> int:
        body = {"model": "m", "input": [{"role": "user", "content": list(parts)}]}
        return COUNTER.chat(responses_request_from_wire(body).chat, "anthropic", SONNET)

    assert counted(caption, by_url) - counted(caption) == _pdf_tokens({"type": "url", "url": url})


def test_an_openai_pdf_file_part_counts_by_its_pages() -> None:
    def file_part(file: dict[str, Any]) -> int:
        body = {
            "model": "m",
            "messages": [{"role": "user", "content": [{"type": "file", "file": file}]}],
        }
        empty = {"model": "m", "messages": [{"role": "user", "content": []}]}
        return COUNTER.chat(request_from_wire(body), "openai", "gpt-4o") - COUNTER.chat(
            request_from_wire(empty), "openai", "gpt-4o"
        )

    inline = "data:application/pdf;base64," + base64.b64encode(pdf(12)).decode()
    assert file_part({"file_data": inline, "filename": "t.pdf"}) >= 12 * page_tokens(
        "openai", "gpt-4o"
    )
    by_id = file_part({"file_id": "file-abc"})
    assert by_id >= max_pages("openai") * page_tokens("openai", "gpt-4o")
    text = "plate,toll\nAB-123,3.00\n" * 40
    csv = "data:text/csv;base64," + base64.b64encode(text.encode()).decode()
    assert file_part({"file_data": csv, "filename": "tolls.csv"}) == COUNTER.text(text)
    large = "plate,toll\nAB-123,3.00\n" * 20_000  # 460 KB: one token a byte at most
    encoded = "data:text/csv;base64," + base64.b64encode(large.encode()).decode()
    assert COUNTER.text(large) < file_part({"file_data": encoded, "filename": "t.csv"})
    assert file_part({"file_data": encoded, "filename": "t.csv"}) >= len(large)
    docx = "data:application/vnd.openxmlformats-officedocument.wordprocessingml.document;base64,"
    unseen = file_part({"file_data": docx + "UEsDBA==", "filename": "t.docx"})
    assert unseen == by_id  # its text unknown: the largest document


def _deployment(simulator_url: str | None = None, **config: Any) -> Deployment:
    """``config`` resolved as the gateway resolves a deployment when it loads its config."""
    kind = "embedding" if "embedding" in config["model"] else "chat"
    settings = Settings.model_validate(
        {
            "simulator": {"enabled": simulator_url is not None},
            "models": [{"name": "m", "kind": kind, "deployments": [config]}],
        }
    )
    return build_routing_table(settings, simulator_url).candidates("m", kind)[0]


AZURE = {"provider": "azure_openai", "api_base": "https://acme.openai.azure.com",
         "api_version": "2024-10-21"}  # fmt: skip


@pytest.mark.parametrize(
    ("config", "tokenizer"),
    [
        # OpenAI's own models on OpenAI's API (and its data-residency hosts): exact.
        ({"provider": "openai", "model": "gpt-4o"}, "o200k_base"),
        ({"provider": "openai", "model": "gpt-4.1-mini"}, "o200k_base"),
        ({"provider": "openai", "model": "gpt-4-turbo"}, "cl100k_base"),
        ({"provider": "openai", "model": "text-embedding-3-small"}, "cl100k_base"),
        ({"provider": "openai", "model": "ft:gpt-4o-mini-2024-07-18:acme::abc123"}, "o200k_base"),
        (
            {"provider": "openai", "model": "gpt-4o", "api_base": "https://eu.api.openai.com/v1"},
            "o200k_base",
        ),
        # Azure OpenAI serves them at each customer's own host.
        ({**AZURE, "model": "gpt-4o"}, "o200k_base"),
        ({**AZURE, "model": "gpt-35-turbo"}, "cl100k_base"),
        # Other models, and OpenAI's names anywhere else: estimated.
        ({**AZURE, "model": "DeepSeek-R1"}, None),
        ({**AZURE, "model": "gpt-oss-120b"}, None),  # harmony encoding and framing
        (
            {
                "provider": "openai",
                "model": "meta-llama/Llama-3.1-8B-Instruct",
                "api_base": "http://127.0.0.1:8000/v1",
            },
            None,
        ),
        (
            {"provider": "openai", "model": "qwen2.5:7b", "api_base": "http://127.0.0.1:11434/v1"},
            None,
        ),
        (
            {"provider": "openai", "model": "gpt-4o", "api_base": "http://llm-proxy.internal/v1"},
            None,
        ),
        (
            {
                "provider": "openai",
                "model": "gpt-4o",
                "api_base": "https://api.openai.com.example.net/v1",
            },
            None,
        ),
        ({"provider": "groq", "model": "llama-3.3-70b-versatile"}, None),
        ({"provider": "openrouter", "model": "openai/gpt-4o"}, None),
        ({"provider": "vllm", "model": "gpt-4o"}, None),
        ({"provider": "anthropic", "model": "claude-sonnet-4-5"}, None),
        ({"provider": "gemini", "model": "gemini-2.5-flash"}, None),
    ],
)
def test_counts_are_exact_only_for_openais_models_where_openai_serves_them(
    config: dict[str, Any], tokenizer: str | None
) -> None:
    assert _deployment(**config).tokenizer == tokenizer


def test_the_simulators_models_are_estimated() -> None:
    # The simulator counts words, not OpenAI's tokens: its demo models get the margin.
    simulated = _deployment(
        "http://127.0.0.1:9", provider="openai", model="sim-chat", api_base="embedded-simulator"
    )
    assert simulated.tokenizer is None


def test_a_declared_tokenizer_counts_a_self_hosted_model_exactly_with_that_encoding() -> None:
    declared = _deployment(
        provider="openai",
        model="company-gpt",
        api_base="http://llm-proxy.internal/v1",
        tokenizer="cl100k_base",
    )
    assert declared.tokenizer == "cl100k_base"
    request = request_from_wire(
        {"model": "m", "messages": [{"role": "user", "content": "Schöne Grüße aus Köln! 🌍"}]}
    )
    counted = COUNTER.chat(request, declared.provider, declared.model, declared.tokenizer)
    assert counted == COUNTER.chat(request, "openai", "gpt-4")  # cl100k_base
    assert counted != COUNTER.chat(request, "openai", "company-gpt")  # o200k_base otherwise


def test_earlier_reasoning_counts_where_the_provider_is_sent_it_back() -> None:
    from tollway.core.types import Message, ReasoningPart, TextPart

    thought = "Let me think this through step by step before answering. " * 20

    def conversation(signature: str | None) -> ChatRequest:
        turn = [ReasoningPart(thought, signature=signature), TextPart("Paris.")]
        return ChatRequest(
            model="m",
            messages=[
                Message("user", "capital of France?"),
                Message("assistant", turn),
                Message("user", "and of Spain?"),
            ],
        )

    counter = TokenCounter()
    plain = ChatRequest(model="m", messages=[Message("user", "capital of France?"),
                                             Message("assistant", "Paris."),
                                             Message("user", "and of Spain?")])  # fmt: skip
    signed, unsigned = conversation("sig"), conversation(None)
    extra = math.ceil(_encoded(thought) * 1.15)
    # Claude is sent its signed reasoning back: it is input there.
    assert counter.chat(signed, "anthropic", "claude") >= counter.chat(plain, "anthropic", "c")
    assert counter.chat(signed, "bedrock", "claude") - counter.chat(plain, "bedrock", "c") in (
        extra - 1, extra, extra + 1,
    )  # fmt: skip
    # No provider is sent unsigned reasoning, nor OpenAI any reasoning.
    assert counter.chat(unsigned, "anthropic", "claude") == counter.chat(plain, "anthropic", "c")
    assert counter.chat(signed, "openai", "gpt-4o") == counter.chat(plain, "openai", "gpt-4o")


def test_a_long_text_counts_exactly_in_segments() -> None:
    # Prose, code and CJK text (no spaces), with the spaces, tabs and line ends that decide
    # where a segment may be cut without changing the count.
    words = ["alpha", "beta,", "(gamma)", "12345", "don't", "Grüße", "🌍", "  ", "\n", "\t"]
    prose = " ".join(words[(i * 7) % len(words)] for i in range(40_000))
    code = "def f(x):\n    return x * 2  # double\n" * 3_000
    cjk = "我们的网关会在路由之前计算令牌。" * 4_000
    counter = TokenCounter()
    for text in (prose, code, cjk):
        assert len(text) > 4 * SEGMENT_CHARS
        for encoding in ("o200k_base", "cl100k_base"):
            model = "gpt-4o" if encoding == "o200k_base" else "gpt-4"
            expected = _encoded(text, encoding)
            if text is cjk:  # cut where its segments end: a token or so a cut
                assert (
                    abs(counter.text(text, "openai", model) - expected)
                    <= len(text) // SEGMENT_CHARS + 1
                )
            else:
                assert counter.text(text, "openai", model) == expected


def test_a_long_run_of_one_character_is_counted_in_segments() -> None:
    # Counted whole, tiktoken's merging of one piece grows faster than its length: 40 MB of
    # one letter took 35 s, with every other request of the gateway waiting.
    text = "a" * (40 * SEGMENT_CHARS + 5)
    counted = TokenCounter().text(text)
    assert abs(counted - _encoded(text)) <= 41


def test_a_long_text_is_counted_once_and_ahead_of_time() -> None:
    counter = TokenCounter()
    long = "word " * REMEMBERED_CHARS
    request = request_from_wire(
        {"model": "gpt-4o", "messages": [
            {"role": "system", "content": "short"},
            {"role": "user", "content": [{"type": "text", "text": long}]},
        ]}
    )  # fmt: skip
    assert long_texts(request) == [long]
    counter.count_ahead(long_texts(request), ["o200k_base", "cl100k_base"])
    assert counter.long_remembered() == 2
    assert counter.text(long) == _encoded(long)
    assert counter.chat(request, "openai", "gpt-4") > _encoded(long, "cl100k_base")
    assert counter.long_remembered() == 2  # the counts made ahead were the ones used
    for index in range(LONG_REMEMBERED + 5):
        counter.text(f"{index} " + long)
    assert counter.long_remembered() == LONG_REMEMBERED


def test_a_large_requests_pdfs_are_read_ahead_of_time() -> None:
    # Reading a PDF of tens of megabytes takes a fifth of a second: a large request's are
    # read in the worker thread of count_ahead, and the counts on the event loop find them.
    counter = TokenCounter()
    document = base64.b64encode(pdf(30)).decode()
    attached = base64.b64encode(pdf(12)).decode()
    anthropic = _anthropic_turn(
        {"type": "text", "text": "read"},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                        "data": document}},
    )  # fmt: skip
    openai_file = request_from_wire(
        {"model": "gpt-4o", "messages": [{"role": "user", "content": [{"type": "file", "file": {
            "file_data": "data:application/pdf;base64," + attached, "filename": "t.pdf"}}]}]}
    )  # fmt: skip
    assert inline_pdfs(anthropic) == [(document, 0)]
    ((data_url, start),) = inline_pdfs(openai_file)
    assert data_url[start:] == attached  # the data URL as sent, not its base64 copied out
    counter.count_ahead([], ["o200k_base"], [*inline_pdfs(anthropic), *inline_pdfs(openai_file)])
    assert counter.pdfs_remembered() == 2
    assert counter.chat(anthropic, "anthropic", SONNET) >= 30 * page_tokens("anthropic", SONNET)
    assert counter.chat(openai_file, "openai", "gpt-4o") >= 12 * page_tokens("openai", "gpt-4o")
    assert counter.pdfs_remembered() == 2  # the pages read ahead were the ones used
