"""Credential checks of the simulated Bedrock API: a bearer API key or a SigV4 signature.

With ``aws_access_key_id`` / ``aws_secret_access_key`` set, a signed request must carry the
signature botocore computes from the request as received (method, path, query, signed
headers, body) and an ``X-Amz-Date`` within five minutes; with ``api_key`` set, a bearer
token must be that key. With neither, anything is accepted. Refusals are 403s with Bedrock's
exception names, as AWS answers them.
"""

from __future__ import annotations

import datetime
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from tollway.simulator.errors import Dialect, error_response
from tollway.simulator.settings import SimulatorSettings

SERVICE = "bedrock"
MAX_SKEW = datetime.timedelta(minutes=5)
_STAMP = "%Y%m%dT%H%M%SZ"
_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, ?SignedHeaders=(?P<headers>[a-z0-9;-]+), ?"
    r"Signature=(?P<signature>[0-9a-f]{64})"
)
_INVALID_TOKEN = (
    "UnrecognizedClientException",
    "The security token included in the request is invalid.",
)
_MISMATCH = (
    "InvalidSignatureException",
    "The request signature we calculated does not match the signature you provided. Check "
    "your AWS Secret Access Key and signing method. Consult the service documentation for "
    "details.",
)


async def authorize(
    request: web.BaseRequest, settings: SimulatorSettings, request_id: str
) -> web.Response | None:
    """None when the request may proceed, else the 403 Bedrock would answer."""
    header = request.headers.get("Authorization", "")
    open_access = settings.api_key is None and settings.aws_access_key_id is None
    if header.startswith("Bearer "):
        ok = open_access or header[7:].strip() == settings.api_key
        return None if ok else _refuse(_INVALID_TOKEN, request_id)
    if header.startswith("AWS4-HMAC-SHA256 "):
        if settings.aws_access_key_id is None or settings.aws_secret_access_key is None:
            return None if open_access else _refuse(_INVALID_TOKEN, request_id)
        url = f"http://{request.host}{request.raw_path}"
        received = SignedRequest(request.method, url, request.headers, await request.read())
        key_pair = (settings.aws_access_key_id, settings.aws_secret_access_key)
        problem = verify_signature(received, key_pair)
        return None if problem is None else _refuse(problem, request_id)
    if open_access:
        return None
    return _refuse(
        ("MissingAuthenticationTokenException", "Missing Authentication Token"), request_id
    )


def _refuse(problem: tuple[str, str], request_id: str) -> web.Response:
    kind, message = problem
    return error_response(Dialect.BEDROCK, 403, message, request_id=request_id, code=kind)


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What a SigV4 signature covers, as the server received it."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes


def verify_signature(
    request: SignedRequest, key_pair: tuple[str, str], now: datetime.datetime | None = None
) -> tuple[str, str] | None:
    """None when the SigV4 ``Authorization`` of a request is right, else (exception, message)."""
    headers = {name.lower(): value for name, value in request.headers.items()}
    match = _AUTHORIZATION.fullmatch(headers.get("authorization", ""))
    if match is None:
        return ("IncompleteSignatureException", "Authorization header is malformed.")
    if match["key"] != key_pair[0]:
        return _INVALID_TOKEN
    if match["service"] != SERVICE:
        message = f"Credential should be scoped to correct service: '{SERVICE}'."
        return ("InvalidSignatureException", message)
    stamp = headers.get("x-amz-date", "")
    try:
        signed_at = datetime.datetime.strptime(stamp, _STAMP).replace(tzinfo=datetime.UTC)
    except ValueError:
        return ("IncompleteSignatureException", "X-Amz-Date is missing or malformed.")
    skew = abs((now or datetime.datetime.now(datetime.UTC)) - signed_at)
    if skew > MAX_SKEW or not stamp.startswith(match["date"]):
        message = f"Signature expired: {stamp} is now earlier or later than the allowed 5 minutes."
        return ("InvalidSignatureException", message)
    kept = {name: headers[name] for name in match["headers"].split(";") if name in headers}
    expected = _signature(
        SignedRequest(request.method, request.url, kept, request.body), key_pair, match, stamp
    )
    return None if hmac.compare_digest(expected, match["signature"]) else _MISMATCH


def _signature(
    signed: SignedRequest, key_pair: tuple[str, str], match: re.Match[str], stamp: str
) -> str:
    """The signature of ``signed`` (its signed headers only), by botocore as the reference."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    rebuilt = AWSRequest(
        method=signed.method, url=signed.url, data=signed.body, headers=dict(signed.headers)
    )
    rebuilt.context["timestamp"] = stamp
    auth = SigV4Auth(Credentials(*key_pair), SERVICE, match["region"])
    canonical = auth.canonical_request(rebuilt)
    return str(auth.signature(auth.string_to_sign(rebuilt, canonical), rebuilt))
