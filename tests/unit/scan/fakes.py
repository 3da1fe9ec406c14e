"""Fake provider keys of the right shapes, made at run time: no real key is ever committed."""

from __future__ import annotations

import random
import string
from collections.abc import Callable

ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "_-"
HEX = "0123456789abcdef"
BASE32 = string.ascii_uppercase + "234567"


def text(rng: random.Random, alphabet: str, length: int) -> str:
    """``length`` random characters from ``alphabet``."""
    return "".join(rng.choice(alphabet) for _ in range(length))


def _openai(prefix: str, run: int, alphabet: str = URLSAFE) -> Callable[[random.Random], str]:
    return lambda rng: prefix + text(rng, alphabet, run) + "T3BlbkFJ" + text(rng, alphabet, run)


def _shape(
    prefix: str, alphabet: str, length: int, suffix: str = ""
) -> Callable[[random.Random], str]:
    return lambda rng: prefix + text(rng, alphabet, length) + suffix


# detector name -> (make a fake key, a realistic line holding it)
SHAPES: dict[str, tuple[Callable[[random.Random], str], str]] = {
    "anthropic-api-key": (_shape("sk-ant-api03-", URLSAFE, 93, "AA"), "ANTHROPIC_API_KEY={key}"),
    "anthropic-admin-key": (
        _shape("sk-ant-admin01-", URLSAFE, 93, "AA"),
        'admin = Anthropic(api_key="{key}")',
    ),
    "openrouter-api-key": (_shape("sk-or-v1-", HEX, 64), 'OPENROUTER_API_KEY: "{key}"'),
    "openai-project-key": (_openai("sk-proj-", 74), 'client = OpenAI(api_key="{key}")'),
    "openai-service-account-key": (_openai("sk-svcacct-", 58), "export OPENAI_API_KEY={key}"),
    "openai-admin-key": (_openai("sk-admin-", 58), 'const adminKey = "{key}";'),
    "openai-user-key": (_openai("sk-", 20, ALNUM), "openai.api_key = '{key}'"),
    "groq-api-key": (_shape("gsk_", ALNUM, 52), "GROQ_API_KEY={key}"),
    "xai-api-key": (_shape("xai-", ALNUM, 80), "XAI_API_KEY={key}"),
    "perplexity-api-key": (_shape("pplx-", ALNUM, 48), "  - PERPLEXITY_API_KEY={key}"),
    "replicate-api-token": (_shape("r8_", ALNUM, 37), "ENV REPLICATE_API_TOKEN={key}"),
    "huggingface-access-token": (_shape("hf_", ALNUM, 34), "huggingface-cli login --token {key}"),
    "huggingface-org-token": (_shape("api_org_", ALNUM, 34), "use_auth_token='{key}'"),
    "together-api-key": (_shape("tgp_v1_", URLSAFE, 43), 'together_key = "{key}"'),
    "fireworks-api-key": (_shape("fw_", ALNUM, 24), 'FIREWORKS_API_KEY="{key}"'),
    "google-api-key": (_shape("AIza", URLSAFE, 35), 'genai.configure(api_key="{key}")'),
    "aws-access-key-id": (_shape("AKIA", BASE32, 16), "aws_access_key_id = {key}"),
    "aws-secret-access-key": (
        _shape("", ALNUM + "/+", 40),
        "aws_secret_access_key = {key}",
    ),
    "azure-openai-api-key": (_shape("", HEX, 32), "AZURE_OPENAI_API_KEY={key}"),
    "mistral-api-key": (_shape("", ALNUM, 32), 'os.environ["MISTRAL_API_KEY"] = "{key}"'),
    "cohere-api-key": (_shape("", ALNUM, 40), "CO_API_KEY={key}"),
    "deepseek-api-key": (_shape("sk-", HEX, 32), "deepseek_api_key: {key}"),
    "together-legacy-api-key": (_shape("", HEX, 64), "TOGETHER_API_KEY={key}"),
}


def fake_key(detector: str, seed: int = 0) -> str:
    """A random key of ``detector``'s shape (the same one for the same seed)."""
    return SHAPES[detector][0](random.Random(f"{detector}/{seed}"))


def fake_line(detector: str, seed: int = 0) -> tuple[str, str]:
    """A realistic line holding a fake key of ``detector``'s shape, and the key."""
    key = fake_key(detector, seed)
    return SHAPES[detector][1].format(key=key), key
