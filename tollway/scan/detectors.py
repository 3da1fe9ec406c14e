"""The key shapes ``tollway scan`` knows: one row of data per provider key kind.

Two families of rows:

* **prefix-exact**: the provider stamps a literal prefix (and often a fixed length or an
  inner marker) on every key, so the shape alone is evidence enough;
* **in context**: the key is a generic random string (32 hex, 40 alphanumerics, ...) and
  is only reported where it is assigned to a name that says what it is, such as
  ``AWS_SECRET_ACCESS_KEY = ...`` or ``"api-key": ...``, on the same line.

Order matters: when two rows match overlapping text, the earlier one wins, so the more
specific shapes (``sk-proj-``) come before the general ones (``sk-...T3BlbkFJ...``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A key is never part of a longer token: no word, base64 or dash character on either side.
# ``=`` may precede a key (``KEY=value``) but not follow it (that is base64 padding).
_BEFORE = r"(?<![A-Za-z0-9_+/-])"
_AFTER = r"(?![A-Za-z0-9_+/=-])"
# What may sit between a name and its value: quotes/brackets, then =, :, :=, =>, or a comma
# (``setdefault("NAME", "value")``), all on the same line.
_ASSIGN = r"""["'`\])]{0,2}[ \t]{0,3}(?:=>|:=|=|:|,)[ \t]{0,3}["'`]?"""


@dataclass(frozen=True, slots=True)
class Detector:
    """One key shape: where it comes from, how to find it, and how sure a match is."""

    name: str
    """Stable identifier, e.g. ``openai-project-key``."""
    provider: str
    """The gateway's provider name (``openai``, ``anthropic``, ``azure_openai``, ...)."""
    kind: str
    """What sort of key this is, for people: ``project key``, ``access key id``."""
    pattern: re.Pattern[str]
    """Matches the key (in its context, for in-context rows) with the key in group ``secret``."""
    prefix: str
    """The literal, non-secret start of every key of this shape ("" when there is none)."""
    keywords: tuple[str, ...]
    """Lower-case strings one of which a text must contain before ``pattern`` is tried."""
    hint: str
    """What a match means and how likely it is to be a live key."""
    needs_context: bool = False
    min_entropy: float = 3.0
    """Shannon entropy (bits per character) the random part must reach; placeholders fail."""
    reject: re.Pattern[str] | None = None
    """Keys matching this are something else that looks alike (e.g. a hex digest)."""
    importable: bool = True
    """Whether ``--import`` may store it as a provider credential for model traffic."""


def _prefixed(body: str) -> re.Pattern[str]:
    return re.compile(_BEFORE + "(?P<secret>" + body + ")" + _AFTER)


def _assigned(names: str, body: str) -> re.Pattern[str]:
    """``body`` right after an assignment to an identifier matching ``names`` (any case)."""
    return re.compile("(?i:" + names + ")" + _ASSIGN + "(?P<secret>" + body + ")" + _AFTER)


def _openai(prefix: str, alphabet: str = "[A-Za-z0-9_-]") -> re.Pattern[str]:
    # Every OpenAI key carries "T3BlbkFJ" ("OpenAI" in base64) between two random runs.
    run = alphabet + "{20,160}"
    return _prefixed(re.escape(prefix) + run + "T3BlbkFJ" + run)


_OPENAI_HINT = "OpenAI key shape with the T3BlbkFJ marker; very likely real"
_ADMIN_HINT = "administrative key: revoke it or keep it in a secrets manager, not the gateway"

DETECTORS: tuple[Detector, ...] = (
    Detector(
        name="anthropic-api-key",
        provider="anthropic",
        kind="API key",
        pattern=_prefixed(r"sk-ant-api03-[A-Za-z0-9_-]{93}AA"),
        prefix="sk-ant-api03-",
        keywords=("sk-ant-api03-",),
        hint="exact Anthropic shape (108 characters ending in AA); very likely real",
    ),
    Detector(
        name="anthropic-admin-key",
        provider="anthropic",
        kind="admin key",
        pattern=_prefixed(r"sk-ant-admin01-[A-Za-z0-9_-]{93}AA"),
        prefix="sk-ant-admin01-",
        keywords=("sk-ant-admin01-",),
        hint=_ADMIN_HINT,
        importable=False,
    ),
    Detector(
        name="openrouter-api-key",
        provider="openrouter",
        kind="API key",
        pattern=_prefixed(r"sk-or-v1-[0-9a-f]{64}"),
        prefix="sk-or-v1-",
        keywords=("sk-or-v1-",),
        hint="exact OpenRouter shape (sk-or-v1- and 64 hex); very likely real",
    ),
    Detector(
        name="openai-project-key",
        provider="openai",
        kind="project key",
        pattern=_openai("sk-proj-"),
        prefix="sk-proj-",
        keywords=("t3blbkfj",),
        hint=_OPENAI_HINT,
    ),
    Detector(
        name="openai-service-account-key",
        provider="openai",
        kind="service account key",
        pattern=_openai("sk-svcacct-"),
        prefix="sk-svcacct-",
        keywords=("t3blbkfj",),
        hint=_OPENAI_HINT,
    ),
    Detector(
        name="openai-admin-key",
        provider="openai",
        kind="admin key",
        pattern=_openai("sk-admin-"),
        prefix="sk-admin-",
        keywords=("t3blbkfj",),
        hint=_ADMIN_HINT,
        importable=False,
    ),
    Detector(
        name="openai-user-key",
        provider="openai",
        kind="user key",
        pattern=_openai("sk-"),
        prefix="sk-",
        keywords=("t3blbkfj",),
        hint=_OPENAI_HINT + " (legacy user key or sk-None- key)",
    ),
    Detector(
        name="groq-api-key",
        provider="groq",
        kind="API key",
        pattern=_prefixed(r"gsk_[A-Za-z0-9]{52}"),
        prefix="gsk_",
        keywords=("gsk_",),
        hint="exact Groq shape (gsk_ and 52 alphanumerics); very likely real",
    ),
    Detector(
        name="xai-api-key",
        provider="xai",
        kind="API key",
        pattern=_prefixed(r"xai-[A-Za-z0-9_-]{70,100}"),
        prefix="xai-",
        keywords=("xai-",),
        min_entropy=4.0,
        hint="xAI prefix and length (xai- and 70-100 characters); likely real",
    ),
    Detector(
        name="perplexity-api-key",
        provider="perplexity",
        kind="API key",
        pattern=_prefixed(r"pplx-[A-Za-z0-9]{48}"),
        prefix="pplx-",
        keywords=("pplx-",),
        hint="exact Perplexity shape (pplx- and 48 alphanumerics); very likely real",
    ),
    Detector(
        name="replicate-api-token",
        provider="replicate",
        kind="API token",
        pattern=_prefixed(r"r8_[A-Za-z0-9_-]{37}"),
        prefix="r8_",
        keywords=("r8_",),
        hint="exact Replicate shape (r8_ and 37 characters); very likely real",
    ),
    Detector(
        name="huggingface-access-token",
        provider="huggingface",
        kind="access token",
        pattern=_prefixed(r"hf_[A-Za-z0-9]{34}"),
        prefix="hf_",
        keywords=("hf_",),
        min_entropy=3.5,
        hint="exact Hugging Face shape (hf_ and 34 characters); likely real",
    ),
    Detector(
        name="huggingface-org-token",
        provider="huggingface",
        kind="organization token",
        pattern=_prefixed(r"api_org_[A-Za-z0-9]{34}"),
        prefix="api_org_",
        keywords=("api_org_",),
        min_entropy=3.5,
        hint="Hugging Face organization API token (legacy); likely real",
    ),
    Detector(
        name="together-api-key",
        provider="together",
        kind="API key",
        pattern=_prefixed(r"tgp_v1_[A-Za-z0-9_-]{43}"),
        prefix="tgp_v1_",
        keywords=("tgp_v1_",),
        hint="exact Together AI shape (tgp_v1_ and 43 characters); very likely real",
    ),
    Detector(
        name="fireworks-api-key",
        provider="fireworks",
        kind="API key",
        pattern=_prefixed(r"fw_[A-Za-z0-9]{20,48}"),
        prefix="fw_",
        keywords=("fw_",),
        min_entropy=3.5,
        hint="Fireworks prefix (fw_; the length is not published); likely real",
    ),
    Detector(
        name="google-api-key",
        provider="gemini",
        kind="Google API key",
        pattern=_prefixed(r"AIza[A-Za-z0-9_-]{35}"),
        prefix="AIza",
        keywords=("aiza",),
        hint="Google API key (AIza and 35 characters): Gemini or any other enabled Google API",
    ),
    Detector(
        name="aws-access-key-id",
        provider="aws",
        kind="access key id",
        pattern=_prefixed(r"(?:AKIA|ASIA)[A-Z2-7]{16}"),
        prefix="AKIA",
        keywords=("akia", "asia"),
        # AWS documentation's example key, and copies of it with the end changed.
        reject=re.compile(r".*EXAMPLE|AKIAIOSFODNN7.*"),
        hint="AWS access key id (AKIA long-term, ASIA temporary); its secret is nearby",
        importable=False,
    ),
    Detector(
        name="aws-secret-access-key",
        provider="aws",
        kind="secret access key",
        pattern=_assigned(
            r"aws[_.-]?secret[_.-]?(?:access[_.-]?)?key|secret[_.-]?access[_.-]?key",
            r"[A-Za-z0-9/+]{40}",
        ),
        prefix="",
        keywords=("secret",),
        needs_context=True,
        min_entropy=4.0,
        # A hex digest is no AWS secret; wJalrXUtnFEMI... is the documentation's example.
        reject=re.compile(r"[0-9a-f]{40}|.*EXAMPLEKEY|wJalrXUtnFEMI/K7MDENG.*"),
        hint="40 characters assigned to an AWS secret access key name",
        importable=False,
    ),
    Detector(
        name="azure-openai-api-key",
        provider="azure_openai",
        kind="API key",
        pattern=_assigned(
            r"azure[_.-]?(?:openai[_.-]?)?(?:api[_.-]?)?key|(?<![A-Za-z0-9_-])api-key",
            r"[a-f0-9]{32}|[A-Za-z0-9]{84}",
        ),
        prefix="",
        keywords=("azure", "api-key"),
        needs_context=True,
        hint="32 hex (or 84-character) key assigned to AZURE_OPENAI_API_KEY or an api-key header",
    ),
    Detector(
        name="mistral-api-key",
        provider="mistral",
        kind="API key",
        pattern=_assigned(r"mistral[A-Za-z0-9_.-]{0,30}", r"[A-Za-z0-9]{32}"),
        prefix="",
        keywords=("mistral",),
        needs_context=True,
        min_entropy=3.5,
        hint="32 alphanumerics assigned to a MISTRAL_* name",
    ),
    Detector(
        name="cohere-api-key",
        provider="cohere",
        kind="API key",
        pattern=_assigned(r"cohere[A-Za-z0-9_.-]{0,30}|co_api_key", r"[A-Za-z0-9]{40}"),
        prefix="",
        keywords=("cohere", "co_api_key"),
        needs_context=True,
        min_entropy=3.5,
        hint="40 alphanumerics assigned to a COHERE_* or CO_API_KEY name",
    ),
    Detector(
        name="deepseek-api-key",
        provider="deepseek",
        kind="API key",
        pattern=_assigned(r"deepseek[A-Za-z0-9_.-]{0,30}", r"sk-[a-f0-9]{32}"),
        prefix="sk-",
        keywords=("deepseek",),
        needs_context=True,
        hint="sk- and 32 hex assigned to a DEEPSEEK_* name",
    ),
    Detector(
        name="together-legacy-api-key",
        provider="together",
        kind="API key (legacy)",
        pattern=_assigned(r"together[A-Za-z0-9_.-]{0,30}", r"[a-f0-9]{64}"),
        prefix="",
        keywords=("together",),
        needs_context=True,
        hint="64 hex assigned to a TOGETHER_* name (keys from before tgp_v1_)",
    ),
)
"""Every shape, most specific first."""
