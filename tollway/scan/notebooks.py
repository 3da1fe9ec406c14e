"""Jupyter notebooks as the texts a person sees: each cell's source and each output."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class CellText:
    """The source of cell ``cell`` (1-based), or one of its outputs when ``in_output``."""

    cell: int
    in_output: bool
    text: str


def notebook_texts(raw: str) -> list[CellText] | None:
    """The texts of an ``.ipynb`` document, or None when it is not a v4 notebook."""
    try:
        document = json.loads(raw)
    except ValueError:
        return None
    cells = document.get("cells") if isinstance(document, dict) else None
    if not isinstance(cells, list):
        return None
    texts: list[CellText] = []
    for number, cell in enumerate(cells, start=1):
        if not isinstance(cell, dict):
            continue
        texts.append(CellText(number, False, _joined(cell.get("source"))))
        outputs = cell.get("outputs")
        for output in outputs if isinstance(outputs, list) else ():
            texts.extend(CellText(number, True, text) for text in _output_texts(output))
    return [text for text in texts if text.text]


def _output_texts(output: Any) -> list[str]:
    """The human-readable parts of one output: stream text, text/* data, tracebacks."""
    if not isinstance(output, dict):
        return []
    texts = [_joined(output.get("text")), "\n".join(_strings(output.get("traceback")))]
    data = output.get("data")
    if isinstance(data, dict):
        for mime_type, value in data.items():
            if mime_type.startswith("text/"):
                texts.append(_joined(value))
            elif mime_type.endswith("json"):
                texts.append(json.dumps(value, indent=1))
    return [text for text in texts if text]


def _joined(value: Any) -> str:
    """Notebook text fields are a string or a list of lines (each keeping its newline)."""
    if isinstance(value, str):
        return value
    return "".join(_strings(value))


def _strings(value: Any) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []
