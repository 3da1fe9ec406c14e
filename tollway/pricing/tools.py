"""Providers' server-side tools, billed per call on top of tokens: what a request offers, how
many calls it may make, and how many an answer made.

Kinds (the names prices use, ``Price.tool_calls``, USD per 1,000 calls):

- ``web_search``: OpenAI Responses ``web_search`` calls (``web_search_call`` output items),
  Anthropic's web search tool (``usage.server_tool_use.web_search_requests``), Gemini's
  grounding with Google Search (each candidate's ``groundingMetadata.webSearchQueries``:
  Gemini 3 bills each query, Gemini 2.x each grounded prompt, a fee per request:
  ``Price.tool_requests``);
- ``web_search_preview``: OpenAI's ``web_search_preview`` tool, which OpenAI bills at its own
  rate on some models (its calls are the same ``web_search_call`` items: a request that
  offered only the preview tool has its calls priced as this kind, where the price names it);
- ``file_search``: OpenAI Responses ``file_search_call`` items;
- ``web_fetch``: Anthropic's web fetch tool (``usage.server_tool_use.web_fetch_requests``;
  Anthropic bills only its tokens, so no price names it by default).

A request offering such a tool may call it several times. Admission bounds the calls (a
budget reserves for the bound, and the provider stops there): the Responses API's
``max_tool_calls`` (all built-in tools together), each Anthropic server tool's ``max_uses``;
where the client gave none, ``limits.default_max_tool_calls`` is set, as ``max_tokens`` is.
Gemini takes no bound on its searches: a request offering Google Search (an OpenAI-format
client's ``web_search_options``, a ``googleSearch`` tool) is reserved
``limits.default_max_tool_calls`` queries, which the model may pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tollway.core.types import ChatRequest, Deployment, Price, Usage

WEB_SEARCH = "web_search"
WEB_SEARCH_PREVIEW = "web_search_preview"
FILE_SEARCH = "file_search"
WEB_FETCH = "web_fetch"

# OpenAI Responses output items of tools billed per call, by kind.
_RESPONSES_ITEMS = {"web_search_call": WEB_SEARCH, "file_search_call": FILE_SEARCH}
# Anthropic ``usage.server_tool_use`` counters, by kind.
_ANTHROPIC_COUNTERS = {"web_search_requests": WEB_SEARCH, "web_fetch_requests": WEB_FETCH}
# Gemini's built-in tools that search Google (REST and SDK spellings; the retrieval tool is
# Gemini 1.5's), and the OpenAI-format field that asks a Gemini deployment for them.
GEMINI_SEARCH_TOOLS = frozenset(
    {"googleSearch", "google_search", "googleSearchRetrieval", "google_search_retrieval"}
)
SEARCH_OPTIONS = "web_search_options"


@dataclass(frozen=True, slots=True)
class ToolUse:
    """Calls a request may make of some server-side tools: at most ``calls`` of them, each of
    any of ``kinds`` (the Responses API bounds its built-in tools together)."""

    kinds: tuple[str, ...]
    calls: int

    def worst_usd(self, price: Price) -> float:
        """The most these calls can cost at ``price``: each at the dearest fee per call, and
        the dearest fee per request that called."""
        if not self.calls:
            return 0.0
        per_call = max((price.call_fee(kind) for kind in self.kinds), default=0.0)
        if not price.tool_requests:
            return self.calls * per_call
        fee = max((price.request_fee(kind) for kind in self.kinds), default=0.0)
        return self.calls * per_call + fee


def _responses_kind(tool_type: Any) -> str | None:
    if not isinstance(tool_type, str):
        return None
    if tool_type.startswith(WEB_SEARCH_PREVIEW):
        return WEB_SEARCH_PREVIEW
    if tool_type.startswith(WEB_SEARCH):
        return WEB_SEARCH
    if tool_type == FILE_SEARCH:
        return FILE_SEARCH
    return None


def _anthropic_kind(tool_type: Any) -> str | None:
    """Anthropic's server tools are versioned types: ``web_search_20250305``..."""
    if not isinstance(tool_type, str):
        return None
    if tool_type.startswith(WEB_SEARCH + "_"):
        return WEB_SEARCH
    if tool_type.startswith(WEB_FETCH + "_"):
        return WEB_FETCH
    return None


def tool_uses(chat: ChatRequest | None, unbounded: int = 0) -> list[ToolUse]:
    """The server-side tools ``chat`` offers, each group with the calls it may make (0 when
    the client set no bound: ``bound_tool_calls`` sets one); Gemini's Google Search, which
    takes no bound, with ``unbounded`` (at least one) for each of the ``n`` candidates."""
    if chat is None:
        return []
    uses: list[ToolUse] = []
    body = chat.responses_body
    if body is not None:
        kinds = {_responses_kind(tool.get("type")) for tool in _objects(body.get("tools"))}
        kinds.discard(None)
        if chat.web_search is not None:
            kinds.add(WEB_SEARCH)  # another family's search in its stead, at its own fee
        if kinds:
            bound = body.get("max_tool_calls")
            calls = bound if isinstance(bound, int) and bound >= 0 else 0
            uses.append(ToolUse(tuple(sorted(k for k in kinds if k is not None)), calls))
        return uses
    searches_google = chat.extra.get(SEARCH_OPTIONS) is not None
    for tool in chat.tools or ():
        tool_type = tool.extra.get("type")
        kind = _anthropic_kind(tool_type)
        if kind is not None:
            bound = tool.extra.get("max_uses")
            calls = bound if isinstance(bound, int) and bound >= 0 else 0
            uses.append(ToolUse((kind,), calls))
        elif tool_type in GEMINI_SEARCH_TOOLS:
            searches_google = True
    if searches_google:
        # Each of ``n`` candidates grounds itself, its queries counted with the others'.
        uses.append(ToolUse((WEB_SEARCH,), max(unbounded, 1) * max(1, chat.n or 1)))
    return uses


def bound_tool_calls(chat: ChatRequest, default: int) -> None:
    """Give every server-side tool ``chat`` offers without a bound on its calls ``default``
    (the Responses API's ``max_tool_calls``, an Anthropic tool's ``max_uses``), so the
    provider stops where a budget's reservation does."""
    body = chat.responses_body
    if body is not None:
        offered = any(_responses_kind(t.get("type")) for t in _objects(body.get("tools")))
        bound = body.get("max_tool_calls")
        if offered and not (isinstance(bound, int) and bound >= 0):
            body["max_tool_calls"] = default
        search = chat.web_search
        if search is not None and search.max_uses is None:
            # Another family's search in its stead (Anthropic's ``max_uses``) stops there too.
            search.max_uses = body.get("max_tool_calls", default)
        return
    for tool in chat.tools or ():
        bound = tool.extra.get("max_uses")
        if _anthropic_kind(tool.extra.get("type")) and not (isinstance(bound, int) and bound >= 0):
            tool.extra["max_uses"] = default


def calls_in_output(items: Iterable[Any]) -> dict[str, int] | None:
    """The billed tool calls among a Responses answer's output items (``None``: none)."""
    counts: dict[str, int] | None = None
    for item in items:
        kind = _RESPONSES_ITEMS.get(str(item.get("type"))) if isinstance(item, dict) else None
        if kind is not None:
            counts = counts or {}
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def responses_item_kind(item: Any) -> str | None:
    """The kind of a Responses output item billed per call, if it is one."""
    return _RESPONSES_ITEMS.get(str(item.get("type"))) if isinstance(item, dict) else None


def gemini_calls(candidates: Iterable[Any]) -> dict[str, int] | None:
    """The Google Search queries a Gemini answer's candidates ran (``groundingMetadata``'s
    ``webSearchQueries``; ``None``: none)."""
    queries = 0
    for candidate in candidates:
        queries += grounding_queries(candidate)
    return {WEB_SEARCH: queries} if queries else None


def grounding_queries(candidate: Any) -> int:
    """The Google Search queries one Gemini candidate ran."""
    grounding = candidate.get("groundingMetadata") if isinstance(candidate, dict) else None
    if not isinstance(grounding, dict):
        return 0
    queries = grounding.get("webSearchQueries")
    return len(queries) if isinstance(queries, list) else 0


def anthropic_calls(usage: dict[str, Any]) -> dict[str, int] | None:
    """The server tool calls an Anthropic ``usage`` object reports (``server_tool_use``)."""
    reported = usage.get("server_tool_use")
    if not isinstance(reported, dict):
        return None
    counts = {
        kind: int(reported.get(counter) or 0) for counter, kind in _ANTHROPIC_COUNTERS.items()
    }
    return {kind: calls for kind, calls in counts.items() if calls} or None


def attributed(
    usage: Usage, chat: ChatRequest | None, deployment: Deployment | None = None
) -> dict[str, int] | None:
    """``usage.tool_calls`` with the searches of a request that offered only OpenAI's
    ``web_search_preview`` tool counted as that kind (its calls are ``web_search_call`` items
    like any search's, and priced apart), when a Responses upstream ran them (``deployment``,
    ``None``: unknown): another family's search in its stead is that family's ``web_search``."""
    calls = usage.tool_calls
    if not calls or WEB_SEARCH not in calls or chat is None or chat.responses_body is None:
        return calls
    if deployment is not None and not deployment.responses_api:
        return calls
    kinds = {_responses_kind(t.get("type")) for t in _objects(chat.responses_body.get("tools"))}
    if WEB_SEARCH_PREVIEW not in kinds or WEB_SEARCH in kinds:
        return calls
    moved = dict(calls)
    moved[WEB_SEARCH_PREVIEW] = moved.get(WEB_SEARCH_PREVIEW, 0) + moved.pop(WEB_SEARCH)
    return moved


def fees_usd(price: Price, calls: dict[str, int] | None) -> float:
    """What ``calls`` cost at ``price``: each at its kind's fee per call, and each kind
    called at its fee per request."""
    if not calls or not price.tool_fees:
        return 0.0
    fees = sum(count * price.call_fee(kind) for kind, count in calls.items())
    if price.tool_requests:
        fees += sum(price.request_fee(kind) for kind, count in calls.items() if count > 0)
    return fees


def merged_fees(
    base: Sequence[tuple[str, float]], own: dict[str, float] | None
) -> tuple[tuple[str, float], ...]:
    """``base`` fees with ``own`` over them, by kind, sorted."""
    fees = dict(base)
    fees.update(own or {})
    return tuple(sorted(fees.items()))


def _objects(raw: Any) -> list[dict[str, Any]]:
    return [item for item in raw if isinstance(item, dict)] if isinstance(raw, list) else []
