"""Keys are shown as prefix, a few characters and the last four; never in full."""

from __future__ import annotations

import pytest

from tests.unit.scan.fakes import SHAPES, fake_key
from tollway.scan.detectors import DETECTORS
from tollway.scan.findings import Finding, Location
from tollway.scan.masking import ELLIPSIS, fingerprint, mask

BY_NAME = {detector.name: detector for detector in DETECTORS}


def test_a_project_key_shows_its_prefix_two_characters_and_the_last_four() -> None:
    key = fake_key("openai-project-key")
    assert mask(key, "sk-proj-") == key[:10] + ELLIPSIS + key[-4:]


def test_a_key_without_a_known_prefix_shows_four_and_four() -> None:
    key = fake_key("mistral-api-key")
    assert mask(key) == key[:4] + ELLIPSIS + key[-4:]


def test_short_keys_show_less() -> None:
    key = fake_key("aws-access-key-id")
    assert mask(key, "AKIA") == key[:6] + ELLIPSIS + key[-2:]
    assert mask("sk-abc", "sk-") == "sk-" + ELLIPSIS


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_at_most_a_quarter_of_the_random_part_is_visible(name: str) -> None:
    detector = BY_NAME[name]
    key = fake_key(name)
    masked = mask(key, detector.prefix)
    random_length = len(key) - len(detector.prefix)
    visible = len(masked) - len(ELLIPSIS) - len(detector.prefix)
    assert masked.startswith(detector.prefix)
    assert key not in masked
    assert visible * 4 <= random_length


def test_fingerprints_are_stable_short_and_distinct() -> None:
    first, second = fake_key("groq-api-key", 1), fake_key("groq-api-key", 2)
    assert fingerprint(first) == fingerprint(first)
    assert fingerprint(first) != fingerprint(second)
    assert len(fingerprint(first)) == 12
    assert first not in fingerprint(first)


def test_a_finding_never_shows_its_key_in_repr_or_json() -> None:
    key = fake_key("anthropic-api-key")
    finding = Finding(Location(".env", 1, 19), BY_NAME["anthropic-api-key"], key, "X")
    assert key not in repr(finding)
    assert key not in str(finding.to_json())
    assert finding.to_json()["masked"] == finding.masked == mask(key, "sk-ant-api03-")
