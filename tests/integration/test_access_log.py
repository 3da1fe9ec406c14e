"""The access log (``server.access_log``) through a real gateway process."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.support import CLIENT_KEY, running_gateway


def test_the_access_log_masks_credentials_in_query_strings(
    log_dir: Path, simulator_url: str
) -> None:
    # With server.access_log on, a client that sent its key in the URL (as Gemini's clients
    # do, ?key=) had it written to the gateway's log.
    secret = "sk-in-the-url-0123456789abcdef"
    config = {"server": {"access_log": True}, "models": []}
    with running_gateway(log_dir, config) as (url, process):
        answer = httpx.get(
            url + "/v1/models", params={"key": secret, "api_key": secret, "limit": "2"},
            headers={"Authorization": f"Bearer {CLIENT_KEY}", "User-Agent": "probe/1"},
        )  # fmt: skip
        assert answer.status_code == 200
        deadline = time.monotonic() + 5
        while "probe/1" not in process.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        output = process.output()
    assert secret not in output
    (line,) = [line for line in output.splitlines() if "probe/1" in line]
    assert '"GET /v1/models?key=***&api_key=***&limit=2 HTTP/1.1" 200' in line
