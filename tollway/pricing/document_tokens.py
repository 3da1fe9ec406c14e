"""What each provider family charges for one input PDF, from its documented rules.

Admission reserves a request's cost before the provider says what it used, and a budget
must never be overshot, so a PDF counts at no less than the provider will charge: its pages
(``pdf_pages.py``) times the most one page costs there.

- **Claude** (Anthropic, Bedrock): each page is its extracted text ("1,500 to 3,000 tokens
  a page", Anthropic's PDF guide: 3,000) plus an image of the page, charged as an image of
  unknown size (``image_tokens.py``). At most 600 pages a request (100 on models with a 200k
  context window) on Anthropic's API; 100 on Bedrock.
- **Gemini**: 258 tokens a page on 2.x; Gemini 3 charges a page by ``media_resolution``
  (560 by default for PDFs, 1,120 at high): 1,120. At most 1,000 pages a document on the
  Gemini API, 3,000 on Vertex AI's latest models.
- **OpenAI** and any other family: as Claude's, text plus the image of each page; 100 pages
  (the limit OpenAI's PDF guide gave; its current guide states none).

A PDF whose pages cannot be counted (by URL, by file id, or data that cannot be read surely)
counts as the most pages the family accepts, and never as fewer than one page per
``PDF_BYTES_PER_PAGE`` of its size, where that is known.

The context-window check needs the opposite bound (a request is refused, or a deployment
skipped, only when it surely does not fit): such a PDF counts there at the least it can cost,
``least_pdf_tokens``: one page, and that page without text, only its image at the least an
image costs (Gemini: its fixed 258 tokens a page, under Gemini 3's least resolution too).
Small against any context window: the provider, which fetches the file, has the last word.
"""

from __future__ import annotations

import math
import re

from tollway.pricing.image_tokens import image_tokens, least_image_tokens

PDF_BYTES_PER_PAGE = 50_000
"""The size guess's page (a PDF of text); a PDF not counted is never below it."""
_TEXT_TOKENS_PER_PAGE = 3_000
_MAX_PAGES = {"anthropic": 600, "bedrock": 100, "gemini": 1_000, "vertex_ai": 3_000}
_DEFAULT_MAX_PAGES = 100
_GEMINI_PAGE = 258
_GEMINI_3_PAGE = 1_120
_GEMINI_VERSION = re.compile(r"gemini-(\d+)")


def max_pages(provider: str) -> int:
    """The most pages ``provider``'s family takes in one request."""
    return _MAX_PAGES.get(provider, _DEFAULT_MAX_PAGES)


def page_tokens(provider: str, model: str) -> int:
    """The most one PDF page costs on ``model`` of ``provider``."""
    if provider in ("gemini", "vertex_ai"):
        found = _GEMINI_VERSION.search(model.lower())
        return _GEMINI_3_PAGE if found is not None and int(found.group(1)) >= 3 else _GEMINI_PAGE
    return _TEXT_TOKENS_PER_PAGE + image_tokens(provider, model, None, None)


def pdf_tokens(provider: str, model: str, pages: int | None, size: int | None = None) -> int:
    """Tokens of one PDF of ``pages`` (``None``: not counted) and ``size`` bytes (``None``:
    unknown) on ``model`` of ``provider``."""
    if pages is None:
        pages = max_pages(provider)
        if size is not None:
            pages = max(pages, math.ceil(size / PDF_BYTES_PER_PAGE))
    return max(1, pages) * page_tokens(provider, model)


def least_pdf_tokens(provider: str, model: str) -> int:
    """The least one PDF whose pages are not counted can cost on ``model`` of ``provider``."""
    if provider in ("gemini", "vertex_ai"):
        return _GEMINI_PAGE
    return least_image_tokens(provider, model, None)
