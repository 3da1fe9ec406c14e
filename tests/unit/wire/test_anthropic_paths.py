"""The canonical request's field names as the Anthropic client sent them."""

from __future__ import annotations

from typing import Any

import pytest

from tollway.wire.anthropic_paths import client_param

FORMAT = {"type": "json_schema", "schema": {"type": "object"}}


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"output_config": {"format": FORMAT}}, "output_config.format.schema"),
        ({"output_format": FORMAT}, "output_format.schema"),
        # Both sent: the parse reads output_config's, so the error is about it.
        (
            {"output_config": {"format": FORMAT}, "output_format": FORMAT},
            "output_config.format.schema",
        ),
    ],
)
def test_a_schema_is_named_where_the_client_put_it(body: dict[str, Any], named: str) -> None:
    assert client_param("response_format.json_schema.schema", body) == named
    assert client_param("response_format", body) == named.removesuffix(".schema")


def test_other_fields_keep_their_names() -> None:
    assert client_param("messages[1].content[0]", {}) == "messages[1].content[0]"
    assert client_param("response_formats", {}) == "response_formats"


def test_a_tools_function_name_is_the_tools_own() -> None:
    # A Messages request's tools are the canonical ones, in the same order.
    assert client_param("tools[2].function.name", {}) == "tools[2].name"
    assert client_param("tools[2].function.parameters", {}) == "tools[2].function.parameters"
