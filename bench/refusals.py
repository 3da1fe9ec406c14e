"""What a flood of 401s (an unknown key, hammered) costs the gateway: CPU per request.

Variants run at the same time, each a ``tollway serve`` pinned to core 0 and saturated by
its own closed-loop ``wrk`` on core 1 sending a chat request with a key no gateway knows;
what is compared is each process's CPU time (all threads) per answered request over the
same seconds, as ``paired.py`` does, so a slow minute slows every variant alike.

    python bench/refusals.py tree:/path/to/main-checkout tree:. "tree:.:refusals_per_second: 0"

A variant is ``tree:PATH`` (the checkout whose code runs) with an optional
``:request_log`` setting appended (one YAML line under ``telemetry.request_log``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WRK_DIR = Path(__file__).resolve().parent / "wrk"
UNKNOWN_KEY = "tw-bench-unknown-key-0123456789abcdef"
BODY = '{"model": "demo-chat", "messages": [{"role": "user", "content": "hi"}]}'


def cpu_seconds(pid: int) -> float:
    """User and system time of a process, all its threads, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(root: Path, setting: str, folder: Path, port: int) -> subprocess.Popen[bytes]:
    """A gateway of the checkout ``root`` on ``port``, its request log on a SQLite file."""
    config = folder / f"gateway-{port}.yaml"
    log_lines = f"\n    {setting}" if setting else ""
    config.write_text(
        f"store: {{url: 'sqlite+aiosqlite:///{folder}/gateway-{port}.db'}}\n"
        f"telemetry:\n  request_log:\n    flush_interval: 250ms{log_lines}\n"
    )
    env = dict(os.environ, PYTHONPATH=str(root), TOLLWAY_ADMIN_KEY="bench-admin-key-0123456789")
    command = ["taskset", "-c", "0", sys.executable, "-m", "tollway", "serve"]
    command += ["--port", str(port), "--config", str(config)]
    output = (folder / f"gateway-{port}.log").open("wb")
    return subprocess.Popen(command, cwd=root, env=env, stdout=output, stderr=output)


def ready(port: int) -> None:
    """Wait for the gateway on ``port`` to answer its readiness check."""
    for _ in range(200):
        done = subprocess.run(["curl", "-sf", f"http://127.0.0.1:{port}/health/ready"],
                              capture_output=True)  # fmt: skip
        if done.returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"the gateway on {port} did not start")


def load(port: int, seconds: int) -> subprocess.Popen[str]:
    """A closed-loop wrk on core 1 sending the unknown key to ``port``."""
    env = dict(os.environ, BENCH_BODY=BODY, BENCH_AUTH=UNKNOWN_KEY, BENCH_WRK_DIR=str(WRK_DIR))
    command = ["taskset", "-c", "1", "wrk", "-t1", "-c16", f"-d{seconds}s", "--timeout", "10s"]
    command += ["-s", str(WRK_DIR / "post.lua"), f"http://127.0.0.1:{port}/v1/chat/completions"]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)


def main() -> None:
    """Run the rounds and print each variant's CPU per request and its ratio to the first."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    variants = []
    for text in args.variants:
        _, path, *setting = text.split(":", 2)
        variants.append((text, Path(path).resolve(), setting[0] if setting else ""))
    per_request: list[list[float]] = [[] for _ in variants]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        gateways = [start(root, setting, folder, 15100 + n)
                    for n, (_, root, setting) in enumerate(variants)]  # fmt: skip
        try:
            for n in range(len(variants)):
                ready(15100 + n)
            for _ in range(args.rounds):
                before = [cpu_seconds(g.pid) for g in gateways]
                loads = [load(15100 + n, args.seconds) for n in range(len(variants))]
                outputs = [proc.communicate()[0] for proc in loads]
                after = [cpu_seconds(g.pid) for g in gateways]
                for n, output in enumerate(outputs):
                    summary = json.loads(output.split("BENCH_JSON ", 1)[1].splitlines()[0])
                    requests = max(summary["requests"], 1)
                    per_request[n].append((after[n] - before[n]) / requests * 1e6)
        finally:
            for gateway in gateways:
                gateway.terminate()
                gateway.wait(15)
    first = per_request[0]
    print("| variant | CPU µs / 401 (median, range) | ratio to the first (median) |")
    print("|---|---|---|")
    for (label, _, _), values in zip(variants, per_request, strict=True):
        ratios = [value / base for value, base in zip(values, first, strict=True)]
        print(f"| `{label}` | {statistics.median(values):.0f} ({min(values):.0f} to "
              f"{max(values):.0f}) | {statistics.median(ratios):.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
