"""Amazon Bedrock's Converse API: ``converse`` and ``converse-stream`` (AWS event streams).

A deployment names its ``region`` (the default endpoint is
``https://bedrock-runtime.{region}.amazonaws.com``) and one credential: a Bedrock API key in
``api_key`` (sent as ``Authorization: Bearer``), or an AWS access key pair
(``aws_access_key_id``, ``aws_secret_access_key``, optional ``aws_session_token``) that signs
every call with SigV4 for the ``bedrock`` service. The model id goes in the URL path,
percent-encoded as AWS's SDKs do (``...-v1%3A0``), and the URL is sent exactly as signed.
Needs botocore (``pip install 'tollway[bedrock]'``), for signing and for event-stream decoding.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING
from urllib.parse import quote

from yarl import URL

from tollway.core.errors import UpstreamProtocolError, UpstreamStatusError, UpstreamUnavailable
from tollway.core.types import ChatChunk, ChatRequest, ChatResponse, Deployment
from tollway.providers.anthropic import with_deployment_headers
from tollway.providers.base import ProviderResources, ProviderSpec
from tollway.providers.eventstream import EventStreamDecoder
from tollway.providers.http import encoded
from tollway.providers.masking import Secrets, scrub
from tollway.providers.sigv4 import AwsKey, SigV4Signer
from tollway.wire.bedrock_models import (
    CLAUDE,
    BedrockFamily,
    declared_family_conflict,
    deployment_family,
)
from tollway.wire.bedrock_request import request_to_wire
from tollway.wire.bedrock_response import error_from_wire, quota_exceeded, response_from_wire
from tollway.wire.bedrock_stream import StreamReader
from tollway.wire.single_call import FirstCallOnly, first_call_only, wants_one_call

if TYPE_CHECKING:
    from tollway.config.schema import DeploymentConfig

SIGNING_NAME = "bedrock"
BETA_HEADER = "anthropic-beta"
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")


class BedrockProvider:
    """Chat and streams over the Bedrock Converse wire format."""

    def __init__(self, resources: ProviderResources) -> None:
        self._client = resources.client
        self._vault = resources.vault
        self._signer = SigV4Signer(SIGNING_NAME)

    def _prepare(
        self, request: ChatRequest, deployment: Deployment, action: str
    ) -> tuple[URL, bytes, dict[str, str], Secrets]:
        """URL, body and headers of a call, credential included, and the secrets (to scrub)."""
        merged = with_deployment_headers(request.upstream_headers, deployment.headers)
        headers, betas = _without_betas(merged)
        headers["Content-Type"] = "application/json"
        body = encoded(request_to_wire(request, _family(deployment), betas))
        url = f"{deployment.api_base}/model/{quote(deployment.model, safe='')}/{action}"
        secret: Secrets = None
        if deployment.api_key is not None:
            secret = self._vault.reveal(deployment.api_key)
            headers["Authorization"] = f"Bearer {secret}"
        elif deployment.aws_credentials is not None:
            key = self._aws_key(deployment)
            # An upstream (or a proxy before it) quoting the signed headers quotes the key id
            # and the session token (X-Amz-Security-Token), itself a credential.
            parts = (key.secret_access_key, key.access_key_id, key.session_token)
            secret = tuple(part for part in parts if part)
            region = deployment.region
            if region is None:
                raise UpstreamUnavailable(f"deployment {deployment.id} has no region to sign for")
            headers = self._signer.sign(url, body, headers, region, key)
        return URL(url, encoded=True), body, headers, secret

    def check(self, request: ChatRequest, deployment: Deployment) -> None:
        """The 400s ``chat`` would answer for ``request`` before calling (for token counts)."""
        headers = with_deployment_headers(request.upstream_headers, deployment.headers)
        encoded(request_to_wire(request, _family(deployment), _without_betas(headers)[1]))

    def _aws_key(self, deployment: Deployment) -> AwsKey:
        refs = deployment.aws_credentials
        assert refs is not None
        token = refs.session_token
        return AwsKey(
            self._vault.reveal(refs.access_key_id),
            self._vault.reveal(refs.secret_access_key),
            None if token is None else self._vault.reveal(token),
        )

    async def chat(self, request: ChatRequest, deployment: Deployment) -> ChatResponse:
        """One complete answer."""
        url, body, headers, secret = self._prepare(request, deployment, "converse")
        try:
            raw = await self._client.post_json(
                url, body, headers, deployment.timeouts, error_from_wire, secret
            )
        except UpstreamStatusError as exc:
            quota = quota_exceeded(exc)
            if quota is None:
                raise
            raise quota from None
        response = response_from_wire(raw, deployment.model)
        return first_call_only(response) if _cut_to_one_call(request, deployment) else response

    async def stream(
        self, request: ChatRequest, deployment: Deployment
    ) -> AsyncIterator[ChatChunk]:
        """Chunks as the upstream sends them; a stream without ``messageStop`` is an error."""
        url, body, headers, secret = self._prepare(request, deployment, "converse-stream")
        decoder = EventStreamDecoder()
        reader = StreamReader(deployment.model)
        one_call = FirstCallOnly() if _cut_to_one_call(request, deployment) else None
        pieces = self._client.post_bytes_stream(
            url, body, headers, deployment.timeouts, error_from_wire, secret
        )
        try:
            async for piece in pieces:
                for message in decoder.feed(piece):
                    payload = message.payload
                    if secret and message.headers.get(":message-type") != "event":
                        # An exception or error message is raised with its words, which may
                        # quote the credential as an error body may (http.py masks those).
                        payload = scrub(payload, secret)
                    chunk = reader.feed(message.headers, payload)
                    if chunk is not None and one_call is not None:
                        chunk = one_call(chunk)
                    if chunk is not None:
                        yield chunk
                    if reader.done:
                        held = reader.held()
                        if held is not None:
                            yield held
                        return
        except UpstreamStatusError as exc:
            quota = quota_exceeded(exc)
            if quota is None:
                raise
            raise quota from None
        finally:
            # Returning once the answer is whole leaves the upstream generator open; close it.
            await pieces.aclose()  # type: ignore[attr-defined]
        if not reader.stopped:
            raise UpstreamProtocolError("upstream stream ended before messageStop")


def _without_betas(headers: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """``headers`` without ``anthropic-beta``, and the betas it named: Bedrock takes Claude's
    betas in the body (``additionalModelRequestFields.anthropic_beta``), not as a header.
    A deployment's own betas were merged with the client's (``with_deployment_headers``), as
    for Anthropic's API."""
    betas: list[str] = []
    kept: dict[str, str] = {}
    for name, value in headers.items():
        if name.lower() == BETA_HEADER:
            betas = [beta.strip() for beta in value.split(",") if beta.strip()]
        else:
            kept[name] = value
    return kept, betas


def _cut_to_one_call(request: ChatRequest, deployment: Deployment) -> bool:
    """Whether the client turned parallel calls off for a model that has no switch for it
    (Claude takes Anthropic's own, in ``additionalModelRequestFields``; an application
    inference profile's ARN does not name its model, so it is cut too, which changes
    nothing when the model made one call, unless the deployment declares it Claude)."""
    return wants_one_call(request) and _family(deployment) is not CLAUDE


def _family(deployment: Deployment) -> BedrockFamily:
    """The family of the deployment's model: as its config declares it, else as its id says."""
    return deployment_family(deployment.model, deployment.bedrock_family)


def check_deployment(config: DeploymentConfig) -> None:
    """A bedrock deployment needs botocore, a region and exactly one kind of credential."""
    if importlib.util.find_spec("botocore") is None:
        raise ValueError("provider 'bedrock' needs `pip install tollway[bedrock]` (botocore)")
    if config.region is None or not _REGION.fullmatch(config.region):
        raise ValueError(f"'region' must be an AWS region such as us-east-1, not {config.region!r}")
    arn_region = _arn_region(config.model)
    if arn_region is not None and arn_region != config.region:
        # An ARN (inference profile, provisioned or imported model) is served only by its own
        # region's endpoint; another region answers every call with a 400 the client did not
        # cause, and a SigV4 signature for it is checked against that region.
        raise ValueError(
            f"model {config.model!r} is in region {arn_region!r}, not the deployment's "
            f"region {config.region!r}: set region: {arn_region}"
        )
    key_pair = (config.aws_access_key_id, config.aws_secret_access_key)
    if (key_pair[0] is None) != (key_pair[1] is None):
        raise ValueError("aws_access_key_id and aws_secret_access_key go together")
    has_pair = key_pair[0] is not None
    if config.aws_session_token is not None and not has_pair:
        raise ValueError("aws_session_token needs aws_access_key_id and aws_secret_access_key")
    credentials = "api_key (a Bedrock API key) or aws_access_key_id and aws_secret_access_key"
    if has_pair and config.api_key is not None:
        raise ValueError(f"provider 'bedrock' takes either {credentials}, not both")
    if not has_pair and config.api_key is None:
        raise ValueError(f"provider 'bedrock' needs {credentials}")
    if config.bedrock_family is not None:
        conflict = declared_family_conflict(config.model, config.bedrock_family)
        if conflict is not None:
            raise ValueError(f"bedrock_family: {conflict}")


def _arn_region(model: str) -> str | None:
    """The region a model ARN names (``arn:aws:bedrock:us-west-2:...``), else ``None``
    (a model id, or an ARN that names none)."""
    parts = model.split(":", 4)
    if len(parts) < 5 or parts[0] != "arn" or not parts[3]:
        return None
    return parts[3]


SPECS = (
    ProviderSpec(
        name="bedrock",
        build=BedrockProvider,
        default_api_base="https://bedrock-runtime.{region}.amazonaws.com",
        simulator_path="",
        required_fields=("region",),
        own_fields=("bedrock_family",),
        check_config=check_deployment,
    ),
)
