"""Server-side tools billed per call: fees in the cost and the worst case, the catalog's
defaults, what a request offers and how it is bounded."""

from __future__ import annotations

from tollway.core.types import ChatRequest, Message, Price, Tool, Usage
from tollway.pricing.catalog import PriceCatalog
from tollway.pricing.cost import cost_usd, worst_case_usd
from tollway.pricing.tools import ToolUse, attributed, bound_tool_calls, gemini_calls, tool_uses

PRICE = Price(input=1.0, output=2.0, tool_calls=(("file_search", 2.5), ("web_search", 10.0)))


def test_each_tool_call_is_billed_at_its_kinds_fee() -> None:
    usage = Usage(input_tokens=1000, output_tokens=500, tool_calls={"web_search": 3})
    tokens = (1000 * 1.0 + 500 * 2.0) / 1e6
    assert cost_usd(PRICE, usage) == tokens + 3 * 0.01
    usage.tool_calls = {"file_search": 2, "web_fetch": 4}  # web_fetch: no fee named
    assert cost_usd(PRICE, usage) == tokens + 2 * 0.0025


def test_the_worst_case_reserves_every_call_at_the_dearest_kind_offered() -> None:
    uses = [ToolUse(("file_search", "web_search"), 4)]
    assert worst_case_usd(PRICE, 0, 0, tool_uses=uses) == 4 * 0.01
    actual = cost_usd(PRICE, Usage(tool_calls={"web_search": 2, "file_search": 2}))
    assert actual <= worst_case_usd(PRICE, 0, 0, tool_uses=uses)


def test_the_catalog_gives_known_models_the_providers_fees() -> None:
    catalog = PriceCatalog.load()
    gpt4o = catalog.lookup("openai", "gpt-4o")
    assert gpt4o is not None
    assert gpt4o.call_fee("web_search") == 0.01
    assert gpt4o.call_fee("web_search_preview") == 0.025
    o3 = catalog.lookup("openai", "o3")
    assert o3 is not None and o3.call_fee("web_search_preview") == 0.01
    claude = catalog.lookup("anthropic", "claude-sonnet-4-5-20250929")
    assert claude is not None and claude.call_fee("web_search") == 0.01
    assert claude.call_fee("web_fetch") == 0.0
    sim = catalog.lookup("openai", "sim-chat")
    assert sim is not None and not sim.tool_calls


def test_searches_of_a_request_offering_only_the_preview_tool_are_priced_as_it() -> None:
    chat = ChatRequest(model="m", messages=[Message(role="user", content="hi")])
    chat.responses_body = {"tools": [{"type": "web_search_preview"}]}
    usage = Usage(tool_calls={"web_search": 2})
    assert attributed(usage, chat) == {"web_search_preview": 2}
    chat.responses_body = {"tools": [{"type": "web_search_preview"}, {"type": "web_search"}]}
    assert attributed(usage, chat) == {"web_search": 2}


def test_an_unbounded_tool_is_given_the_default_bound() -> None:
    chat = ChatRequest(model="m", messages=[Message(role="user", content="hi")])
    chat.responses_body = {"tools": [{"type": "web_search"}, {"type": "file_search"}]}
    assert tool_uses(chat) == [ToolUse(("file_search", "web_search"), 0)]
    bound_tool_calls(chat, 7)
    assert chat.responses_body["max_tool_calls"] == 7
    assert tool_uses(chat) == [ToolUse(("file_search", "web_search"), 7)]
    claude = ChatRequest(model="m", messages=[Message(role="user", content="hi")])
    claude.tools = [
        Tool(name="web_search", extra={"type": "web_search_20250305", "max_uses": 2}),
        Tool(name="web_fetch", extra={"type": "web_fetch_20250910"}),
        Tool(name="lookup", parameters={"type": "object"}),
    ]
    bound_tool_calls(claude, 5)
    assert tool_uses(claude) == [ToolUse(("web_search",), 2), ToolUse(("web_fetch",), 5)]
    assert "max_uses" not in claude.tools[2].extra


GEMINI_2 = Price(input=1.0, output=2.0, tool_requests=(("web_search", 35.0),))
GEMINI_3 = Price(input=1.0, output=2.0, tool_calls=(("web_search", 14.0),))


def test_a_fee_per_request_is_charged_once_however_many_calls() -> None:
    usage = Usage(tool_calls={"web_search": 3})
    assert cost_usd(GEMINI_2, usage) == 0.035
    assert cost_usd(GEMINI_3, usage) == 3 * 0.014
    assert cost_usd(GEMINI_2, Usage(tool_calls={"web_search": 0})) == 0.0
    # The worst case: every call it may make, and the request's fee once.
    uses = [ToolUse(("web_search",), 4)]
    assert worst_case_usd(GEMINI_2, 0, 0, tool_uses=uses) == 0.035
    assert worst_case_usd(GEMINI_3, 0, 0, tool_uses=uses) == 4 * 0.014


def test_the_catalog_prices_gemini_grounding_per_prompt_and_gemini_3_per_query() -> None:
    catalog = PriceCatalog.load()
    flash = catalog.lookup("gemini", "gemini-2.5-flash")
    assert flash is not None
    assert (flash.request_fee("web_search"), flash.call_fee("web_search")) == (0.035, 0.0)
    vertex = catalog.lookup("vertex_ai", "gemini-2.0-flash-001")
    assert vertex is not None and vertex.request_fee("web_search") == 0.035
    three = catalog.lookup("gemini", "gemini-3-pro-preview")
    assert three is not None
    assert (three.request_fee("web_search"), three.call_fee("web_search")) == (0.0, 0.014)


def test_gemini_google_search_is_reserved_the_default_queries() -> None:
    # Gemini takes no bound on its searches: an OpenAI-format client's web_search_options or
    # a googleSearch tool is reserved the default number of queries (at least one).
    chat = ChatRequest(model="m", messages=[Message(role="user", content="hi")])
    assert tool_uses(chat, 5) == []
    chat.extra["web_search_options"] = {}
    assert tool_uses(chat, 5) == [ToolUse(("web_search",), 5)]
    assert tool_uses(chat, 0) == [ToolUse(("web_search",), 1)]
    chat.n = 2  # each candidate searches on its own
    assert tool_uses(chat, 5) == [ToolUse(("web_search",), 10)]
    native = ChatRequest(model="m", messages=[Message(role="user", content="hi")])
    native.tools = [Tool(name="googleSearch", extra={"type": "googleSearch", "config": {}})]
    assert tool_uses(native, 3) == [ToolUse(("web_search",), 3)]


def test_the_queries_of_gemini_candidates_are_web_searches() -> None:
    grounded = {"groundingMetadata": {"webSearchQueries": ["a", "b"]}}
    assert gemini_calls([grounded, {"groundingMetadata": {"webSearchQueries": ["c"]}}]) == {
        "web_search": 3
    }
    assert gemini_calls([{"content": {}}, {"groundingMetadata": {}}]) is None
