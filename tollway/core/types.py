"""Canonical request and response types shared by every stage of the pipeline.

Dialects (what the client speaks) and providers (what the upstream speaks) translate to and
from these types at the edges; nothing in between sees a wire format. Fields a type does not
model are kept in ``extra`` so a same-family hop (OpenAI client to OpenAI-compatible
upstream) passes them through untouched, while a cross-family hop can ignore them.
``wire_format`` names the format a value was parsed from, which says whose ``extra`` it is
(``tollway/wire/crossing.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from tollway.config.types import SecretRef

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]
"""``function``: a legacy function call's result (OpenAI's deprecated role), which only an
OpenAI-format deployment is sent (``crossing.request_for``)."""
JSON = dict[str, Any]


@dataclass(slots=True)
class TextPart:
    """A run of text inside a message."""

    text: str
    extra: JSON = field(default_factory=dict)
    citations: list[DocumentCitation] | None = None
    """The passages of the request's documents this text quotes (a provider's citations read
    by its codec), for the formats that say them (Anthropic's ``citations`` on a text block)."""


@dataclass(slots=True)
class DocumentCitation:
    """A passage of one of the request's documents that an answer's text cites: characters
    (``char``), pages (``page``, from 1) or content blocks (``block``) ``start`` to ``end``
    (end excluded) of the ``document_index``-th document of the request, as Anthropic's
    ``char_location`` / ``page_location`` / ``content_block_location`` say it."""

    kind: Literal["char", "page", "block"]
    document_index: int
    start: int
    end: int
    cited_text: str
    document_title: str | None = None


@dataclass(slots=True)
class ImagePart:
    """An image given by URL or as base64 data with its media type."""

    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    detail: str | None = None
    extra: JSON = field(default_factory=dict)


PDF = "application/pdf"
PLAIN_TEXT = "text/plain"


@dataclass(slots=True)
class DocumentPart:
    """A document for the model to read: a PDF as base64 ``data`` (``media_type``
    ``application/pdf``) or by ``url``, or plain ``text`` (``text/plain``), with the name or
    title the client gave it. Anthropic's ``document`` block, OpenAI's ``file`` part with
    ``file_data``, a Responses ``input_file`` with ``file_url``."""

    media_type: str
    data: str | None = None
    text: str | None = None
    name: str | None = None
    extra: JSON = field(default_factory=dict)
    url: str | None = None
    """A PDF the provider fetches (Anthropic's ``url`` source): only Claude on Anthropic's API
    and OpenAI's Responses API fetch files, so other families refuse it (``crossing.py``)."""


@dataclass(slots=True)
class OpaquePart:
    """A content part the gateway does not model (audio, files...), kept as sent.

    Same-family upstreams get it back unchanged; other families reject it by name.
    """

    type: str
    data: JSON


GEMINI_SIGNATURE_PREFIX = "gemini:"
"""Starts the canonical signature of a Gemini ``thoughtSignature`` (the signature follows).
Claude's signatures are base64, which has no ``:``, so the two cannot be mistaken for each
other once a client of another API has carried them (as a ``thinking`` block's
``signature``)."""


@dataclass(slots=True)
class ReasoningPart:
    """What the model reasoned before it answered: Anthropic's ``thinking`` and
    ``redacted_thinking`` blocks, Bedrock's ``reasoningContent``, Gemini's thought summaries
    and thought signatures, the ``reasoning_content`` of an OpenAI-compatible server
    (DeepSeek, vLLM, ...).

    A provider that signs its reasoning (Claude, directly or on Bedrock) wants it back, text
    and ``signature`` unchanged, when a conversation is replayed; reasoning without one
    (``None``: an OpenAI-compatible server's, or made by the gateway) cannot be verified, so
    no provider is sent it back.
    """

    text: str = ""
    signature: str | None = None
    redacted: str | None = None
    """Reasoning the provider encrypted (Anthropic's ``redacted_thinking`` ``data``, Bedrock's
    ``redactedContent`` as its JSON carries it, base64): opaque, sent back as it came."""
    extra: JSON = field(default_factory=dict)

    @property
    def signed(self) -> bool:
        """Whether a provider vouches for it (it may be replayed to that provider)."""
        return bool(self.signature) or self.redacted is not None

    @property
    def signer(self) -> Literal["claude", "gemini"] | None:
        """Whose signature it carries, the only provider it may go back to: ``gemini`` for
        a Gemini thought signature (``GEMINI_SIGNATURE_PREFIX``), ``claude`` for any other
        signature or encrypted reasoning, ``None`` when unsigned."""
        if self.signature and self.signature.startswith(GEMINI_SIGNATURE_PREFIX):
            return "gemini"
        return "claude" if self.signed else None


ContentPart = TextPart | ImagePart | DocumentPart | OpaquePart | ReasoningPart


@dataclass(slots=True)
class ToolCall:
    """A function call the model asked for; ``arguments`` is the JSON text."""

    id: str
    name: str
    arguments: str
    extra: JSON = field(default_factory=dict)
    position: int | None = None
    """Where the call stood among its turn's blocks: how many of the message's content parts
    came before it; ``None``: after all of them. Set by codecs whose turns interleave text and
    calls in one list (Anthropic, Bedrock) and honoured by those that write such lists, so the
    client's block order survives (Anthropic wants a turn with thinking back exactly as its
    model wrote it)."""


@dataclass(slots=True)
class UrlCitation:
    """A web source an answer cites for its text from ``start`` to ``end`` (characters of
    the message's text, end excluded), as OpenAI's ``url_citation`` annotation says it."""

    url: str
    title: str
    start: int
    end: int


@dataclass(slots=True)
class Message:
    """One turn of a conversation."""

    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    extra: JSON = field(default_factory=dict)
    citations: list[UrlCitation] | None = None
    """The web sources an answer cites (a provider's grounding, read by its codec), for the
    formats that say them (OpenAI's ``annotations``)."""
    web_searches: list[str] | None = None
    """The queries of the web searches the provider ran before answering (Anthropic's
    ``server_tool_use`` blocks), for the formats that say them (Responses'
    ``web_search_call`` items)."""

    def text(self) -> str:
        """The message's text parts joined; images are left out."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content if isinstance(part, TextPart))


@dataclass(slots=True)
class Tool:
    """A function the model may call, described by a JSON schema."""

    name: str
    description: str | None = None
    parameters: JSON | None = None
    strict: bool | None = None
    extra: JSON = field(default_factory=dict)
    function_extra: JSON = field(default_factory=dict)
    """The fields of an OpenAI-format tool's ``function`` object beside its name,
    description, parameters and strict (``extra`` is the tool's own), in the request's
    ``wire_format``'s terms: an OpenAI-format deployment is sent them as they came."""


@dataclass(slots=True)
class ToolChoice:
    """``auto``, ``none``, ``required`` (any tool) or one named function."""

    mode: Literal["auto", "none", "required", "function"]
    name: str | None = None


@dataclass(slots=True)
class ResponseFormat:
    """Structured output: plain text, any JSON object, or JSON matching a schema."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSON | None = None


@dataclass(slots=True)
class Usage:
    """Token counts of one request. ``input_tokens`` includes cached and cache-write tokens."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    extra: JSON = field(default_factory=dict)
    cache_write_1h_tokens: int = 0
    """Of ``cache_write_tokens``, those written for an hour (Anthropic's ``ttl: 1h``), which
    are billed at a higher rate than five-minute writes."""
    tool_calls: dict[str, int] | None = None
    """Calls of the provider's own (server-side) tools, billed per call on top of tokens, by
    kind (``web_search``, ``file_search``, ``web_fetch``: ``pricing/tools.py``); ``None``:
    none reported."""

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class ResponsesOnly:
    """A field of a Responses request that only a deployment speaking OpenAI's Responses API
    can serve (a built-in tool, ``previous_response_id``, ...): the router passes over the
    other candidates, and refuses the request by this field's name when none is left."""

    param: str
    """The field as the client named it (``tools[0].type``, ``previous_response_id``)."""
    why: str
    """What the field is, as the start of the client's 400 (it names the field)."""
    translated_for: frozenset[str] = frozenset()
    """The provider families whose codecs translate the field (a ``web_search`` tool:
    Anthropic's web search), which the router keeps among the candidates too."""


@dataclass(slots=True)
class WebSearch:
    """A web search the model may run on the provider's side (a Responses client's
    ``web_search`` tool), written by the codecs of the families that have one."""

    allowed_domains: list[str] | None = None
    user_location: JSON | None = None
    """Where the user is: ``city``, ``region``, ``country`` (ISO code), ``timezone``."""
    max_uses: int | None = None
    """The most searches it may run (the Responses API's ``max_tool_calls``)."""


@dataclass(slots=True)
class ChatRequest:
    """A chat completion request, whatever dialect it arrived in."""

    model: str
    messages: list[Message]
    stream: bool = False
    include_usage: bool = False
    include_obfuscation: bool | None = None
    """OpenAI's ``stream_options.include_obfuscation`` as the client sent it (``None``: not
    sent). Only OpenAI's own API pads stream events with an ``obfuscation`` field (by
    default), so only it is sent the choice; other upstreams never pad."""
    stream_options_extra: JSON | None = None
    """The client's other ``stream_options`` (vLLM's ``continuous_usage_stats``), in
    ``wire_format``'s terms: a streamed request to an upstream that takes ``stream_options``
    is sent them; one that refuses the field, or another family, makes each that asks
    something a 400 naming it. ``None``: none."""
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    """Sample from the ``top_k`` likeliest tokens: Anthropic's ``top_k``, Gemini's ``topK``,
    Claude's ``top_k`` on Bedrock; Chat Completions has none (``crossing.TAKES_TOP_K``)."""
    n: int | None = None
    stop: list[str] | None = None
    seed: int | None = None
    user: str | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    extra: JSON = field(default_factory=dict)
    upstream_headers: dict[str, str] = field(default_factory=dict)
    """Client headers that policy (``upstream.forward_headers``) lets through to the provider."""
    wire_format: str | None = None
    """The wire format this was parsed from (its ``extra`` fields, at every level, are in its
    terms); ``None`` when built in code."""
    limit_named_by_client: bool = True
    """In a request tagged ``openai``: the client named the output limit in Chat Completions'
    terms (``max_tokens`` or ``max_completion_tokens``), so an OpenAI upstream is sent that
    name. ``False`` for a Responses request (``max_output_tokens``): the upstream gets the
    name it prefers, as for a request from another format."""
    thinking: JSON | None = None
    """Extended thinking as the client asked for it, in Anthropic's terms (``{"type":
    "enabled", "budget_tokens": N}``, ``{"type": "adaptive"}``, ...); ``None``: not asked.
    Claude takes the object as it is (Anthropic's API; Bedrock in
    ``additionalModelRequestFields``); OpenAI-compatible servers have no budget to take and
    reason as their model does (the client is shown that reasoning)."""
    reasoning_summary: str | None = None
    """A Responses client's ``reasoning.summary`` (``auto``, ``concise`` or ``detailed``): it
    asks to see a summary of the model's reasoning; ``None``: not asked. It turns no reasoning
    on (the effort does): Gemini is asked for its thought summaries (``includeThoughts``),
    Claude on Anthropic's API for summarized thinking (``thinking.display``); Chat Completions
    has no such field, so an OpenAI-format upstream is sent nothing."""
    responses_body: JSON | None = None
    """A Responses client's body as it sent it (``None``: not a Responses request). A
    deployment that speaks the Responses API (``Deployment.responses_api``) is sent it, the
    model and output limit as the gateway decided them, and its answer in that API's own
    format (``wire/responses_upstream.py``) goes to the client as it came."""
    responses_route: str = ""
    """Where under the Responses API's ``/responses`` the body goes: ``""`` to create a
    response, ``"/compact"`` to compact a conversation (``POST /v1/responses/compact``)."""
    responses_only: ResponsesOnly | None = None
    """The first field of ``responses_body`` that only a deployment speaking the Responses API
    can serve; ``None``: any candidate can (the canonical request holds all of it)."""
    web_search: WebSearch | None = None
    """A Responses client's ``web_search`` tool, for the families that translate it
    (``ResponsesOnly.translated_for``); ``None``: none offered."""
    truncation: Literal["auto", "disabled"] = "disabled"
    """A Responses client's ``truncation``: ``auto`` lets the router drop the oldest turns of
    a conversation that no candidate's context window holds, until it fits the largest
    (``routing/truncation.py``); ``disabled``: such a request is a 400."""
    kept_messages: list[int] | None = None
    """After the router dropped the oldest turns, the index in the messages as parsed of each
    message left (the dialect names a message's field as the client sent it); ``None``: none
    dropped."""
    answer_as_is: bool = False
    """A complete answer in ``wire_format`` goes to the client as the upstream's bytes and
    nothing reads its content: the provider may leave the response's ``choices`` empty and
    parse only what accounting needs. Set by a dialect that sends ``ChatResponse.raw``; the
    pipeline clears it when a stage reads answers (``Stage.reads_answers``)."""
    wire_body: JSON | None = None
    """The client's body, when it is plain enough that the canonical request says exactly what
    it says (``wire_format``'s codec sets it: plain messages and fields of their usual types):
    an upstream of the same format may be sent it with only the model replaced instead of a
    body encoded from the canonical request. The pipeline clears it before any stage that may
    change the request runs (``Stage.writes_requests``)."""


FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]


@dataclass(slots=True)
class TokenLogprob:
    """One token of an answer with its log probability and, when asked, the likeliest
    tokens at its step (``top``, as OpenAI's ``top_logprobs``)."""

    token: str
    logprob: float
    top: list[TokenLogprob] = field(default_factory=list)


@dataclass(slots=True)
class Choice:
    """One generated alternative of a non-streaming response."""

    index: int
    message: Message
    finish_reason: FinishReason | None
    stop_sequence: str | None = None
    extra: JSON = field(default_factory=dict)
    logprobs: list[TokenLogprob] | None = None
    """The answer's tokens' log probabilities from a provider that says them in its own
    shape (Gemini's ``logprobsResult``; an OpenAI-format upstream's stay in ``extra``)."""


@dataclass(slots=True)
class ChatResponse:
    """A complete (non-streaming) chat completion."""

    id: str
    model: str
    created: int
    choices: list[Choice]
    usage: Usage | None = None
    extra: JSON = field(default_factory=dict)
    wire_format: str | None = None
    """The wire format this was parsed from; see ``ChatRequest.wire_format``."""
    raw: bytes | None = None
    """The upstream's body exactly as received (in ``wire_format``), so a client of the same
    format is sent it as it came instead of re-encoded. A stage that changes a response must
    set this to ``None``."""


@dataclass(slots=True)
class ToolCallDelta:
    """A fragment of a streamed tool call; id and name come with the first fragment."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    extra: JSON | None = None
    """The fragment's own fields beside its index, id, type and function, in the chunk's
    ``wire_format``'s terms (the ``extra_content`` Gemini's OpenAI-compatible API signs a
    call with); ``None``: none."""


@dataclass(slots=True)
class ReasoningDelta:
    """A piece of streamed reasoning: text, the signature that ends a signed block, or a
    whole block of encrypted reasoning (see ``ReasoningPart``)."""

    text: str = ""
    signature: str | None = None
    redacted: str | None = None


@dataclass(slots=True)
class ChunkChoice:
    """The delta of one alternative within a stream chunk."""

    index: int
    role: Role | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    finish_reason: FinishReason | None = None
    stop_sequence: str | None = None
    extra: JSON = field(default_factory=dict)
    reasoning: ReasoningDelta | None = None
    """Reasoning streamed before the answer, from formats that say it in their own blocks
    (Bedrock); an OpenAI-format upstream's stays in ``extra`` as it came (``reasoning_content``,
    ``reasoning``), read by the writers of other formats (``wire/crossing.py``)."""
    choice_extra: JSON | None = None
    """The choice's own fields beside its index, delta and finish reason (``extra`` is the
    delta's), in ``wire_format``'s terms: an OpenAI chunk's ``logprobs`` (when not null),
    Azure's ``content_filter_results``; ``None``: none."""
    logprobs: list[TokenLogprob] | None = None
    """The log probabilities of the tokens of ``content`` (as ``Choice.logprobs``)."""
    citations: list[DocumentCitation] | None = None
    """The document passages ``content`` quotes, whole with its text (a provider's citations
    read by its codec, as ``TextPart.citations``), for the formats that say them."""
    web_searches: list[str] | None = None
    """The queries of web searches the provider ran (as ``Message.web_searches``): before
    ``content`` when no answer text came before them, else after it (Gemini's grounding,
    told with or after the text it grounds)."""
    url_citations: list[UrlCitation] | None = None
    """Web sources the answer's text streamed so far cites, once the cited stretch is whole
    (as ``Message.citations``, counted in characters of the whole answer's text)."""


@dataclass(slots=True)
class ChatChunk:
    """One event of a streamed chat completion; the last may carry only ``usage``."""

    id: str
    model: str
    created: int
    choices: list[ChunkChoice]
    usage: Usage | None = None
    extra: JSON = field(default_factory=dict)
    wire_format: str | None = None
    """The wire format this was parsed from; see ``ChatRequest.wire_format``."""
    raw: bytes | None = None
    """The upstream event's JSON exactly as received (in ``wire_format``), so a client of the
    same format is sent it as it came instead of re-encoded. A stage that changes a chunk
    must set this to ``None``."""
    usage_so_far: Usage | None = None
    """Usage the upstream reported before its end, counting what came up to this chunk:
    Anthropic's ``message_start`` (input and cache tokens) and ``message_delta`` (cumulative
    output), Gemini's running ``usageMetadata``. Not the answer's usage (``usage``): only
    what an estimate starts from when the stream is cut before that comes."""


@dataclass(slots=True)
class EmbeddingRequest:
    """Texts (or token arrays) to embed."""

    model: str
    input: list[str] | list[list[int]]
    dimensions: int | None = None
    encoding_format: Literal["float", "base64"] | None = None
    user: str | None = None
    extra: JSON = field(default_factory=dict)
    upstream_headers: dict[str, str] = field(default_factory=dict)
    """Client headers that policy (``upstream.forward_headers``) lets through to the provider."""


@dataclass(slots=True)
class EmbeddingResponse:
    """Embeddings in input order; each is a float list or base64 text, as requested."""

    model: str
    data: list[list[float] | str]
    usage: Usage
    extra: JSON = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UpstreamTimeouts:
    """Seconds allowed to connect, to the first byte, between stream events, in total."""

    connect: float
    first_byte: float
    total: float
    gap: float | None = None
    """Between a stream's events once the first has come; ``None``: ``first_byte``'s value.
    Set where ``first_byte`` is lowered for one attempt (a latency threshold, a deadline):
    the wait for the first token is shortened, the stream once started is not."""
    first_event: float | None = None
    """Set by a deadline (the time it leaves): the first event comes this long after the call
    began at the latest, however early the answer's head came (``first_byte`` restarts
    there); ``None``: no such bound."""
    ends_at: float | None = None
    """Set by a deadline: when it passes, on the event loop's clock. A provider that answers
    one request with several calls in turn (an embeddings request split into batches) gives
    each call only the time left then (``left_at``), not these limits afresh."""

    def within(self, left: float, streaming: bool, ends_at: float | None) -> UpstreamTimeouts:
        """These limits cut to the ``left`` seconds of a deadline that passes at ``ends_at``:
        connecting and the first byte, and for an answer in one piece the total too (a stream
        that has begun runs on its own limits, but its first event comes within ``left`` even
        when the head came first). Itself (with ``ends_at``) when its limits are shorter."""
        if self.total <= left:  # nothing it waits for can outlast the deadline
            return UpstreamTimeouts(
                self.connect, self.first_byte, self.total, self.gap, self.first_event, ends_at
            )
        return UpstreamTimeouts(
            min(self.connect, left),
            min(self.first_byte, left),
            self.total if streaming else left,
            self.first_byte if self.gap is None else self.gap,
            first_event=left,
            ends_at=ends_at,
        )

    def left_at(self, now: float) -> UpstreamTimeouts | None:
        """For a further call of an answer in one piece, made at ``now`` (the loop's clock):
        these limits cut to the time left of their deadline; ``None`` when none is left.
        Themselves without a deadline."""
        if self.ends_at is None:
            return self
        left = self.ends_at - now
        if left <= 0:
            return None
        return self.within(left, False, self.ends_at)


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    """References to an AWS access key pair (and session token) that SigV4 signing reads."""

    access_key_id: SecretRef
    secret_access_key: SecretRef
    session_token: SecretRef | None = None


@dataclass(frozen=True, slots=True)
class PriceTier:
    """Rates for a whole request whose input exceeds ``above_input_tokens`` (long context)."""

    above_input_tokens: int
    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None
    cache_write_1h: float | None = None


@dataclass(frozen=True, slots=True)
class Price:
    """What a deployment charges: USD per 1M tokens unless a field says otherwise.

    ``None`` rates fall back: cache reads and writes to ``input``, one-hour cache writes to
    ``cache_write``, reasoning to ``output``.
    """

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None
    cache_write_1h: float | None = None
    """Per 1M tokens written to the cache for an hour (Anthropic: twice ``input``)."""
    reasoning: float | None = None
    per_image: float | None = None
    """USD per input image, where the provider prices images by count."""
    per_request: float | None = None
    """USD per request."""
    tool_calls: tuple[tuple[str, float], ...] = ()
    """USD per 1,000 calls of a provider's server-side tool, by kind (``pricing/tools.py``);
    a kind not named costs nothing a call."""
    tool_requests: tuple[tuple[str, float], ...] = ()
    """USD per 1,000 requests that called a server-side tool of the kind at all, however
    many times (Gemini 2.x bills Google Search per grounded prompt)."""
    tiers: tuple[PriceTier, ...] = ()
    context_window: int | None = None
    max_output: int | None = None
    source: str = "config"
    """Where it came from: ``config`` or ``catalog <version>``."""

    def call_fee(self, kind: str) -> float:
        """USD for one call of the server-side tool ``kind``."""
        for named, per_thousand in self.tool_calls:
            if named == kind:
                return per_thousand / 1000.0
        return 0.0

    def request_fee(self, kind: str) -> float:
        """USD for a request that called the server-side tool ``kind`` (once, any number of
        times)."""
        for named, per_thousand in self.tool_requests:
            if named == kind:
                return per_thousand / 1000.0
        return 0.0

    @property
    def tool_fees(self) -> bool:
        """Whether some server-side tool costs a fee here."""
        return bool(self.tool_calls or self.tool_requests)

    @property
    def blended(self) -> float:
        """One number to rank by: input and output weighted alike."""
        return self.input + self.output

    def blended_at(self, input_tokens: int) -> float:
        """``blended`` for a request of ``input_tokens``: the rates of the highest tier it is
        above (a long-context tier bills the whole request at its rates), else the base's."""
        for tier in reversed(self.tiers):
            if input_tokens > tier.above_input_tokens:
                return tier.input + tier.output
        return self.input + self.output


@dataclass(frozen=True, slots=True)
class Deployment:
    """One concrete place a model is served, resolved from config at load time."""

    id: str
    provider: str
    model: str
    api_base: str
    timeouts: UpstreamTimeouts
    api_key: SecretRef | None = None
    bearer_key: bool = False
    """``api_key`` is a bearer token wherever the family sends a key otherwise (config
    ``azure_ad_token``: ``Authorization: Bearer``, not Azure's ``api-key``)."""
    api_version: str | None = None
    azure_deployment: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    region: str | None = None
    aws_credentials: AwsCredentials | None = None
    google_service_account: SecretRef | None = None
    bedrock_family: str | None = None
    """Config ``bedrock_family``: the family of a Bedrock model whose id names none."""
    group: str = ""
    """The model group that names this deployment."""
    weight: float = 1.0
    context_window: int | None = None
    max_output: int | None = None
    price: Price | None = None
    """Config ``price``, else the catalog's; ``None``: unpriced (costs count as zero)."""
    tokenizer: str | None = None
    """The OpenAI encoding that counts this deployment's input exactly (declared in config,
    or OpenAI's own model on OpenAI's API); ``None``: the local count is an estimate."""
    responses_api: bool = False
    """A Responses client's request is sent to this deployment's own ``/responses`` endpoint
    (``ChatRequest.responses_body``) rather than as Chat Completions."""
    hurried: bool = False
    """This copy's first-byte limit is its group's ``latency_threshold``: used while another
    candidate could still answer (``RoutingTable.unhurried`` gives the deployment itself)."""
