"""A Responses client's ``web_search`` tool as the canonical ``WebSearch`` other families run.

OpenAI's ``web_search`` and ``web_search_preview`` tools (and their dated names) run on
OpenAI's side; Anthropic's API has a web search server tool of its own
(``web_search_20250305``), and Gemini grounding with Google Search (the ``googleSearch``
tool, on the Gemini API and Vertex AI alike), so a request offering one can go to a deployment
of those families too (``TRANSLATED_FOR``). For Claude, ``filters.allowed_domains`` is its
``allowed_domains``, an ``approximate`` ``user_location`` its ``user_location`` (the same
fields), and the request's ``max_tool_calls`` its ``max_uses``. Google Search takes no domains,
no location and no bound: a tool with domains or a location can go to Claude alone
(``CLAUDE_ONLY``; refused by that field's name where the model has neither a Responses upstream
nor Claude), and ``max_tool_calls`` only bounds what a budget reserves for Gemini's queries
(``max_tool_calls: 0`` offers no search at all, as for Claude). ``search_context_size`` (how
much of the results the model reads) has no counterpart: ``medium``, OpenAI's default, is what
any search does and passes; ``low`` or ``high`` asks for what only OpenAI does, so the request
stays one for a Responses upstream (refused by that field's name where the model has none).
So does any field this module does not know: it may ask for something the translation would
silently drop.
"""

from __future__ import annotations

from typing import Any

from tollway.core.types import JSON, ResponsesOnly, Tool, WebSearch
from tollway.wire.fields import optional

TRANSLATED_FOR = frozenset({"anthropic", "gemini", "vertex_ai"})
"""The provider families whose codecs write a ``WebSearch``."""
CLAUDE_ONLY = frozenset({"anthropic"})
"""The families whose search takes allowed domains and a location: Claude's."""
_KINDS = frozenset(
    {"web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11"}
)
_KEYS = frozenset({"type", "search_context_size", "user_location", "filters"})
_LOCATION_KEYS = ("city", "region", "country", "timezone")


def is_web_search(kind: str) -> bool:
    """Whether ``kind`` is one of OpenAI's web search tools."""
    return kind in _KINDS


def web_search_from_wire(
    tool: JSON, param: str, max_tool_calls: Any
) -> tuple[WebSearch | None, ResponsesOnly]:
    """The canonical search a web search tool asks for (``None``: a setting other families
    cannot honour), and the ``ResponsesOnly`` that routes the request."""
    kind = tool["type"]
    why = f"'{param}.type' {kind!r} is a tool of OpenAI's Responses API, not a 'function' tool"
    untranslated = _untranslated(tool, param)
    if untranslated is not None:
        return None, untranslated
    location = optional(tool, "user_location", dict, f"{param}.user_location")
    filters = optional(tool, "filters", dict, f"{param}.filters") or {}
    domains = optional(filters, "allowed_domains", list, f"{param}.filters.allowed_domains")
    bound = max_tool_calls if isinstance(max_tool_calls, int) and max_tool_calls >= 0 else None
    search = WebSearch(
        allowed_domains=[str(domain) for domain in domains] if domains else None,
        user_location=_location(location),
        max_uses=bound,
    )
    if search.user_location:
        why = f"'{param}.user_location' is a setting Google Search does not take"
        return search, ResponsesOnly(f"{param}.user_location", why, CLAUDE_ONLY)
    if search.allowed_domains:
        why = f"'{param}.filters.allowed_domains' is a filter Google Search does not take"
        return search, ResponsesOnly(f"{param}.filters.allowed_domains", why, CLAUDE_ONLY)
    return search, ResponsesOnly(f"{param}.type", why, TRANSLATED_FOR)


def _untranslated(tool: JSON, param: str) -> ResponsesOnly | None:
    """The first setting of ``tool`` only OpenAI's search honours, if any."""
    for key, value in tool.items():
        if key not in _KEYS and value is not None:
            why = f"'{param}.{key}' is a setting of OpenAI's web search that no other family has"
            return ResponsesOnly(f"{param}.{key}", why)
    size = tool.get("search_context_size")
    if size not in (None, "medium"):
        why = (
            f"'{param}.search_context_size' {size!r} is a setting of OpenAI's web search that "
            "no other family has (only 'medium', its default, is what any search does)"
        )
        return ResponsesOnly(f"{param}.search_context_size", why)
    filters = tool.get("filters")
    if isinstance(filters, dict):
        for key, value in filters.items():
            if key != "allowed_domains" and value is not None:
                why = f"'{param}.filters.{key}' is a filter of OpenAI's web search only"
                return ResponsesOnly(f"{param}.filters.{key}", why)
    return None


def _location(location: JSON | None) -> JSON | None:
    """An ``approximate`` location's fields that say something (OpenAI's and Anthropic's
    are the same)."""
    if not location:
        return None
    kept = {key: location[key] for key in _LOCATION_KEYS if location.get(key)}
    return kept or None


def web_search_to_anthropic(search: WebSearch) -> JSON:
    """Anthropic's web search server tool for ``search``."""
    tool: JSON = {"type": "web_search_20250305", "name": "web_search"}
    if search.max_uses is not None:
        tool["max_uses"] = search.max_uses
    if search.allowed_domains:
        tool["allowed_domains"] = search.allowed_domains
    if search.user_location:
        tool["user_location"] = {"type": "approximate", **search.user_location}
    return tool


def web_search_to_gemini(search: WebSearch) -> Tool | None:
    """Gemini's Google Search tool for ``search`` (``None``: no search allowed)."""
    if search.max_uses == 0:
        return None
    return Tool(name="googleSearch", extra={"type": "googleSearch", "config": {}})
