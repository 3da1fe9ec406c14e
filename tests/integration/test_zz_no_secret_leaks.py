"""After every other test: no provider key and no virtual key in any process's output.

The file name makes this module run last, so the logs of every gateway, simulator and
identity provider the suite started are complete.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import AWS_SECRET_ACCESS_KEY, UPSTREAM_KEY
from tests.integration.test_admin_denials import UNKNOWN_SECRET as DENIED_SECRET
from tests.integration.test_request_log_refusals import UNKNOWN_SECRET as REFUSED_SECRET
from tests.integration.test_secret_echo import AWS_SESSION_TOKEN
from tests.support import CLIENT_KEY

SECRETS = {
    "the upstream provider key": UPSTREAM_KEY,
    "the AWS secret key": AWS_SECRET_ACCESS_KEY,
    "an AWS session token (echoed by the simulator, at DEBUG)": AWS_SESSION_TOKEN,
    "a wrong provider key used in tests": "sk-wrong-key-for-test-9876",
    "the admin key": CLIENT_KEY,
    # Unknown keys sent to model routes and to the admin API: refused, recorded, never shown;
    # their first 12 characters are what a prefix of them would be.
    "an unknown key refused on a model route": REFUSED_SECRET,
    "an unknown key denied by the admin API": DENIED_SECRET,
    "an unknown key's would-be prefix (model route)": REFUSED_SECRET[:12],
    "an unknown key's would-be prefix (admin API)": DENIED_SECRET[:12],
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
