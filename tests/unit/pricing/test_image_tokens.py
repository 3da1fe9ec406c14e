"""One image's tokens: its size read from the header of its base64 data, and each family's
documented charge for that size (or the most one image costs, when the size is unknown)."""

from __future__ import annotations

import base64
import struct

import pytest

from tests.support import png
from tollway.pricing.image_size import JPEG_SCAN_BYTES, JPEG_SEGMENTS, image_size
from tollway.pricing.image_tokens import image_tokens


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def gif(width: int, height: int) -> bytes:
    screen = struct.pack("<HHBBB", width, height, 0, 0, 0)
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return b"GIF89a" + screen + image + b"\x3b"


def jpeg(width: int, height: int, metadata: int = 0) -> bytes:
    """A JPEG's segments up to its frame header, after ``metadata`` bytes of APP1 segments."""
    out = b"\xff\xd8"
    while metadata > 0:
        size = min(metadata, 65_000)
        out += b"\xff\xe1" + struct.pack(">H", size + 2) + b"\x00" * size
        metadata -= size
    frame = struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00"
    return out + b"\xff\xc0" + struct.pack(">H", len(frame) + 2) + frame + b"\xff\xd9"


def webp_lossy(width: int, height: int) -> bytes:
    frame = b"\x00\x00\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", width, height) + b"\x00" * 8
    body = b"WEBP" + b"VP8 " + struct.pack("<I", len(frame)) + frame
    return b"RIFF" + struct.pack("<I", len(body)) + body


def webp_lossless(width: int, height: int) -> bytes:
    bits = (width - 1) | ((height - 1) << 14)
    frame = b"\x2f" + bits.to_bytes(4, "little") + b"\x00" * 8
    body = b"WEBP" + b"VP8L" + struct.pack("<I", len(frame)) + frame
    return b"RIFF" + struct.pack("<I", len(body)) + body


def webp_extended(width: int, height: int) -> bytes:
    frame = b"\x00" * 4 + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(frame)) + frame
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize(
    "build", [png, gif, jpeg, webp_lossy, webp_lossless, webp_extended], ids=lambda b: b.__name__
)
def test_each_formats_header_gives_its_width_and_height(build: object) -> None:
    assert callable(build)
    assert image_size(_b64(build(1000, 2667))) == (1000, 2667)
    assert image_size(_b64(build(3, 1))) == (3, 1)


def test_a_jpegs_frame_is_found_after_its_metadata_segments_within_a_bound() -> None:
    assert image_size(_b64(jpeg(640, 480, metadata=150_000))) == (640, 480)
    # Metadata past the bound: the size is not looked for further (the caller assumes the most).
    assert image_size(_b64(jpeg(640, 480, metadata=JPEG_SCAN_BYTES))) is None
    # So many fill bytes or segments that the walk gives up (bounded work, whatever it says).
    filled = b"\xff\xd8" + b"\xff" * (JPEG_SEGMENTS + 1) + jpeg(640, 480)[2:]
    assert image_size(_b64(filled)) is None
    assert image_size(_b64(b"\xff\xd8" + b"\xff" * 8 + jpeg(640, 480)[2:])) == (640, 480)
    # URL-safe base64 (Gemini's inlineData may come so) reads the same.
    tall = base64.urlsafe_b64encode(jpeg(1000, 2667, metadata=3000)).decode()
    assert image_size(tall) == (1000, 2667)


@pytest.mark.parametrize(
    "data",
    [
        _b64(png(100, 100)[:20]),  # cut inside the header
        _b64(png(0, 100)),  # a size of nothing
        _b64(b"\xff\xd8\xff\xe1\x00\x00" + b"\x00" * 64),  # a segment length under 2
        _b64(b"\xff\xd8\xff\xe1\xff\xff" + b"\x00" * 64),  # a length past the data
        _b64(b"\xff\xd8\xff\xda\x00\x08" + b"\x00" * 64),  # the scan before any frame
        _b64(b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 20),  # no VP8 start code
        _b64(b"not an image at all, just some text"),
        "!!!! not base64 ****",
        "",
    ],
)
def test_a_truncated_or_lying_header_gives_no_size(data: str) -> None:
    assert image_size(data) is None


def test_a_header_claiming_a_huge_size_costs_no_more_than_the_largest_image() -> None:
    huge = _b64(png(100, 100)[:16] + struct.pack(">II", 2**31 - 1, 2**31 - 1) + b"\x08\x00")
    for provider, model in [
        ("openai", "gpt-4o"),
        ("openai", "gpt-4.1-mini"),
        ("anthropic", "claude-sonnet-4-5"),
        ("anthropic", "claude-opus-4-7"),
        ("gemini", "gemini-2.5-flash"),
    ]:
        assert image_tokens(provider, model, huge, None) <= image_tokens(
            provider, model, None, None
        )


def _tokens(provider: str, model: str, width: int, height: int, detail: str | None = None) -> int:
    return image_tokens(provider, model, _b64(png(width, height)), detail)


def test_openai_tile_models_scale_then_count_512_pixel_tiles() -> None:
    # OpenAI's own examples: 1024x1024 is 4 tiles; 2048x4096 becomes 768x1536, 6 tiles.
    assert _tokens("openai", "gpt-4o", 1024, 1024) == 85 + 170 * 4
    assert _tokens("openai", "gpt-4o", 2048, 4096) == 85 + 170 * 6
    assert _tokens("openai", "gpt-4o", 2048, 4096, "low") == 85
    assert _tokens("azure_openai", "gpt-4o", 500, 500) == 85 + 170
    # A tall picture: 768x2048 once scaled, 8 tiles, the most there is.
    assert _tokens("openai", "gpt-4o", 1000, 2667) == 85 + 170 * 8
    assert image_tokens("openai", "gpt-4o", None, "high") == 85 + 170 * 8
    assert _tokens("openai", "gpt-4o-mini", 1024, 1024) == 2833 + 5667 * 4
    assert _tokens("openai", "gpt-5", 1024, 1024) == 70 + 140 * 4
    assert _tokens("openai", "o3", 1024, 1024) == 75 + 150 * 4


def test_openai_patch_models_count_32_pixel_patches_up_to_their_cap() -> None:
    assert _tokens("openai", "gpt-4.1-mini", 1024, 1024) == math_ceil(1024 * 1.62)
    assert _tokens("openai", "gpt-5-nano", 100, 100) == math_ceil(16 * 2.46)
    assert _tokens("openai", "o4-mini", 4000, 4000) == math_ceil(1536 * 1.72)
    # Detail does not lower a patch model's charge.
    assert _tokens("openai", "gpt-4.1-mini", 1024, 1024, "low") == math_ceil(1024 * 1.62)
    assert image_tokens("openai", "gpt-4.1-mini", None, "low") == math_ceil(1536 * 1.62)


def math_ceil(value: float) -> int:
    return -int(-value // 1)


def test_claude_charges_by_area_after_its_resize() -> None:
    # Before Opus 4.7: width x height / 750, within 1,568 px and about 1,600 tokens.
    assert _tokens("anthropic", "claude-sonnet-4-5", 200, 200) == 54
    assert _tokens("anthropic", "claude-sonnet-4-20250514", 1000, 1000) == 1334
    assert _tokens("bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0", 4000, 4000) == 1600
    assert image_tokens("anthropic", "claude-haiku-4-5", None, None) == 1600
    # Opus 4.7 and later, and any model not known: 28-px patches within 2,576 px, at most 4,784.
    assert _tokens("anthropic", "claude-opus-4-7", 960, 540) == 35 * 20
    assert _tokens("anthropic", "claude-opus-4-7", 8000, 8000) == 4784
    assert image_tokens("anthropic", "sim-chat", None, None) == 4784


def test_gemini_charges_258_per_small_image_or_768_pixel_tile() -> None:
    assert _tokens("gemini", "gemini-2.5-flash", 384, 300) == 258
    assert _tokens("gemini", "gemini-2.5-flash", 1600, 900) == 258 * 3 * 2
    assert _tokens("vertex_ai", "gemini-2.0-flash", 6144, 3072) == 258 * 4 * 2
    assert image_tokens("gemini", "gemini-2.5-pro", None, None) == 258 * 16
    # Gemini 3: a fixed charge an image at the default (high) media resolution.
    assert _tokens("gemini", "gemini-3-pro-preview", 4000, 3000) == 1120


def test_an_images_size_unknown_costs_the_most_and_never_less_than_a_known_one() -> None:
    for provider, model in [
        ("openai", "gpt-4o"),
        ("openai", "gpt-4.1-nano"),
        ("anthropic", "claude-sonnet-4-5"),
        ("anthropic", "claude-opus-4-7"),
        ("gemini", "gemini-2.5-flash"),
    ]:
        most = image_tokens(provider, model, None, None)
        for width, height in [(1, 1), (512, 513), (1000, 2667), (3000, 700), (8000, 8000)]:
            assert _tokens(provider, model, width, height) <= most, (model, width, height)
