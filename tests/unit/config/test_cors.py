"""``server.cors``: origins as browsers send them, and combinations browsers would refuse."""

from __future__ import annotations

from typing import Any

import pytest

from tollway.config import ConfigError, validate_settings


def cors(**section: Any) -> Any:
    return validate_settings({"server": {"cors": section}}, source="t.yaml").server.cors


def test_cors_is_off_by_default() -> None:
    assert validate_settings({}, source="t.yaml").server.cors is None


def test_origins_are_kept_as_browsers_send_them_with_the_sdk_headers_by_default() -> None:
    section = cors(allow_origins=["https://App.Example.com", "http://localhost:5173"])
    assert section.allow_origins == ["https://app.example.com", "http://localhost:5173"]
    assert {"authorization", "x-api-key", "x-stainless-*"} <= set(section.allow_headers)
    assert "anthropic-dangerous-direct-browser-access" in section.allow_headers
    assert section.max_age == 600 and section.allow_credentials is False


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"allow_origins": ["https://app.example.com/"]}, "write 'https://app.example.com'"),
        ({"allow_origins": ["app.example.com"]}, "is not an origin"),
        ({"allow_origins": ["https://app.example.com:443"]}, "leave out the default port"),
        ({"allow_origins": ["null"]}, "any page can claim it"),
        ({"allow_origins": ["*"], "allow_credentials": True}, "allow_credentials: browsers"),
        ({"allow_origins": ["*", "https://a.example"]}, "list no other"),
        ({"admin_allow_origins": ["*"]}, "admin_allow_origins: '*' would let any page"),
        ({}, "cors needs allow_origins or admin_allow_origins"),
        ({"allow_origins": ["*"], "allow_headers": ["x api key"]}, "is not a header name"),
        ({"allow_origins": ["*"], "max_age": "-1s"}, "max_age"),
        ({"allow_origins": ["*"], "allow_methods": ["GET"]}, "allow_methods"),
    ],
)
def test_a_cors_section_browsers_would_not_honour_is_a_located_error(
    section: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        cors(**section)
    assert "server.cors" in str(raised.value)
    assert problem in str(raised.value)
