"""Gemini's grounding as URL citations: bytes of a part to characters of the answer."""

from __future__ import annotations

from typing import Any

from tollway.core.types import UrlCitation
from tollway.wire.gemini_grounding import citations_from_grounding
from tollway.wire.gemini_response import response_from_wire

SOURCES = [
    {"web": {"uri": "https://a.example/", "title": "a.example"}},
    {"retrievedContext": {"uri": "gs://bucket/doc", "title": "doc"}},
    {"maps": {"uri": "https://maps.example/p", "title": "Place"}},
]


def grounding(*supports: dict[str, Any]) -> dict[str, Any]:
    return {"groundingChunks": SOURCES, "groundingSupports": list(supports)}


def support(start: int, end: int, text: str, part: int = 0, chunks: Any = (0,)) -> Any:
    segment = {"startIndex": start, "endIndex": end, "text": text}
    if part:
        segment["partIndex"] = part
    return {"segment": segment, "groundingChunkIndices": list(chunks)}


def test_byte_offsets_of_a_later_part_are_characters_of_the_whole_text() -> None:
    parts = [{"text": "thinking", "thought": True}, {"text": "Né à "}, {"text": "Zürich, Schweiz"}]
    # "Schweiz" starts at byte 9 of the third part ("Zürich, " is 8 characters, 9 bytes).
    cited = citations_from_grounding(grounding(support(9, 16, "Schweiz", part=2)), parts)
    assert cited == [UrlCitation("https://a.example/", "a.example", 13, 20)]
    assert ("Né à " + "Zürich, Schweiz")[13:20] == "Schweiz"


def test_web_and_maps_sources_are_cited_other_chunks_are_not() -> None:
    parts = [{"text": "near here"}]
    cited = citations_from_grounding(grounding(support(5, 9, "here", chunks=(0, 1, 2, 7))), parts)
    assert [(c.url, c.start, c.end) for c in cited or ()] == [
        ("https://a.example/", 5, 9),
        ("https://maps.example/p", 5, 9),
    ]


def test_a_segment_whose_offsets_miss_its_text_is_found_by_it_or_left_out() -> None:
    parts = [{"text": "one two three"}]
    moved = citations_from_grounding(grounding(support(0, 3, "three")), parts)
    assert [(c.start, c.end) for c in moved or ()] == [(8, 13)]
    assert citations_from_grounding(grounding(support(0, 3, "four")), parts) is None


def test_an_answer_without_supports_cites_nothing_and_keeps_its_metadata() -> None:
    metadata = {"groundingChunks": SOURCES, "webSearchQueries": ["q"]}
    raw = {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": "hi"}]},
                "finishReason": "STOP",
                "groundingMetadata": metadata,
            }
        ]
    }
    choice = response_from_wire(raw).choices[0]
    assert choice.message.citations is None
    assert choice.extra["groundingMetadata"] == metadata
