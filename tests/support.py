"""Test support: real processes on real ports (the simulator, the gateway) and their config."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent

CLIENT_KEY = "client-key-for-tests-0123456789"
"""The bootstrap admin key every test gateway accepts (``TOLLWAY_ADMIN_KEY``)."""


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url`` until it answers 200; fail early when ``proc`` dies."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} was ready")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except Exception as exc:
            last = exc
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready after {timeout}s: {last}")


class Process:
    """A child process of the test run, with its combined output kept in a log file."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )

    def output(self) -> str:
        """Everything the process printed so far."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit within 10 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


def tollway_command(*args: str) -> list[str]:
    """The ``tollway`` CLI run with this interpreter."""
    return [sys.executable, "-m", "tollway", *args]


@contextmanager
def running_simulator(log_dir: Path, *extra: str) -> Iterator[str]:
    """A ``tollway mock-provider`` process; yields its base URL (no /v1)."""
    port = free_port()
    process = Process(
        tollway_command("mock-provider", "--port", str(port), *extra),
        log_dir / f"simulator-{port}.log",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/_sim/config", proc=process.proc)
        yield url
    finally:
        process.stop()


@contextmanager
def running_gateway(
    log_dir: Path, config: dict[str, Any] | None, env: dict[str, str] | None = None
) -> Iterator[tuple[str, Process]]:
    """A ``tollway serve`` process on ``config`` (None: the embedded default)."""
    port = free_port()
    args = ["serve", "--port", str(port)]
    store_url = f"sqlite+aiosqlite:///{log_dir}/gateway-{port}.db"
    if config is not None:
        config = {"store": {"url": store_url}, **config}
        config_path = log_dir / f"gateway-{port}.yaml"
        config_path.write_text(yaml.safe_dump(config))
        args += ["--config", str(config_path)]
    full_env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "TOLLWAY_CONFIG")
    }
    full_env["TOLLWAY_ADMIN_KEY"] = CLIENT_KEY
    full_env["TOLLWAY_STORE_URL"] = store_url
    full_env.update(env or {})
    process = Process(tollway_command(*args), log_dir / f"gateway-{port}.log", env=full_env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/health/ready", proc=process.proc)
        yield url, process
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}\n--- gateway output ---\n{process.output()}") from None
    finally:
        process.stop()
