"""What each provider family charges for one input image, from its documented rules.

Admission reserves a request's cost before the provider says what it used, and a budget
must never be overshot, so an image counts at no less than the provider will charge:

- **OpenAI**, tile-based models (GPT-4o, GPT-4.1, GPT-5, o1, o3...): ``detail: low`` is the
  model's base tokens; otherwise the image is scaled to fit 2048x2048, then down so that its
  shortest side is at most 768 px, and each 512-px tile costs the model's tile tokens, plus
  the base. Patch-based models (GPT-4.1 and GPT-5 mini and nano, o4-mini): one token per
  32-px patch, at most 1,536 patches (a larger image is scaled down to fit), times the
  model's multiplier.
- **Claude** (Anthropic, Bedrock): models before Opus 4.7 resize an image to 1,568 px on its
  long edge and about 1,600 tokens, and charge width x height / 750; later models take up to
  2,576 px and charge one token per 28-px patch, at most 4,784.
- **Gemini** 2.x: 258 tokens for an image up to 384 px on both sides, else 258 per 768x768
  tile once scaled within 3072x3072; Gemini 3 and later: a fixed 1,120 tokens an image (the
  default ``media_resolution``, high).

An image whose size is unknown (a URL, or data whose header cannot be read) counts as the
most the family charges for one image at the detail asked for. The context-window check wants
the opposite bound for an image by URL (``least_image_tokens``): the least one image costs
there, a 1x1 image's (Gemini: 258, under Gemini 3's least resolution too).
"""

from __future__ import annotations

import math
import re

from tollway.pricing.image_size import image_size

# OpenAI's tile-based models: (base tokens, tokens a tile), by model prefix, longest first.
_OPENAI_TILES = (
    ("computer-use-preview", 65, 129),
    ("gpt-4o-mini", 2833, 5667),
    ("gpt-5", 70, 140),
    ("o1", 75, 150),
    ("o3", 75, 150),
)
_OPENAI_DEFAULT_TILES = (85, 170)  # GPT-4o, GPT-4.1, GPT-4.5, and any other model
# OpenAI's patch-based models: tokens a 32-px patch.
_OPENAI_PATCHES = (
    ("gpt-4.1-mini", 1.62),
    ("gpt-4.1-nano", 2.46),
    ("gpt-5-mini", 1.62),
    ("gpt-5-nano", 2.46),
    ("o4-mini", 1.72),
)
_OPENAI_FIT = 2048
_OPENAI_SHORT_SIDE = 768
_OPENAI_TILE = 512
_OPENAI_MAX_TILES = 8  # 768 x 2048 once scaled: 2 x 4 tiles
_PATCH = 32
_MAX_PATCHES = 1536

_CLAUDE_LEGACY_EDGE = 1568
_CLAUDE_LEGACY_MAX = 1600
_CLAUDE_PIXELS_PER_TOKEN = 750
_CLAUDE_EDGE = 2576
_CLAUDE_PATCH = 28
_CLAUDE_MAX = 4784
_CLAUDE_VERSION = re.compile(r"claude-(?:3|(?:opus|sonnet|haiku)-(\d+)(?:-(\d)(?!\d))?)")

_GEMINI_IMAGE = 258
_GEMINI_SMALL = 384
_GEMINI_TILE = 768
_GEMINI_FIT = 3072
_GEMINI_MAX_TILES = 16  # 3072 x 3072: 4 x 4 tiles
_GEMINI_3_IMAGE = 1120
_GEMINI_VERSION = re.compile(r"gemini-(\d+)")


def image_tokens(provider: str, model: str, data: str | None, detail: str | None) -> int:
    """Tokens of one image for ``model`` of ``provider``: by its size when ``data`` (base64)
    says it, else the most one image can cost there."""
    size = image_size(data) if data else None
    if provider in ("anthropic", "bedrock"):
        return _claude(model, size)
    if provider in ("gemini", "vertex_ai"):
        return _gemini(model, size)
    return _openai(model, size, detail)


def least_image_tokens(provider: str, model: str, detail: str | None) -> int:
    """The least one image of unknown size can cost on ``model`` of ``provider``."""
    if provider in ("anthropic", "bedrock"):
        return _claude(model, (1, 1))
    if provider in ("gemini", "vertex_ai"):
        return _GEMINI_IMAGE
    return _openai(model, (1, 1), detail)


def _scaled_within(width: int, height: int, box: int) -> tuple[float, float]:
    """The size once scaled down (never up) to fit a ``box`` x ``box`` square."""
    scale = min(1.0, box / max(width, height))
    return width * scale, height * scale


def _openai(model: str, size: tuple[int, int] | None, detail: str | None) -> int:
    name = model.lower()
    for prefix, multiplier in _OPENAI_PATCHES:
        if name.startswith(prefix):
            patches = _patches(*size, _PATCH) if size is not None else _MAX_PATCHES
            return math.ceil(min(_MAX_PATCHES, patches) * multiplier)
    base, tile = next(
        ((b, t) for prefix, b, t in _OPENAI_TILES if name.startswith(prefix)),
        _OPENAI_DEFAULT_TILES,
    )
    if detail == "low":
        return base
    if size is None:
        return base + tile * _OPENAI_MAX_TILES
    width, height = _scaled_within(*size, _OPENAI_FIT)
    shrink = min(1.0, _OPENAI_SHORT_SIDE / min(width, height))
    return base + tile * _patches(width * shrink, height * shrink, _OPENAI_TILE)


def _patches(width: float, height: float, side: int) -> int:
    """Squares of ``side`` covering a ``width`` x ``height`` image (a scaled size's part
    pixel counts as a whole one: never fewer than the provider counts)."""
    across = math.ceil(round(width, 6) / side)
    down = math.ceil(round(height, 6) / side)
    return max(1, across) * max(1, down)


def _claude_legacy(model: str) -> bool:
    """Models before Opus 4.7 (Claude 3, and 4 to 4.6), which take images up to 1,568 px."""
    found = _CLAUDE_VERSION.search(model.lower())
    if found is None:
        return False  # a model not known: the later, dearer rule
    if found.group(1) is None:
        return True  # claude-3...
    major, minor = int(found.group(1)), int(found.group(2) or 0)
    return major < 4 or (major == 4 and minor <= 6)


def _claude(model: str, size: tuple[int, int] | None) -> int:
    if _claude_legacy(model):
        if size is None:
            return _CLAUDE_LEGACY_MAX
        width, height = _scaled_within(*size, _CLAUDE_LEGACY_EDGE)
        return min(_CLAUDE_LEGACY_MAX, math.ceil(width * height / _CLAUDE_PIXELS_PER_TOKEN))
    if size is None:
        return _CLAUDE_MAX
    width, height = _scaled_within(*size, _CLAUDE_EDGE)
    return min(_CLAUDE_MAX, _patches(width, height, _CLAUDE_PATCH))


def _gemini(model: str, size: tuple[int, int] | None) -> int:
    found = _GEMINI_VERSION.search(model.lower())
    if found is not None and int(found.group(1)) >= 3:
        return _GEMINI_3_IMAGE
    if size is None:
        return _GEMINI_IMAGE * _GEMINI_MAX_TILES
    if size[0] <= _GEMINI_SMALL and size[1] <= _GEMINI_SMALL:
        return _GEMINI_IMAGE
    width, height = _scaled_within(*size, _GEMINI_FIT)
    return _GEMINI_IMAGE * min(_GEMINI_MAX_TILES, _patches(width, height, _GEMINI_TILE))
