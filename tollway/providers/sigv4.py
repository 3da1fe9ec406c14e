"""AWS Signature Version 4 for provider calls, by botocore (imported when a signer is made).

Signing covers the method, the URL path as sent, every header given here and the body's
SHA-256, so the caller sends exactly the bytes and headers it signed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AwsKey:
    """Revealed AWS credentials: access key id, secret access key, optional session token."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


class SigV4Signer:
    """Signs requests to one AWS service (the signing name, e.g. ``bedrock``)."""

    def __init__(self, service: str) -> None:
        # Imported here so a gateway without AWS deployments never needs botocore.
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        # botocore.auth logs each canonical request at DEBUG, the session token among its
        # headers (x-amz-security-token): a gateway run with --log-level debug printed it.
        logging.getLogger("botocore.auth").setLevel(logging.INFO)
        self._service = service
        self._auth = SigV4Auth
        self._request = AWSRequest
        self._credentials = Credentials

    def sign(
        self, url: str, body: bytes, headers: dict[str, str], region: str, key: AwsKey
    ) -> dict[str, str]:
        """``headers`` plus ``X-Amz-Date``, the session token if any, and ``Authorization``."""
        request = self._request(method="POST", url=url, data=body, headers=headers)
        credentials = self._credentials(key.access_key_id, key.secret_access_key, key.session_token)
        self._auth(credentials, self._service, region).add_auth(request)
        return dict(request.headers.items())
