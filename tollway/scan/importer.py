"""``--import``: found keys into the gateway vault, and a virtual key for each service.

Each distinct key becomes one provider credential named ``<provider>-<service>-<hash>``
(deterministic, so a second run finds it: 409). Each service (the first directory of a
finding's path, or the scanned directory itself) gets one new virtual key tagged with
it, and every finding gets the lines that replace it. Keys that cannot serve model
traffic (admin keys, AWS key pairs) are skipped with the reason.

Errors::

    ImportFailed          the gateway cannot be reached or refuses the admin key; fatal
    (per item, not raised) any other answer: that credential or key is marked failed
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

import httpx

from tollway.scan.findings import Finding
from tollway.scan.masking import fingerprint, mask
from tollway.scan.migration import replacement_lines

Status = Literal["stored", "already stored", "skipped", "failed"]
_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
_NOT_A_SLUG = re.compile(r"[^a-z0-9]+")


class ImportFailed(Exception):
    """The gateway could not be used at all: unreachable, or the admin key was refused."""


class AdminRequestFailed(Exception):
    """One admin call was answered with an error; the message never holds a secret."""


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What ``--import`` did about one finding, and the lines that replace it."""

    finding: Finding
    status: Status
    credential: str | None = None
    detail: str = ""
    virtual_key_name: str | None = None
    lines: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """JSON-ready data: the finding (masked), the credential, the replacement lines."""
        return {
            **self.finding.to_json(),
            "status": self.status,
            "credential": self.credential,
            "detail": self.detail,
            "virtual_key_name": self.virtual_key_name,
            "replacement": list(self.lines),
        }


class AdminClient:
    """The two admin API calls an import needs."""

    def __init__(self, http: httpx.Client) -> None:
        """``http`` has the gateway as base URL and the admin key as bearer token."""
        self._http = http

    @classmethod
    def connect(cls, gateway_url: str, admin_key: str) -> AdminClient:
        """A client for the gateway at ``gateway_url`` authenticating with ``admin_key``."""
        headers = {"Authorization": f"Bearer {admin_key}"}
        return cls(httpx.Client(base_url=gateway_url, headers=headers, timeout=_TIMEOUT))

    def close(self) -> None:
        """Release the connection pool."""
        self._http.close()

    def put_credential(self, name: str, provider: str, secret: str) -> bool:
        """Store a credential; False when one with ``name`` already exists."""
        body = {"name": name, "provider": provider, "secret": secret}
        reply = self._post("/admin/credentials", body, secret)
        if reply.status_code == 409:
            return False
        _expect_created(reply, f"credential {name}", secret)
        return True

    def create_key(self, name: str, service: str) -> str:
        """A new virtual key tagged with ``service``; the key is only ever in this answer."""
        reply = self._post("/admin/keys", {"name": name, "tags": {"service": service}}, "")
        _expect_created(reply, f"virtual key {name!r}", "")
        key = _json(reply).get("key")
        if not isinstance(key, str) or not key:
            raise AdminRequestFailed(f"virtual key {name!r}: the answer has no 'key'")
        return key

    def _post(self, path: str, body: dict[str, Any], secret: str) -> httpx.Response:
        try:
            reply = self._http.post(path, json=body)
        except httpx.TimeoutException:
            raise ImportFailed(f"the gateway at {self._http.base_url} timed out") from None
        except httpx.TransportError as exc:
            reason = _redacted(str(exc) or exc.__class__.__name__, secret)
            raise ImportFailed(
                f"cannot reach the gateway at {self._http.base_url}: {reason}"
            ) from None
        if reply.status_code in (401, 403):
            raise ImportFailed(
                f"the gateway refused the admin key ({reply.status_code} on {path}): "
                "check TOLLWAY_ADMIN_KEY"
            )
        return reply


def service_name(path: str, default: str) -> str:
    """The service a file belongs to: its first directory, else ``default``."""
    parts = PurePosixPath(path).parts
    return _slug(parts[0] if len(parts) > 1 else default)


def credential_name(finding: Finding, default_service: str) -> str:
    """``<provider>-<service>-<first 8 hex of the key's SHA-256>``: stable across runs."""
    service = service_name(finding.location.path, default_service)
    return f"{finding.detector.provider}-{service}-{fingerprint(finding.secret)[:8]}"


def import_findings(
    findings: tuple[Finding, ...], client: AdminClient, gateway_url: str, default_service: str
) -> list[ImportResult]:
    """Store each distinct key, mint a virtual key per service, give each finding its lines."""
    stored = _store_credentials(findings, client, default_service)
    services = {
        service_name(f.location.path, default_service)
        for f in findings
        if stored.get(f.secret, ("", "failed", ""))[1] == "stored"
    }
    virtual_keys: dict[str, str | AdminRequestFailed] = {}
    for service in sorted(services):
        try:
            virtual_keys[service] = client.create_key(f"scan:{service}", service)
        except AdminRequestFailed as exc:
            virtual_keys[service] = exc
    return [_result(f, stored, virtual_keys, gateway_url, default_service) for f in findings]


def _store_credentials(
    findings: tuple[Finding, ...], client: AdminClient, default_service: str
) -> dict[str, tuple[str, Status, str]]:
    """Per distinct importable key: its credential name, what happened, and why."""
    outcome: dict[str, tuple[str, Status, str]] = {}
    for finding in findings:
        if not finding.detector.importable or finding.secret in outcome:
            continue
        name = credential_name(finding, default_service)
        try:
            created = client.put_credential(name, finding.detector.provider, finding.secret)
        except AdminRequestFailed as exc:
            outcome[finding.secret] = (name, "failed", str(exc))
            continue
        outcome[finding.secret] = (name, "stored" if created else "already stored", "")
    return outcome


def _result(
    finding: Finding,
    stored: dict[str, tuple[str, Status, str]],
    virtual_keys: dict[str, str | AdminRequestFailed],
    gateway_url: str,
    default_service: str,
) -> ImportResult:
    if not finding.detector.importable:
        return ImportResult(finding, "skipped", detail=_not_importable(finding))
    credential, status, detail = stored[finding.secret]
    if status == "failed":
        return ImportResult(finding, status, credential, detail)
    service = service_name(finding.location.path, default_service)
    virtual_key = virtual_keys.get(service)
    if virtual_key is None:
        detail = "imported by an earlier run, which printed the replacement lines"
        return ImportResult(finding, status, credential, detail)
    if isinstance(virtual_key, AdminRequestFailed):
        return ImportResult(finding, "failed", credential, str(virtual_key))
    lines = replacement_lines(finding, gateway_url, virtual_key)
    return ImportResult(finding, status, credential, "", f"scan:{service}", lines)


def _not_importable(finding: Finding) -> str:
    if finding.detector.provider == "aws":
        return "AWS keys come as an id and secret pair: move them to a secrets manager or role"
    return finding.detector.hint


def _expect_created(reply: httpx.Response, what: str, secret: str) -> None:
    if reply.status_code != 201:
        message = _redacted(_error_message(reply), secret)
        raise AdminRequestFailed(f"{what}: HTTP {reply.status_code} {message}".rstrip())


def _error_message(reply: httpx.Response) -> str:
    """The gateway's error message, if it sent one in a shape we know."""
    body = _json(reply)
    error = body.get("error", body.get("detail", body.get("message")))
    if isinstance(error, dict):
        error = error.get("message")
    return error[:300] if isinstance(error, str) else ""


def _json(reply: httpx.Response) -> dict[str, Any]:
    try:
        body = reply.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _redacted(text: str, secret: str) -> str:
    """``text`` with ``secret`` masked, in case an error message echoes what it was sent."""
    return text.replace(secret, mask(secret)) if secret else text


def _slug(text: str) -> str:
    return _NOT_A_SLUG.sub("-", text.lower()).strip("-")[:40].strip("-") or "root"
