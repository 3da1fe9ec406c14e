"""Instructions a request: the gateway or the pass-through under callgrind, counted exactly.

Timings on a shared machine drift by a third within an hour; instruction counts repeat
within about 1%, so a change of a few thousand instructions a request shows at once
(docs/performance.md, "Session 6"). Instructions are not time: cache misses and the kernel
are not in them, and valgrind runs threads one at a time, which overstates a busy helper
thread (the request log's SQLite writer): judge those by paired timings.

    python bench/instructions.py                      # gateway, default config
    python bench/instructions.py --target passthrough
    python bench/instructions.py --quiet               # without metrics and request log
    python bench/instructions.py --setup limits        # scenario e's limits and budget
    python bench/instructions.py --extra "telemetry: {request_log: {enabled: false}}"
    python bench/instructions.py --requests 4000 --concurrency 16
    python bench/instructions.py --dialect anthropic  # /v1/messages to an anthropic deployment

The target runs under ``valgrind --tool=callgrind`` on core 0 with instrumentation off; it
is switched on (``callgrind_control -i on``) only around the measured requests, which a
small aiohttp client sends from core 1 to the simulator's fast settings (as scenario a).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # bench/run.py: processes, simulator, gateway config

READY_TIMEOUT_S = 300.0  # the gateway starts about 50 times slower under valgrind
WARMUP_REQUESTS = 300


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # it answers
    except OSError:
        return False


def _wait(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not _ready(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise run.BenchError(f"the target at {url} did not come up")
        time.sleep(1.0)


async def _send(
    url: str, key: str, count: int, concurrency: int, body: bytes | None = None
) -> None:
    import aiohttp

    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    body = run.chat_body("bench-chat") if body is None else body
    left = count

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise run.BenchError(f"{url} answered {response.status}")

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))


def _instrument(pid: int, on: bool) -> None:
    subprocess.run(
        ["callgrind_control", "-i", "on" if on else "off", str(pid)],
        check=True,
        capture_output=True,
    )


def measure(args: argparse.Namespace, procs: run.Processes) -> float:
    """Instructions per request of the target, all its threads."""
    sim = run.start_simulator(procs, "simulator", run.FAST_SIM)
    port = run.free_port()
    log = procs.logdir / "callgrind.log"
    valgrind = [
        "valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes", f"--log-file={log}",
        f"--callgrind-out-file={procs.logdir / 'callgrind.out'}",
    ]  # fmt: skip
    if args.target == "passthrough":
        cmd = [run.PYTHON, str(run.BENCH / "passthrough.py"), "--stack", "aiohttp-aiohttp"]
        cmd += ["--host", run.HOST, "--port", str(port), "--upstream", sim.url]
        ready = f"http://{run.HOST}:{port}/health"
    else:
        setup = "quiet" if args.quiet else args.setup
        config = run.gateway_config(procs, sim, port, setup)
        if args.extra:
            config.write_text(config.read_text() + args.extra + "\n")
        cmd = [*run.TOLLWAY, "serve", "--config", str(config), "--host", run.HOST]
        cmd += ["--port", str(port)]
        ready = f"http://{run.HOST}:{port}/health/ready"
    env = {run.ADMIN_KEY_ENV: run.ADMIN_KEY}
    proc = procs.start("target", [*valgrind, *cmd], run.TARGET_CORE, env)
    _wait(ready, proc)
    server = run.Server("target", proc, port)
    key = run.create_key(server) if args.target == "gateway" else ""
    target = run.Target(args.target, args.target, dialect=args.dialect)
    url = f"http://{run.HOST}:{port}{target.path}"
    body = target.body()
    asyncio.run(_send(url, key, WARMUP_REQUESTS, args.concurrency, body))
    _instrument(proc.pid, True)
    asyncio.run(_send(url, key, args.requests, args.concurrency, body))
    _instrument(proc.pid, False)
    procs.stop(proc)
    collected = re.search(r"Collected : ([\d,]+)", log.read_text())
    if collected is None:
        raise run.BenchError(f"callgrind reported no count; see {log}")
    return int(collected.group(1).replace(",", "")) / args.requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=("gateway", "passthrough"), default="gateway")
    parser.add_argument("--quiet", action="store_true", help="gateway without telemetry")
    parser.add_argument(
        "--setup", choices=tuple(run.GATEWAY_SETUPS), default="plain", help="gateway config"
    )
    parser.add_argument("--extra", default="", help="YAML appended to the gateway's config")
    parser.add_argument(
        "--dialect", choices=("openai", "anthropic"), default="openai", help="the route loaded"
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    for tool in ("taskset", "valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            print(f"needs {tool}", file=sys.stderr)
            return 2
    procs = run.Processes(Path(tempfile.mkdtemp(prefix="tollway-instr-")))
    procs.env["PYTHONPATH"] = str(run.ROOT)
    try:
        per_request = measure(args, procs)
    except run.BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
    name = f"{args.target} (quiet)" if args.quiet else args.target
    if args.target == "gateway" and args.setup != "plain" and not args.quiet:
        name += f" ({args.setup})"
    if args.extra:
        name += f" ({args.extra})"
    if args.dialect != "openai":
        name += f" ({args.dialect})"
    print(f"{name}: {per_request:,.0f} instructions a request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
