"""The lines that replace a key: base URL and virtual key in settings, a hint in code."""

from __future__ import annotations

import pytest

from tests.unit.scan.fakes import fake_line
from tollway.scan.findings import Finding
from tollway.scan.migration import is_settings_file, replacement_lines
from tollway.scan.scanner import scan_text

GATEWAY = "https://gateway.internal:8080/"
VIRTUAL = "tw-virtual-key-for-tests"


def _finding(path: str, detector: str) -> Finding:
    [finding] = scan_text(path, fake_line(detector)[0] + "\n")
    return finding


def test_openai_and_anthropic_keys_in_dotenv_files_become_base_url_and_virtual_key() -> None:
    finding = _finding(".env", "anthropic-api-key")
    assert replacement_lines(finding, GATEWAY, VIRTUAL) == (
        "ANTHROPIC_BASE_URL=https://gateway.internal:8080",
        f"ANTHROPIC_API_KEY={VIRTUAL}",
    )
    finding = _finding("billing/.env.production", "openai-service-account-key")
    assert replacement_lines(finding, GATEWAY, VIRTUAL) == (
        "OPENAI_BASE_URL=https://gateway.internal:8080/v1",
        f"OPENAI_API_KEY={VIRTUAL}",
    )


def test_other_providers_keep_their_variable_and_get_the_openai_compatible_url() -> None:
    lines = replacement_lines(
        _finding("deploy/Dockerfile", "replicate-api-token"), GATEWAY, VIRTUAL
    )
    assert lines == (
        "# replicate through the gateway: use an OpenAI-compatible client at "
        "https://gateway.internal:8080/v1",
        "OPENAI_BASE_URL=https://gateway.internal:8080/v1",
        f"REPLICATE_API_TOKEN={VIRTUAL}",
    )


def test_a_key_in_code_gets_a_suggestion() -> None:
    lines = replacement_lines(_finding("app/main.py", "openai-project-key"), GATEWAY, VIRTUAL)
    assert lines == (
        "# read the key from $OPENAI_API_KEY instead of this literal, and set "
        f"OPENAI_API_KEY={VIRTUAL} and OPENAI_BASE_URL=https://gateway.internal:8080/v1",
    )
    lines = replacement_lines(_finding("app/main.py", "mistral-api-key"), GATEWAY, VIRTUAL)
    assert lines[-1].startswith("# read the key from $MISTRAL_API_KEY instead")


@pytest.mark.parametrize(
    ("path", "settings"),
    [
        (".env", True),
        ("svc/.env.local", True),
        ("Dockerfile", True),
        ("docker/Dockerfile.prod", True),
        ("ci.yml", True),
        ("pyproject.toml", True),
        ("Makefile", True),
        ("app.py", False),
        ("index.ts", False),
        ("notebook.ipynb", False),
    ],
)
def test_settings_files_are_told_from_code(path: str, settings: bool) -> None:
    assert is_settings_file(path) is settings
