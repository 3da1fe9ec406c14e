"""Notebook findings carry the cell, the line within it, and the line in the file."""

from __future__ import annotations

import json
from typing import Any

from tests.unit.scan.fakes import fake_key
from tollway.scan.notebooks import notebook_texts
from tollway.scan.scanner import scan_text


def _code(source: str, outputs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "cell_type": "code",
        "execution_count": 1,
        "metadata": {},
        "source": source.splitlines(keepends=True),
        "outputs": outputs or [],
    }


def _notebook(*cells: dict[str, Any]) -> str:
    # Jupyter writes one JSON value per line with a one-space indent.
    document = {"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(document, indent=1) + "\n"


def test_keys_in_sources_and_outputs_are_placed_by_cell_and_line() -> None:
    openai_key, groq_key = fake_key("openai-project-key"), fake_key("groq-api-key")
    raw = _notebook(
        {"cell_type": "markdown", "metadata": {}, "source": ["# Demo\n"]},
        _code(f'import openai\n\nclient = openai.OpenAI(api_key="{openai_key}")\n'),
        _code(
            "print(os.environ)",
            [
                {"output_type": "stream", "name": "stdout", "text": ["env:\n", f"{groq_key}\n"]},
                {"output_type": "display_data", "data": {"image/png": "iVBORw0KGgo="}},
            ],
        ),
    )
    findings = scan_text("demo.ipynb", raw)
    assert [(f.secret, f.location.cell, f.location.cell_line) for f in findings] == [
        (openai_key, 2, 3),
        (groq_key, 3, 2),
    ]
    assert [f.location.in_output for f in findings] == [False, True]
    file_lines = raw.splitlines()
    for finding in findings:
        assert finding.secret in file_lines[finding.location.line - 1]
    assert findings[0].location.describe().startswith("demo.ipynb:")
    assert findings[0].location.describe().endswith("(cell 2, line 3)")
    assert findings[1].location.describe().endswith("(cell 3 output, line 2)")


def test_the_same_key_in_two_cells_gets_each_its_own_file_line() -> None:
    key = fake_key("anthropic-api-key")
    raw = _notebook(_code(f"KEY = '{key}'\n"), _code("x = 1\n"), _code(f"\nKEY = '{key}'\n"))
    findings = scan_text("twice.ipynb", raw)
    assert [(f.location.cell, f.location.cell_line) for f in findings] == [(1, 1), (3, 2)]
    assert findings[0].location.line < findings[1].location.line


def test_execute_results_json_data_and_tracebacks_are_read() -> None:
    keys = [fake_key("groq-api-key", seed) for seed in range(3)]
    outputs: list[dict[str, Any]] = [
        {"output_type": "execute_result", "data": {"text/plain": [f"'{keys[0]}'"]}},
        {"output_type": "display_data", "data": {"application/json": {"key": keys[1]}}},
        {"output_type": "error", "ename": "E", "evalue": "", "traceback": [f"bad {keys[2]}"]},
    ]
    findings = scan_text("out.ipynb", _notebook(_code("run()\n", outputs)))
    assert sorted(f.secret for f in findings) == sorted(keys)
    assert all(f.location.in_output and f.location.cell == 1 for f in findings)


def test_a_notebook_that_is_not_json_is_scanned_as_text() -> None:
    key = fake_key("groq-api-key")
    findings = scan_text("broken.ipynb", f'{{"cells": [\n  "GROQ_API_KEY={key}"\n')
    assert [(f.location.line, f.location.cell) for f in findings] == [(2, None)]
    assert notebook_texts("[1, 2]") is None
