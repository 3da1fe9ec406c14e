"""Each key shape is found in realistic lines; look-alikes (hashes, UUIDs, prose) are not."""

from __future__ import annotations

import base64
import hashlib
import random
import uuid

import pytest

from tests.unit.scan.fakes import HEX, SHAPES, fake_key, fake_line
from tollway.scan.detectors import DETECTORS
from tollway.scan.matcher import find_keys, is_plausible, shannon_entropy

BY_NAME = {detector.name: detector for detector in DETECTORS}


def test_every_detector_has_a_fake_shape_and_a_unique_name() -> None:
    assert len(BY_NAME) == len(DETECTORS)
    assert set(SHAPES) == set(BY_NAME)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_detector_finds_its_shape_in_a_realistic_line(name: str) -> None:
    line, key = fake_line(name)
    matches = find_keys(f"# settings\n{line}\nother = 1\n")
    assert [(m.detector.name, m.secret, m.line) for m in matches] == [(name, key, 2)]
    assert matches[0].column == line.index(key) + 1


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_random_keys_of_each_shape_pass_the_placeholder_filters(name: str) -> None:
    detector = BY_NAME[name]
    for seed in range(200):
        key = fake_key(name, seed)
        assert detector.pattern.search(SHAPES[name][1].format(key=key)), key[:6]
        assert is_plausible(detector, key), f"seed {seed}"


@pytest.mark.parametrize("name", sorted(d.name for d in DETECTORS if d.needs_context))
def test_generic_shapes_need_their_name_on_the_line(name: str) -> None:
    key = fake_key(name)
    assert find_keys(f'value = "{key}"\nprint("{key}")\n') == []


def test_the_most_specific_shape_wins_and_each_key_is_reported_once() -> None:
    line, key = fake_line("openai-project-key")
    matches = find_keys(line + "\n")
    assert [(m.detector.name, m.secret) for m in matches] == [("openai-project-key", key)]


def test_several_keys_on_one_line_are_reported_in_order() -> None:
    groq, xai = fake_key("groq-api-key"), fake_key("xai-api-key")
    matches = find_keys(f"KEYS={groq},{xai}\n")
    assert [m.secret for m in matches] == [groq, xai]


def test_temporary_aws_key_ids_and_their_secret_in_a_js_config() -> None:
    key_id = "ASIA" + fake_key("aws-access-key-id")[4:]
    secret = fake_key("aws-secret-access-key")
    text = f'new S3Client({{ accessKeyId: "{key_id}", secretAccessKey: "{secret}" }})\n'
    found = {m.detector.name: m.secret for m in find_keys(text)}
    assert found == {"aws-access-key-id": key_id, "aws-secret-access-key": secret}


def test_azure_keys_in_an_api_key_header_but_not_in_x_api_key() -> None:
    key = fake_key("azure-openai-api-key")
    assert [m.secret for m in find_keys(f'-H "api-key: {key}"')] == [key]
    assert [m.secret for m in find_keys(f'headers = {{"api-key": "{key}"}}')] == [key]
    assert find_keys(f'-H "x-api-key: {key}"') == []


def test_the_assigned_environment_name_is_remembered() -> None:
    key = fake_key("openai-project-key")
    assert find_keys(f"OPENAI_API_KEY={key}")[0].variable == "OPENAI_API_KEY"
    assert find_keys(f'  OPENAI_API_KEY: "{key}"')[0].variable == "OPENAI_API_KEY"
    assert find_keys(f"ENV OPENAI_API_KEY {key}")[0].variable == "OPENAI_API_KEY"
    assert find_keys(f'os.environ["OPENAI_API_KEY"] = "{key}"')[0].variable == "OPENAI_API_KEY"
    assert find_keys(f'client = OpenAI(api_key="{key}")')[0].variable is None


def test_a_line_marked_ignore_is_not_reported() -> None:
    key = fake_key("groq-api-key")
    assert find_keys(f'EXAMPLE = "{key}"  # tollway-scan: ignore\n') == []
    assert len(find_keys(f'EXAMPLE = "{key}"\n')) == 1


def test_documentation_examples_and_placeholders_are_not_keys() -> None:
    text = "\n".join(
        [
            "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            'AWS_SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYTOLLWAYKEY"',
            "aws_access_key_id = AKIAIOSFODNN7TESTKEY",
            "OPENAI_API_KEY=sk-proj-" + "x" * 74 + "T3BlbkFJ" + "x" * 74,
            "OPENAI_API_KEY=sk-...",
            "ANTHROPIC_API_KEY=sk-ant-api03-your-key-here",
            "MISTRAL_API_KEY=your_mistral_api_key_goes_here_ok",
            "GROQ_API_KEY=gsk_" + "0" * 52,
            "HF_TOKEN=hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "AZURE_OPENAI_API_KEY=<your-azure-openai-key>",
        ]
    )
    assert find_keys(text) == []


def test_hashes_uuids_and_base64_blobs_are_not_keys() -> None:
    rng = random.Random(7)
    blob = base64.b64encode(rng.randbytes(6000)).decode()
    wrapped = "\n".join(blob[i : i + 76] for i in range(0, len(blob), 76))
    digest = hashlib.sha1(b"x").hexdigest()
    text = "\n".join(
        [
            f'request_id = "{uuid.UUID(int=rng.getrandbits(128))}"',
            f"api-key-id: {uuid.UUID(int=rng.getrandbits(128))}",
            f"commit {digest}",
            f"aws_secret_access_key = {digest}",
            f"sha256: {hashlib.sha256(b'y').hexdigest()}",
            f'"integrity": "sha512-{base64.b64encode(rng.randbytes(64)).decode()}"',
            f"data:image/png;base64,{blob}",
            wrapped,
            "session = " + "".join(rng.choice(HEX) for _ in range(64)),
        ]
    )
    assert find_keys(text) == []


def test_sk_prefixes_in_prose_and_look_alike_identifiers_are_not_keys() -> None:
    text = "\n".join(
        [
            "OpenAI keys start with sk- (legacy), sk-proj- or sk-svcacct-; Anthropic's with",
            "sk-ant-api03-. Never commit a key such as sk-proj-abc123 to the repository.",
            "- (id)hf_requiredCharacteristicTypesForDisplayMetadata;",
            "_kHMSymptomhf_generatedByHomeAppForDebuggingPurposesKey,",
            "int fw_getFirmwareVersionStringFromDevice(void);",
            "int fw_ReadConfigurationFromFlashMemory;",
            'amazon.de#@#div[data-cel-widget="desktop-rhf_SponsoredProductsRemoteRHF"]',
            "const xai-model = 'grok-4';",
            "ARN=arn:aws:iam::123456789012:user/deploy",
        ]
    )
    assert find_keys(text) == []


def test_entropy_separates_random_text_from_repetition() -> None:
    assert shannon_entropy("") == 0.0
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("abcd") == pytest.approx(2.0)
