"""``--import`` against a scripted admin API: names, distinct keys, services, errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest

from tests.unit.scan.fakes import fake_line
from tollway.scan.findings import Finding
from tollway.scan.importer import (
    AdminClient,
    ImportFailed,
    credential_name,
    import_findings,
    service_name,
)
from tollway.scan.masking import fingerprint
from tollway.scan.scanner import scan_text

GATEWAY = "http://gateway.test"


@dataclass
class FakeAdmin:
    """Answers like the admin API: 201 for new credentials, 409 for known names."""

    credentials: dict[str, dict[str, str]] = field(default_factory=dict)
    keys: list[dict[str, object]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == "Bearer admin-test-key"
        body = json.loads(request.content)
        self.calls.append(request.url.path)
        if request.url.path == "/admin/credentials":
            if body["name"] in self.credentials:
                return httpx.Response(409, json={"error": {"message": "exists"}})
            self.credentials[body["name"]] = body
            return httpx.Response(201, json={"name": body["name"], "provider": body["provider"]})
        self.keys.append(body)
        return httpx.Response(201, json={"id": "k1", "key": f"tw-{len(self.keys)}", "prefix": "tw"})


def _client(handler: Callable[[httpx.Request], httpx.Response]) -> AdminClient:
    headers = {"Authorization": "Bearer admin-test-key"}
    transport = httpx.MockTransport(handler)
    return AdminClient(httpx.Client(base_url=GATEWAY, headers=headers, transport=transport))


def _findings(*files: tuple[str, str]) -> tuple[Finding, ...]:
    return tuple(finding for path, text in files for finding in scan_text(path, text))


def test_service_and_credential_names_are_deterministic() -> None:
    assert service_name("billing/api/.env", "repo") == "billing"
    assert service_name(".env", "My Repo!") == "my-repo"
    assert service_name("app.py", "") == "root"
    line, key = fake_line("openai-project-key")
    [finding] = _findings(("Search Service/app.py", line))
    name = credential_name(finding, "repo")
    assert name == f"openai-search-service-{fingerprint(key)[:8]}"
    assert credential_name(finding, "repo") == name


def test_each_distinct_key_is_stored_once_and_each_service_gets_a_virtual_key() -> None:
    line, key = fake_line("openai-project-key")
    findings = _findings(
        ("billing/.env", f"{line}\n"),
        ("billing/worker.py", f"{line}\n"),
        ("search/.env", f"OPENAI_API_KEY={key}\n"),
    )
    admin = FakeAdmin()
    results = import_findings(findings, _client(admin), GATEWAY, "repo")
    assert list(admin.credentials) == [f"openai-billing-{fingerprint(key)[:8]}"]
    assert admin.credentials[f"openai-billing-{fingerprint(key)[:8]}"]["secret"] == key
    assert admin.keys == [
        {"name": "scan:billing", "tags": {"service": "billing"}},
        {"name": "scan:search", "tags": {"service": "search"}},
    ]
    assert [r.status for r in results] == ["stored"] * 3
    assert [r.virtual_key_name for r in results] == ["scan:billing", "scan:billing", "scan:search"]
    assert results[2].lines == ("OPENAI_BASE_URL=http://gateway.test/v1", "OPENAI_API_KEY=tw-2")
    assert "tw-1" in results[1].lines[0]


def test_a_second_run_finds_the_credentials_and_mints_no_keys() -> None:
    findings = _findings((".env", fake_line("groq-api-key")[0] + "\n"))
    admin = FakeAdmin()
    import_findings(findings, _client(admin), GATEWAY, "repo")
    again = import_findings(findings, _client(admin), GATEWAY, "repo")
    assert [r.status for r in again] == ["already stored"]
    assert again[0].lines == ()
    assert "earlier run" in again[0].detail
    assert len(admin.keys) == 1


def test_admin_and_aws_keys_are_skipped_without_a_call() -> None:
    text = "\n".join(
        fake_line(name)[0]
        for name in ("openai-admin-key", "aws-access-key-id", "aws-secret-access-key")
    )
    admin = FakeAdmin()
    results = import_findings(_findings(("deploy.sh", text)), _client(admin), GATEWAY, "r")
    assert [r.status for r in results] == ["skipped"] * 3
    assert "id and secret pair" in results[1].detail
    assert admin.calls == []


def test_a_refused_admin_key_stops_the_import() -> None:
    findings = _findings((".env", fake_line("groq-api-key")[0]))
    client = _client(lambda request: httpx.Response(401, json={"error": "unauthorized"}))
    with pytest.raises(ImportFailed, match=r"refused the admin key.*TOLLWAY_ADMIN_KEY"):
        import_findings(findings, client, GATEWAY, "repo")


def test_an_unreachable_gateway_stops_the_import() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    findings = _findings((".env", fake_line("groq-api-key")[0]))
    with pytest.raises(ImportFailed, match=r"cannot reach the gateway at http://gateway\.test"):
        import_findings(findings, _client(refuse), GATEWAY, "repo")


def test_a_rejected_credential_fails_alone_and_its_error_never_echoes_the_key() -> None:
    groq_line, groq_key = fake_line("groq-api-key")
    xai_line = fake_line("xai-api-key")[0]
    admin = FakeAdmin()

    def reject_groq(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body.get("provider") == "groq":
            message = f"unknown provider for secret {body['secret']}"
            return httpx.Response(422, json={"error": {"message": message}})
        return admin(request)

    findings = _findings((".env", f"{groq_line}\n{xai_line}\n"))
    results = import_findings(findings, _client(reject_groq), GATEWAY, "repo")
    assert [r.status for r in results] == ["failed", "stored"]
    assert "HTTP 422 unknown provider for secret gsk_" in results[0].detail
    assert groq_key not in results[0].detail
    assert groq_key not in json.dumps([r.to_json() for r in results])
