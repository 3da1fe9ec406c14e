"""After every other test: no provider key and no virtual key in any process's output.

The file name makes this module run last, so the logs of every gateway, simulator and
identity provider the suite started are complete.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import AWS_SECRET_ACCESS_KEY, UPSTREAM_KEY
from tests.support import CLIENT_KEY

SECRETS = {
    "the upstream provider key": UPSTREAM_KEY,
    "the AWS secret key": AWS_SECRET_ACCESS_KEY,
    "a wrong provider key used in tests": "sk-wrong-key-for-test-9876",
    "the admin key": CLIENT_KEY,
}
VIRTUAL_KEY = re.compile(r"tw-[A-Za-z0-9_-]{40}")


def test_no_secret_in_any_log(log_dir: Path) -> None:
    logs = sorted(log_dir.glob("*.log"))
    assert logs, "the suite started no processes?"
    for log in logs:
        text = log.read_text(errors="replace")
        for what, secret in SECRETS.items():
            assert secret not in text, f"{what} appears in {log.name}"
        found = VIRTUAL_KEY.search(text)
        assert found is None, f"a virtual key appears in {log.name}"
        assert "Traceback" not in text or "gateway" not in log.name, f"traceback in {log.name}"
