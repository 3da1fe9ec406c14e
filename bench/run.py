"""Tollway's benchmark: the gateway side by side with a bare pass-through and direct calls.

    .venv/bin/python bench/run.py [--quick] [--candidates] [--out bench/results/latest.json]

The simulator and the load generator run on core 1, the target under test alone on core 0.
bench/README.md says what each scenario measures and how to read the results.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import importlib.util
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
WRK_DIR = BENCH / "wrk"
PYTHON = sys.executable
# The gateway and simulator run from a copy of the package taken at the start (see freeze_code).
TOLLWAY = [PYTHON, "-m", "tollway"]
HOST = "127.0.0.1"
CHAT_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"

TARGET_CORE = "0"
SIDE_CORE = "1"  # the simulator and the load generator share the other core
THROUGHPUT_CONNECTIONS = 64
# Plenty of connections so the paced schedule never waits for a free one.
PACED_CONNECTIONS = 32
PAIRED_WARMUP_S = 3
TTFT_CONCURRENCY = 8
SMALL_MAX_TOKENS = 16
STREAM_TOKENS = 32
FAST_SIM = {"ttft_ms": 0.0, "tpot_ms": 0.0, "output_tokens": SMALL_MAX_TOKENS}
STREAM_SIM = {"ttft_ms": 0.0, "tpot_ms": 3.0, "output_tokens": STREAM_TOKENS}
PROMPT = "Say hello to the toll booth."
STACKS = (
    "aiohttp-aiohttp",
    "starlette-aiohttp",
    "starlette-httpx",
    "aiohttp-httpx",
    "aiohttp-http1",  # the gateway's own upstream client (tollway/providers/http1.py)
)
READY_TIMEOUT_S = 60.0
ADMIN_KEY_ENV = "BENCH_ADMIN_KEY"
ADMIN_KEY = secrets.token_urlsafe(24)  # the gateway's bootstrap admin key, for this run only
STOP_GRACE_S = 5.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Other work on the machine skews every number: wait this long for it to stop before starting.
QUIET_LOAD = 0.10  # of one core
QUIET_SAMPLE_S = 2.0
QUIET_WAIT_S = 120.0
SECTIONS = ("throughput", "fixed_rate", "streaming")
MAX_ATTEMPTS = 3  # per measurement, when other load skewed the earlier ones

# The targets the design sets: (check, limit).
THROUGHPUT_SHARE = 0.70
ADDED_P50_MS = 1.0
ADDED_P99_MS = 5.0
ADDED_TTFT_P50_MS = 1.0
OVERHEAD_ADDED_P50_MS = 0.5  # issues 5 and 7: limits and budgets; metrics and request log
ANTHROPIC_PATH_SHARE = 0.90  # issue 3: Anthropic-to-Anthropic within 10% of the OpenAI path


class BenchError(RuntimeError):
    """The benchmark cannot go on: a process failed to start, answered wrongly, or died."""


@dataclass(frozen=True)
class Profile:
    """How long and how often to measure."""

    rounds: int
    warmup_s: int
    duration_s: int
    ttft_requests: int
    ttft_warmup: int
    overhead_rounds: int  # scenarios e and f: small differences need more pairs


FULL = Profile(
    rounds=3, warmup_s=3, duration_s=10, ttft_requests=400, ttft_warmup=40, overhead_rounds=7
)
QUICK = Profile(
    rounds=1, warmup_s=1, duration_s=3, ttft_requests=100, ttft_warmup=10, overhead_rounds=1
)


@dataclass(frozen=True)
class Target:
    """Something to measure: the simulator itself, a pass-through stack, or the gateway."""

    name: str
    kind: str  # direct | passthrough | gateway
    stack: str = "aiohttp-aiohttp"
    setup: str = "plain"  # gateway only: see GATEWAY_SETUPS
    dialect: str = "openai"  # openai: /v1/chat/completions; anthropic: /v1/messages

    @property
    def model(self) -> str:
        """The model name clients send: the gateway's alias, else the simulator's own."""
        if self.dialect == "anthropic":
            return "bench-claude"
        return "bench-chat" if self.kind == "gateway" else "sim-chat"

    @property
    def path(self) -> str:
        """The endpoint the load generator calls."""
        return ANTHROPIC_PATH if self.dialect == "anthropic" else CHAT_PATH

    def body(self) -> bytes:
        """The small request the load generator sends, in this target's dialect."""
        if self.dialect == "anthropic":
            return messages_body(self.model)
        return chat_body(self.model)


DIRECT = Target("direct", "direct")
PASSTHROUGH = Target("passthrough", "passthrough")
GATEWAY = Target("gateway", "gateway")
CORE_TARGETS = (DIRECT, PASSTHROUGH, GATEWAY)
CANDIDATES = tuple(Target(f"passthrough[{s}]", "passthrough", s) for s in STACKS[1:])


@dataclass
class Server:
    """A listening process of this run."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    # Clients send a key to every target alike; only the gateway checks it.
    api_key: str = "sk-bench-unchecked"

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://{HOST}:{self.port}"

    @property
    def chat_url(self) -> str:
        """The chat completions endpoint."""
        return self.url + CHAT_PATH


def log(message: str) -> None:
    """Progress on stderr, so stdout holds only the summary."""
    print(message, file=sys.stderr, flush=True)


# --- processes ------------------------------------------------------------------------------


def _child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for children, without settings that would change what is measured."""
    dropped = ("TOLLWAY_CONFIG", "TOLLWAY_SIM_API_KEY")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update(extra or {})
    return env


class Processes:
    """Every child process this run started, so that all of them are torn down."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.running: dict[int, subprocess.Popen[bytes]] = {}
        self.env: dict[str, str] = {}  # for every child, on top of ours

    def start(
        self, name: str, cmd: list[str], core: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start a long-running server pinned to ``core``; output goes to its log file."""
        with (self.logdir / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen(
                ["taskset", "-c", core, *cmd],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.logdir,
                env=_child_env({**self.env, **(env or {})}),
                start_new_session=True,  # its own group: a Ctrl-C reaches us, we stop it
            )
        self.running[proc.pid] = proc
        return proc

    def run(self, cmd: list[str], core: str, timeout: float, env: dict[str, str]) -> str:
        """Run a tool pinned to ``core`` to completion within ``timeout``; return its stdout."""
        proc = subprocess.Popen(
            ["taskset", "-c", core, *cmd],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self.logdir,
            env=_child_env({**self.env, **env}),
            start_new_session=True,
        )
        self.running[proc.pid] = proc
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{cmd[0]} did not finish within {timeout:.0f} s") from None
        finally:
            self.stop(proc)
        if proc.returncode != 0:
            tail = err.decode(errors="replace")[-800:]
            raise BenchError(f"{' '.join(cmd[:2])} failed ({proc.returncode}): {tail}")
        return out.decode()

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """Stop one child: SIGTERM to its group, SIGKILL after a grace period."""
        self.running.pop(proc.pid, None)
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(STOP_GRACE_S)

    def stop_all(self) -> None:
        """Stop every child still running."""
        for proc in list(self.running.values()):
            self.stop(proc)

    def log_tail(self, name: str, lines: int = 15) -> str:
        """The end of a server's log, for error messages."""
        path = self.logdir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# --- HTTP checks (urllib, no proxy: all traffic stays on 127.0.0.1) --------------------------

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def chat_body(model: str, stream: bool = False, max_tokens: int = SMALL_MAX_TOKENS) -> bytes:
    """A small chat completion request."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
    }
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


def messages_body(model: str) -> bytes:
    """The same small request in Anthropic's Messages format."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": SMALL_MAX_TOKENS,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def http(
    url: str, body: bytes | None = None, key: str | None = None, timeout: float = 5.0
) -> tuple[int, bytes]:
    """GET (or POST ``body``) and return status and body; status 0 when unreachable."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def wait_ready(procs: Processes, server: Server, health_path: str | None, model: str) -> None:
    """Wait until ``server`` answers its health check (else a chat completion), or fail."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise BenchError(f"{server.name} exited:\n{procs.log_tail(server.name)}")
        if health_path:
            status, _ = http(server.url + health_path, timeout=1)
        else:
            status, _ = http(server.chat_url, chat_body(model), server.api_key, timeout=2)
        if status == 200:
            return
        time.sleep(0.1)
    tail = procs.log_tail(server.name)
    raise BenchError(f"{server.name} not ready in {READY_TIMEOUT_S:.0f} s:\n{tail}")


def verify_chat(server: Server, model: str) -> None:
    """Fail unless both a plain and a streaming completion come back well formed."""
    status, body = http(server.chat_url, chat_body(model), server.api_key)
    reply = json.loads(body) if status == 200 else {}
    if not reply.get("choices", [{}])[0].get("message", {}).get("content"):
        raise BenchError(f"{server.name}: bad chat completion ({status}): {body[:300]!r}")
    status, body = http(
        server.chat_url, chat_body(model, stream=True, max_tokens=4), server.api_key
    )
    if status != 200 or b"data:" not in body:
        raise BenchError(f"{server.name}: bad stream ({status}): {body[:300]!r}")


# --- servers --------------------------------------------------------------------------------


def start_simulator(procs: Processes, name: str, settings: dict[str, float]) -> Server:
    """Start ``tollway mock-provider`` on the side core and wait until it answers."""
    port = free_port()
    cmd = [*TOLLWAY, "mock-provider", "--host", HOST, "--port", str(port)]
    for key, value in settings.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    server = Server(name, procs.start(name, cmd, SIDE_CORE), port)
    wait_ready(procs, server, None, "sim-chat")
    verify_chat(server, "sim-chat")
    return server


GATEWAY_SETUPS = {
    # One deployment behind the model name: the foundation's benchmark.
    "plain": 1,
    # A three-deployment priority group (issue 6: the targets must hold with one in front).
    "group3": 3,
    # One priced deployment under a model TPM limit and an org budget, both too large to
    # refuse anything (issue 5: what admission and settlement add, memory backend).
    "limits": 1,
    # The plain setup without metrics and request log (issue 7: what they add).
    "quiet": 1,
}
QUIET_YAML = "telemetry: {metrics: {enabled: false}, request_log: {enabled: false}}\n"
# Overhead scenarios: section -> (the target measured, the one it is compared with, check).
OVERHEADS = {
    "limits_path": ("gateway[limits]", "gateway", "limits and budget added p50 at fixed rate (ms)"),
    "telemetry_path": (
        "gateway",
        "gateway[no-telemetry]",
        "metrics and request log added p50 at fixed rate (ms)",
    ),
}
LIMITS_YAML = (
    "limits:\n"
    "  models: {bench-chat: {tpm: 1000000000, rpm: 1000000000}}\n"
    "  budgets: [{scope: org, id: '*', period: month, limit_usd: 1000000000}]\n"
)


def gateway_config(procs: Processes, sim: Server, port: int, setup: str = "plain") -> Path:
    """Write the gateway's config: two models on the simulator, a store of its own."""
    path = procs.logdir / f"gateway-{port}.yaml"
    price = ", price: {input: 2.5, output: 10}" if setup == "limits" else ""
    deployments = "".join(
        f"      - {{provider: openai, model: sim-chat, id: sim-{index}, "
        f'api_base: "{sim.url}/v1"{price}}}\n'
        for index in range(GATEWAY_SETUPS[setup])
    )
    path.write_text(
        # A fresh store per start, outside the work tree; the admin key comes from the env.
        f"store:\n  url: sqlite+aiosqlite:///{procs.logdir}/gateway-{port}.db\n"
        f"auth:\n  admin_key: env:{ADMIN_KEY_ENV}\n"
        "models:\n"
        "  - name: bench-chat\n"
        "    deployments:\n"
        f"{deployments}"
        "  - name: bench-claude\n"
        "    deployments:\n"
        f'      - {{provider: anthropic, model: sim-claude, api_base: "{sim.url}"}}\n'
        "  - name: bench-embed\n"
        "    kind: embedding\n"
        "    deployments:\n"
        f'      - {{provider: openai, model: sim-embed, api_base: "{sim.url}/v1"}}\n'
        + (LIMITS_YAML if setup == "limits" else "")
        + (QUIET_YAML if setup == "quiet" else "")
    )
    return path


def start_target(procs: Processes, target: Target, sim: Server) -> Server:
    """Start ``target`` pinned to the target core, pointed at ``sim``; wait until ready."""
    port = free_port()
    name = f"{target.name}-{sim.name}"
    if target.kind == "gateway":
        config = str(gateway_config(procs, sim, port, target.setup))
        cmd = [*TOLLWAY, "serve", "--config", config, "--host", HOST, "--port", str(port)]
        env = {ADMIN_KEY_ENV: ADMIN_KEY}
        server = Server(name, procs.start(name, cmd, TARGET_CORE, env), port)
        wait_ready(procs, server, "/health/ready", target.model)
        server.api_key = create_key(server)
    else:
        cmd = [PYTHON, str(BENCH / "passthrough.py"), "--stack", target.stack]
        cmd += ["--host", HOST, "--port", str(port), "--upstream", sim.url]
        server = Server(name, procs.start(name, cmd, TARGET_CORE), port)
        wait_ready(procs, server, "/health", target.model)
    verify_chat(server, target.model)
    return server


def create_key(gateway: Server) -> str:
    """A virtual key for the load, made through the admin API (clients of a gateway have one)."""
    body = json.dumps({"name": "bench"}).encode()
    status, answer = http(gateway.url + "/admin/keys", body, ADMIN_KEY)
    if status != 201:
        raise BenchError(f"{gateway.name}: cannot create a key ({status}): {answer[:300]!r}")
    return str(json.loads(answer)["key"])


@contextlib.contextmanager
def running(procs: Processes, target: Target, sim: Server) -> Iterator[Server]:
    """The server for ``target`` while the block runs; direct means the simulator itself."""
    if target.kind == "direct":
        yield sim
        return
    server = start_target(procs, target, sim)
    try:
        yield server
    finally:
        procs.stop(server.proc)


# --- measuring ------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc/PID/stat."""
    # Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children_cpu_seconds() -> float:
    """CPU time of the finished children (the load generator runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy so far in processes (all cores), or stolen."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = fields
    # Interrupts are left out: loopback networking runs there and is charged to no process,
    # so under our own load it would read as someone else's.
    return (user + nice + system + steal) / CLK_TCK


@contextlib.contextmanager
def cpu_meter(target: Server, sim: Server) -> Iterator[dict[str, float]]:
    """CPU seconds of the target, of the side core (simulator + load) and of everything else."""
    usage: dict[str, float] = {}
    target_0, sim_0 = cpu_seconds(target.proc.pid), cpu_seconds(sim.proc.pid)
    children_0, machine_0, wall_0 = children_cpu_seconds(), machine_busy_seconds(), time.monotonic()
    yield usage
    usage["wall_s"] = time.monotonic() - wall_0
    usage["target_cpu_s"] = cpu_seconds(target.proc.pid) - target_0
    usage["side_cpu_s"] = cpu_seconds(sim.proc.pid) - sim_0 + children_cpu_seconds() - children_0
    # Direct runs measure the simulator itself: do not count it twice.
    ours = usage["side_cpu_s"] + (usage["target_cpu_s"] if target is not sim else 0.0)
    # Whatever else ran meanwhile (other users of the machine) skews the numbers: record it.
    usage["other_cpu_s"] = max(0.0, machine_busy_seconds() - machine_0 - ours)


def wrk(
    procs: Processes, url: str, script: str, connections: int, seconds: int, env: dict[str, str]
) -> dict[str, float]:
    """One wrk run on the side core; the JSON summary its Lua ``done()`` prints."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
    cmd += ["-s", str(WRK_DIR / script), url]
    out = procs.run(cmd, SIDE_CORE, timeout=seconds + 30, env=env)
    for line in out.splitlines():
        if line.startswith("BENCH_JSON "):
            return dict(json.loads(line.removeprefix("BENCH_JSON ")))
    raise BenchError(f"wrk printed no summary:\n{out[-800:]}")


def wrk_env(target: Target, key: str, rate: float | None = None) -> dict[str, str]:
    """What the wrk Lua scripts read: body and key, and the rate for the paced one."""
    env = {
        "BENCH_BODY": target.body().decode(),
        "BENCH_AUTH": key,
        "BENCH_WRK_DIR": str(WRK_DIR),
    }
    if rate is not None:
        env["BENCH_RATE"] = str(rate)
    return env


def wrk_result(run: dict[str, float], cpu: dict[str, float]) -> dict[str, float]:
    """Requests/s, latency percentiles (ms), errors and CPU use of one measured wrk run."""
    requests = max(run["requests"], 1)
    errors = sum(
        run[k]
        for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    )
    return {
        "requests": run["requests"],
        "rps": run["requests"] / (run["duration_us"] / 1e6),
        "p50_ms": run["p50_us"] / 1000,
        "p90_ms": run["p90_us"] / 1000,
        "p99_ms": run["p99_us"] / 1000,
        "p999_ms": run["p999_us"] / 1000,
        "max_ms": run["max_us"] / 1000,
        "errors": errors,
        "cpu_us_per_req": cpu["target_cpu_s"] / requests * 1e6,
        "target_busy": cpu["target_cpu_s"] / cpu["wall_s"],
        "side_busy": cpu["side_cpu_s"] / cpu["wall_s"],
        "other_busy": cpu["other_cpu_s"] / cpu["wall_s"],
    }


def measure_throughput(
    procs: Processes, server: Server, sim: Server, target: Target, profile: Profile
) -> dict[str, float]:
    """Scenario a: closed loop, 64 connections, as fast as the target goes."""
    env = wrk_env(target, server.api_key)
    url = server.url + target.path
    wrk(procs, url, "post.lua", THROUGHPUT_CONNECTIONS, profile.warmup_s, env)
    with cpu_meter(server, sim) as cpu:
        run = wrk(procs, url, "post.lua", THROUGHPUT_CONNECTIONS, profile.duration_s, env)
    return wrk_result(run, cpu)


def start_load(
    server: Server, target: Target, seconds: int, connections: int = THROUGHPUT_CONNECTIONS
) -> subprocess.Popen[str]:
    """A closed-loop wrk on the side core against ``server``, started, not waited for."""
    env = dict(os.environ, **wrk_env(target, server.api_key))
    cmd = ["taskset", "-c", SIDE_CORE, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s"]
    cmd += ["--timeout", "10s", "-s", str(WRK_DIR / "post.lua"), server.url + target.path]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)


def load_requests(proc: subprocess.Popen[str]) -> int:
    """The requests a finished ``start_load`` run completed (it must have had no errors)."""
    out, _ = proc.communicate()
    if "BENCH_JSON " not in out:
        raise BenchError(f"wrk printed no summary:\n{out[-800:]}")
    summary = json.loads(out.split("BENCH_JSON ", 1)[1].splitlines()[0])
    errors = sum(summary[k] for k in ("status_errors", "read_errors", "write_errors", "timeouts"))
    if errors or not summary["requests"]:
        raise BenchError(f"wrk saw {errors} errors in {summary['requests']} requests")
    return int(summary["requests"])


def side_by_side(servers: list[Server], targets: list[Target], seconds: int) -> list[float]:
    """CPU microseconds a request of each server, all pinned to the target core and each
    saturated by its own wrk over the same seconds (after a warm-up)."""
    loads = list(zip(servers, targets, strict=True))
    for proc in [start_load(server, target, PAIRED_WARMUP_S) for server, target in loads]:
        load_requests(proc)
    before = [cpu_seconds(server.proc.pid) for server in servers]
    runs = [start_load(server, target, seconds) for server, target in loads]
    done = [load_requests(proc) for proc in runs]
    after = [cpu_seconds(server.proc.pid) for server in servers]
    return [(b - a) / n * 1e6 for a, b, n in zip(before, after, done, strict=True)]


def measure_side_by_side(
    procs: Processes, targets: tuple[Target, ...], sim: Server, profile: Profile
) -> dict[str, Any]:
    """Scenario a, side by side: the targets at once on the target core, each under its own
    64-connection wrk, ``profile.rounds`` times (fresh processes each round). At full load a
    target's throughput on its core is the inverse of its CPU a request, and measured at the
    same time both see the same machine: their ratio repeats within a few percent where rounds
    one after the other differ by a third."""
    rounds = []
    for index in range(profile.rounds):
        servers = [start_target(procs, target, sim) for target in targets]
        try:
            cpu = side_by_side(servers, list(targets), profile.duration_s)
        finally:
            for server in servers:
                procs.stop(server.proc)
        rounds.append(dict(zip((t.name for t in targets), cpu, strict=True)))
        line = ", ".join(f"{t.name} {c:.1f}" for t, c in zip(targets, cpu, strict=True))
        log(f"  [side by side] round {index + 1}/{profile.rounds}: CPU us a request: {line}")
    return {"rounds": rounds}


def measure_fixed_rate(
    procs: Processes, server: Server, sim: Server, target: Target, profile: Profile, rate: float
) -> dict[str, float]:
    """Scenario b: requests on a fixed schedule of ``rate`` per second."""
    env = wrk_env(target, server.api_key, rate)
    wrk(procs, server.chat_url, "paced.lua", PACED_CONNECTIONS, profile.warmup_s, env)
    with cpu_meter(server, sim) as cpu:
        run = wrk(procs, server.chat_url, "paced.lua", PACED_CONNECTIONS, profile.duration_s, env)
    return wrk_result(run, cpu)


def percentile(samples: list[float], pct: float) -> float:
    """The ``pct`` percentile of ``samples``, interpolated between closest ranks."""
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def measure_streaming(
    procs: Processes, server: Server, sim: Server, target: Target, profile: Profile
) -> dict[str, float]:
    """Scenario c: time to first token of streamed completions at modest concurrency."""
    cmd = [PYTHON, str(BENCH / "ttft.py"), "--url", server.chat_url, "--model", target.model]
    cmd += ["--requests", str(profile.ttft_requests), "--warmup", str(profile.ttft_warmup)]
    cmd += ["--concurrency", str(TTFT_CONCURRENCY), "--max-tokens", str(STREAM_TOKENS)]
    cmd += ["--api-key", server.api_key]
    with cpu_meter(server, sim) as cpu:
        out = procs.run(cmd, SIDE_CORE, timeout=180, env={})
    data = json.loads(out.strip().splitlines()[-1])
    ttft, total = data["ttft_ms"], data["total_ms"]
    return {
        "requests": len(ttft),
        "ttft_p50_ms": percentile(ttft, 50),
        "ttft_p90_ms": percentile(ttft, 90),
        "ttft_p99_ms": percentile(ttft, 99),
        "total_p50_ms": percentile(total, 50),
        "other_busy": cpu["other_cpu_s"] / cpu["wall_s"],
    }


# --- rounds and summaries ---------------------------------------------------------------------

Measure = Callable[[Server, Target], dict[str, float]]


def in_rounds(
    procs: Processes,
    targets: tuple[Target, ...],
    sim: Server,
    rounds: int,
    label: str,
    measure: Measure,
) -> dict[str, dict[str, Any]]:
    """Measure every target ``rounds`` times, interleaved, rotating the order each round."""
    samples: dict[str, list[dict[str, float]]] = {t.name: [] for t in targets}
    for index in range(rounds):
        shift = index % len(targets)
        for target in targets[shift:] + targets[:shift]:
            with running(procs, target, sim) as server:
                result = measure_quietly(measure, server, target)
            samples[target.name].append(result)
            log(f"  [{label}] round {index + 1}/{rounds} {target.name}: {brief(result)}")
    return {name: {"median": medians(runs), "rounds": runs} for name, runs in samples.items()}


def measure_quietly(measure: Measure, server: Server, target: Target) -> dict[str, float]:
    """Measure; if other processes were busy meanwhile, wait for quiet and measure again."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        result = measure(server, target)
        result["attempts"] = attempt
        if result["other_busy"] <= QUIET_LOAD or attempt == MAX_ATTEMPTS:
            break
        log(f"  other processes used {result['other_busy']:.0%} of a core meanwhile: again")
        wait_for_quiet()
    return result


def brief(result: dict[str, float]) -> str:
    """A one-line view of a measurement for the progress log."""
    keys = ("rps", "p50_ms", "p99_ms", "cpu_us_per_req", "ttft_p50_ms", "ttft_p99_ms", "errors")
    return ", ".join(f"{k}={result[k]:.6g}" for k in keys if k in result)


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    """The per-key median over the rounds other load did not skew (over all if none)."""
    clean = [run for run in runs if run["other_busy"] <= QUIET_LOAD]
    used = clean or runs
    summary = {key: statistics.median(run[key] for run in used) for key in runs[0]}
    summary["clean_rounds"] = len(clean)
    return summary


def med(section: dict[str, dict[str, Any]], target: str, key: str) -> float:
    """The median of ``key`` for ``target`` in a scenario's results."""
    return float(section[target]["median"][key])


def paired(
    section: dict[str, dict[str, Any]],
    name: str,
    base: str,
    key: str,
    compare: Callable[[float, float], float],
) -> float:
    """The median over rounds of ``compare(target, base)``, each round with its own base.

    Targets of one round ran minutes apart, so pairing them cancels the drift between
    rounds that a ratio (or difference) of two medians would keep.
    """
    pairs = list(zip(section[name]["rounds"], section[base]["rounds"], strict=True))
    clean = [(a, b) for a, b in pairs if max(a["other_busy"], b["other_busy"]) <= QUIET_LOAD]
    return statistics.median(compare(a[key], b[key]) for a, b in clean or pairs)


def summarize(results: dict[str, Any]) -> None:
    """Add to every median the comparisons the tables and checks show, paired by round."""

    def ratio(a: float, b: float) -> float:
        return a / b

    def minus(a: float, b: float) -> float:
        return a - b

    thr = results["throughput"]
    for name, target in thr.items():
        target["median"]["vs_passthrough"] = paired(thr, name, "passthrough", "rps", ratio)
    both = results.get("side_by_side")
    if both:
        # Throughput on a saturated core is the inverse of CPU a request.
        shares = sorted(r["passthrough"] / r["gateway"] for r in both["rounds"])
        both["median"] = {
            name: statistics.median(r[name] for r in both["rounds"]) for name in both["rounds"][0]
        }
        both["share"] = {"median": statistics.median(shares), "low": shares[0], "high": shares[-1]}
    paths = results.get("anthropic_path")
    if paths:
        for name, target in paths.items():
            target["median"]["vs_openai_path"] = paired(paths, name, "gateway", "rps", ratio)
    for section_name, (_, base, _) in OVERHEADS.items():
        section = results.get(section_name)
        if section:
            for name, target in section.items():
                for key in ("p50_ms", "p99_ms", "cpu_us_per_req"):
                    added = paired(section, name, base, key, minus)
                    target["median"][f"overhead_added_{key}"] = added
    for section, keys in (
        ("fixed_rate", ("p50_ms", "p99_ms")),
        ("streaming", ("ttft_p50_ms", "ttft_p99_ms")),
    ):
        for name, target in results[section].items():
            for key in keys:
                added = paired(results[section], name, "direct", key, minus)
                target["median"][f"added_{key}"] = added


def checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each design target with the measured value (see ``summarize``) and whether it is met."""
    gateway = {section: results[section]["gateway"]["median"] for section in SECTIONS}
    share = gateway["throughput"]["vs_passthrough"]
    added_p50 = gateway["fixed_rate"]["added_p50_ms"]
    added_p99 = gateway["fixed_rate"]["added_p99_ms"]
    added_ttft = gateway["streaming"]["added_ttft_p50_ms"]
    rows = [
        ("throughput vs bare pass-through", share, THROUGHPUT_SHARE, share >= THROUGHPUT_SHARE),
    ]
    if results.get("side_by_side"):
        both = results["side_by_side"]["share"]["median"]
        title = "throughput vs bare pass-through, side by side"
        rows.append((title, both, THROUGHPUT_SHARE, both >= THROUGHPUT_SHARE))
    rows += [
        ("added latency p50 at fixed rate (ms)", added_p50, ADDED_P50_MS, None),
        ("added latency p99 at fixed rate (ms)", added_p99, ADDED_P99_MS, None),
        ("streaming added TTFT p50 (ms)", added_ttft, ADDED_TTFT_P50_MS, None),
    ]
    if results.get("anthropic_path"):
        share = results["anthropic_path"]["gateway[anthropic]"]["median"]["vs_openai_path"]
        limit = ANTHROPIC_PATH_SHARE
        rows.append(("Anthropic path vs OpenAI path throughput", share, limit, share >= limit))
    for section_name, (measured, _, title) in OVERHEADS.items():
        if results.get(section_name):
            added = results[section_name][measured]["median"]["overhead_added_p50_ms"]
            rows.append((title, added, OVERHEAD_ADDED_P50_MS, None))
    # The latency targets are ceilings, the throughput ones floors.
    rows = [(t, v, lim, v <= lim if ok is None else ok) for t, v, lim, ok in rows]
    return [{"target": t, "measured": v, "limit": lim, "met": ok} for t, v, lim, ok in rows]


# --- environment ------------------------------------------------------------------------------


def git(*args: str) -> str:
    """Output of a git command in the repo, or '' when it fails (e.g. no commit yet)."""
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")),
        "unknown",
    )
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "wrk": (wrk_version.stdout + wrk_version.stderr).split(" Copyright", 1)[0].strip(),
        "packages": package_versions(),
    }


def package_versions() -> dict[str, str]:
    """Versions of the packages the stacks are built from."""
    from importlib import metadata

    versions = {}
    for name in ("aiohttp", "uvloop", "orjson", "uvicorn", "starlette", "httpx", "httptools"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


# --- report -----------------------------------------------------------------------------------


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, readable as plain text too."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def f(value: float, digits: int = 2) -> str:
    """A number with ``digits`` decimals."""
    return f"{value:,.{digits}f}"


Column = tuple[str, Callable[[dict[str, float]], str]]


def pct(key: str) -> Callable[[dict[str, float]], str]:
    """A column showing a share of one core as a percentage."""
    return lambda m: f"{m[key]:.0%}"


def num(key: str, digits: int = 2) -> Callable[[dict[str, float]], str]:
    """A column showing a number."""
    return lambda m: f(m[key], digits)


def section_table(
    section: dict[str, dict[str, Any]], names: list[str], cols: list[Column], first: str = "target"
) -> str:
    """One row per target of a scenario, from the medians over rounds."""
    rows = [[name] + [show(section[name]["median"]) for _, show in cols] for name in names]
    return table([first] + [header for header, _ in cols], rows)


def throughput_table(section: dict[str, dict[str, Any]]) -> str:
    """Scenario a's table."""
    cols: list[Column] = [
        ("req/s", num("rps", 0)),
        ("vs passthrough", pct("vs_passthrough")),
        ("p50 ms", num("p50_ms")),
        ("p99 ms", num("p99_ms")),
        ("CPU/req µs", num("cpu_us_per_req", 0)),
        ("target busy", pct("target_busy")),
        ("core 1 busy", pct("side_busy")),
        ("other load", pct("other_busy")),
        ("errors", num("errors", 0)),
    ]
    return section_table(section, [t.name for t in CORE_TARGETS], cols)


def fixed_rate_table(section: dict[str, dict[str, Any]]) -> str:
    """Scenario b's table, with the latency each target adds over direct."""
    cols: list[Column] = [
        ("achieved req/s", num("rps", 0)),
        ("p50 ms", num("p50_ms")),
        ("p90 ms", num("p90_ms")),
        ("p99 ms", num("p99_ms")),
        ("added p50 ms", num("added_p50_ms")),
        ("added p99 ms", num("added_p99_ms")),
        ("CPU/req µs", num("cpu_us_per_req", 0)),
        ("other load", pct("other_busy")),
        ("errors", num("errors", 0)),
    ]
    return section_table(section, [t.name for t in CORE_TARGETS], cols)


def streaming_table(section: dict[str, dict[str, Any]]) -> str:
    """Scenario c's table, with the TTFT each target adds over direct."""
    cols: list[Column] = [
        ("TTFT p50 ms", num("ttft_p50_ms")),
        ("TTFT p90 ms", num("ttft_p90_ms")),
        ("TTFT p99 ms", num("ttft_p99_ms")),
        ("added p50 ms", num("added_ttft_p50_ms")),
        ("added p99 ms", num("added_ttft_p99_ms")),
        ("stream total p50 ms", num("total_p50_ms", 1)),
        ("other load", pct("other_busy")),
    ]
    return section_table(section, [t.name for t in CORE_TARGETS], cols)


def overhead_table(section: dict[str, dict[str, Any]], names: list[str]) -> str:
    """Scenarios e and f: what a feature adds at the fixed rate, paired by round."""
    cols: list[Column] = [
        ("p50 ms", num("p50_ms")),
        ("p99 ms", num("p99_ms")),
        ("added p50 ms", num("overhead_added_p50_ms")),
        ("added p99 ms", num("overhead_added_p99_ms")),
        ("CPU/req µs", num("cpu_us_per_req", 0)),
        ("added CPU/req µs", num("overhead_added_cpu_us_per_req", 0)),
        ("other load", pct("other_busy")),
    ]
    return section_table(section, names, cols, first="setup")


def anthropic_path_table(section: dict[str, dict[str, Any]]) -> str:
    """Scenario d's table."""
    cols: list[Column] = [
        ("req/s", num("rps", 0)),
        ("vs OpenAI path", pct("vs_openai_path")),
        ("p50 ms", num("p50_ms")),
        ("CPU/req µs", num("cpu_us_per_req", 0)),
        ("errors", num("errors", 0)),
    ]
    return section_table(section, ["gateway", "gateway[anthropic]"], cols, first="path")


def candidates_table(section: dict[str, dict[str, Any]]) -> str:
    """The pass-through stacks side by side, relative to aiohttp + aiohttp."""
    cols: list[Column] = [
        ("req/s", num("rps", 0)),
        ("p50 ms", num("p50_ms")),
        ("p99 ms", num("p99_ms")),
        ("CPU/req µs", num("cpu_us_per_req", 0)),
        ("target busy", pct("target_busy")),
        ("vs aiohttp-aiohttp", pct("vs_passthrough")),
    ]
    names = ["passthrough", *(t.name for t in CANDIDATES)]
    renamed = {stack: section[name] for name, stack in zip(names, STACKS, strict=True)}
    return section_table(renamed, list(STACKS), cols, first="server-client")


def side_by_side_text(section: dict[str, Any] | None) -> list[str]:
    """Scenario a side by side: CPU a request of each, and the throughput share it gives."""
    if not section:
        return []
    names = list(section["rounds"][0])
    rows = [
        [f"round {index}", *(f(r[name], 1) for name in names), f(r["passthrough"] / r["gateway"])]
        for index, r in enumerate(section["rounds"], 1)
    ]
    share = section["share"]
    rows.append(["median", *(f(section["median"][name], 1) for name in names), f(share["median"])])
    return [
        "\n**Max throughput, side by side** (the pass-through and the gateway at once on the "
        f"target core, each under its own {THROUGHPUT_CONNECTIONS}-connection wrk; CPU µs a "
        "request, whose inverse ratio is the gateway's share of the pass-through's throughput "
        f"on one core; rounds from {f(share['low'])} to {f(share['high'])}):\n",
        table(["", *(f"{name} CPU/req µs" for name in names), "gateway share"], rows),
    ]


def checks_table(rows: list[dict[str, Any]]) -> str:
    """The design targets, met or not."""
    body = [
        [
            r["target"],
            f(r["measured"]),
            ("≥ " if "throughput" in r["target"] else "≤ ") + f(r["limit"]),
            "yes" if r["met"] else "**NO**",
        ]
        for r in rows
    ]
    return table(["target", "measured", "limit", "met"], body)


def markdown(report: dict[str, Any]) -> str:
    """The summary, as a Markdown fragment for docs/performance.md."""
    m, cfg = report["machine"], report["config"]
    commit = f"`{report['commit']}`" + (" with uncommitted changes" if report["dirty"] else "")
    commit += f" (tollway/ digest {report['code_digest']})" if "code_digest" in report else ""
    parts = [
        f"Run {report['date']}, commit {commit}, {m['nproc']} cores ({m['cpu']}), "
        f"Python {m['python']}, {m['wrk']}; {cfg['rounds']} round(s), medians shown"
        f"{' (--quick)' if cfg['quick'] else ''}; gateway setup: "
        f"{cfg.get('gateway_setup', 'plain')}.",
        f"\n**Max throughput** ({THROUGHPUT_CONNECTIONS} connections, non-streaming, "
        f"{cfg['duration_s']} s per run):\n",
        throughput_table(report["throughput"]),
        *side_by_side_text(report.get("side_by_side")),
        f"\n**Latency at a fixed rate** of {f(cfg['fixed_rate'], 0)} req/s ("
        + (
            "given with --fixed-rate"
            if cfg.get("fixed_rate_given")
            else "half the gateway's max throughput"
        )
        + f"), {PACED_CONNECTIONS} connections:\n",
        fixed_rate_table(report["fixed_rate"]),
        f"\n**Streaming time to first token** ({STREAM_TOKENS} tokens, "
        f"{STREAM_SIM['tpot_ms']:g} ms per token, {TTFT_CONCURRENCY} concurrent, "
        f"{cfg['ttft_requests']} requests per run):\n",
        streaming_table(report["streaming"]),
    ]
    if report.get("anthropic_path"):
        parts += [
            "\n**The Anthropic path** (scenario a's load, `anthropic`-format requests to "
            "`/v1/messages` served by an `anthropic` deployment, against the OpenAI path):\n",
            anthropic_path_table(report["anthropic_path"]),
        ]
    if report.get("limits_path"):
        parts += [
            "\n**Limits and a budget in force** (scenario b's rate; the same gateway with a "
            "model TPM/RPM limit and an org budget that never refuse, memory backend):\n",
            overhead_table(report["limits_path"], ["gateway", "gateway[limits]"]),
        ]
    if report.get("telemetry_path"):
        parts += [
            "\n**Metrics and request log** (scenario b's rate; the same gateway with "
            "`telemetry.metrics` and `telemetry.request_log` off, against the default):\n",
            overhead_table(report["telemetry_path"], ["gateway[no-telemetry]", "gateway"]),
        ]
    if report.get("candidates"):
        parts += [
            "\n**Pass-through stacks** (scenario a):\n",
            candidates_table(report["throughput"]),
        ]
    parts += ["\n**Targets:**\n", checks_table(report["checks"]), other_load_note(report)]
    return "\n".join(parts) + "\n"


def other_load_note(report: dict[str, Any]) -> str:
    """Whether other processes on the machine may have skewed the numbers."""
    runs = [run for section in SECTIONS for t in report[section].values() for run in t["rounds"]]
    skewed = sum(run["other_busy"] > QUIET_LOAD for run in runs)
    unclean = [
        f"{section} {name}"
        for section in SECTIONS
        for name, t in report[section].items()
        if t["median"]["clean_rounds"] == 0
    ]
    if not skewed:
        return (
            f"\nOther processes used at most {QUIET_LOAD:.0%} of a core during every measurement."
        )
    note = (
        f"\nOther processes used more than {QUIET_LOAD:.0%} of a core during {skewed} of "
        f"{len(runs)} measurements; those are left out of the medians."
    )
    if unclean:
        note += f" **Warning:** no clean round for {', '.join(unclean)}: rerun on a quiet machine."
    return note


# --- main -------------------------------------------------------------------------------------


def run_all(
    procs: Processes,
    profile: Profile,
    with_candidates: bool,
    setup: str = "plain",
    anthropic_path: bool = False,
    limits_path: bool = False,
    telemetry_path: bool = False,
    fixed_rate: float | None = None,
) -> dict[str, Any]:
    """Every scenario, every target, in one run; ``setup`` names the gateway's config;
    ``fixed_rate``: scenario b's rate (and e's, f's), else half the gateway's max throughput."""
    results: dict[str, Any] = {}
    fast = start_simulator(procs, "sim-fast", FAST_SIM)
    core = (DIRECT, PASSTHROUGH, Target("gateway", "gateway", setup=setup))
    targets = core + (CANDIDATES if with_candidates else ())
    log("scenario a: max throughput")
    results["throughput"] = in_rounds(
        procs,
        targets,
        fast,
        profile.rounds,
        "throughput",
        lambda server, t: measure_throughput(procs, server, fast, t, profile),
    )
    log("scenario a, side by side: the pass-through and the gateway at once on one core")
    results["side_by_side"] = measure_side_by_side(
        procs, (PASSTHROUGH, Target("gateway", "gateway", setup=setup)), fast, profile
    )
    if anthropic_path:
        log("scenario d: the Anthropic path against the OpenAI path")
        paths = (
            Target("gateway", "gateway", setup=setup),
            Target("gateway[anthropic]", "gateway", setup=setup, dialect="anthropic"),
        )
        results["anthropic_path"] = in_rounds(
            procs,
            paths,
            fast,
            profile.rounds,
            "anthropic path",
            lambda server, t: measure_throughput(procs, server, fast, t, profile),
        )
    rate = fixed_rate or max(1.0, round(med(results["throughput"], "gateway", "rps") / 2))
    if limits_path:
        log(f"scenario e: admission and settlement (limits and a budget) at {rate:.0f} req/s")
        paths = (
            Target("gateway", "gateway", setup=setup),
            Target("gateway[limits]", "gateway", setup="limits"),
        )
        results["limits_path"] = in_rounds(
            procs,
            paths,
            fast,
            profile.overhead_rounds,
            "limits path",
            lambda server, t: measure_fixed_rate(procs, server, fast, t, profile, rate),
        )
    if telemetry_path:
        log(f"scenario f: metrics and request log at {rate:.0f} req/s")
        paths = (
            Target("gateway[no-telemetry]", "gateway", setup="quiet"),
            Target("gateway", "gateway", setup=setup),
        )
        results["telemetry_path"] = in_rounds(
            procs,
            paths,
            fast,
            profile.overhead_rounds,
            "telemetry path",
            lambda server, t: measure_fixed_rate(procs, server, fast, t, profile, rate),
        )
    log(f"scenario b: latency at {rate:.0f} req/s")
    results["fixed_rate"] = in_rounds(
        procs,
        core,
        fast,
        profile.rounds,
        "fixed rate",
        lambda server, t: measure_fixed_rate(procs, server, fast, t, profile, rate),
    )
    procs.stop(fast.proc)
    stream_sim = start_simulator(procs, "sim-stream", STREAM_SIM)
    log("scenario c: streaming time to first token")
    results["streaming"] = in_rounds(
        procs,
        core,
        stream_sim,
        profile.rounds,
        "streaming",
        lambda server, t: measure_streaming(procs, server, stream_sim, t, profile),
    )
    procs.stop(stream_sim.proc)
    results["fixed_rate_rps"] = rate
    results["fixed_rate_given"] = fixed_rate is not None
    return results


def freeze_code(procs: Processes) -> dict[str, Any]:
    """Copy the package so the whole run measures one version; children import the copy.

    Others may edit or check out files while a run goes on; without the copy its rounds
    would mix versions. Returns the commit, whether the tree differed from it, and a digest.
    """
    code = procs.logdir / "code"
    shutil.copytree(
        ROOT / "tollway", code / "tollway", ignore=shutil.ignore_patterns("__pycache__")
    )
    # Children start in the log folder, so ``python -m tollway`` finds the copy first.
    procs.env["PYTHONPATH"] = str(code)
    digest = hashlib.sha256()
    for path in sorted((code / "tollway").rglob("*.py")):
        digest.update(path.read_bytes())
    return {
        "commit": git("rev-parse", "--short", "HEAD") or "none",
        # Whether the measured package differs from the commit (the digest tells by how much).
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no", "--", "tollway")),
        "code_digest": digest.hexdigest()[:16],
    }


def report_for(
    results: dict[str, Any],
    profile: Profile,
    quick: bool,
    with_candidates: bool,
    start: dict[str, Any],
) -> dict[str, Any]:
    """The results with when, what (the code as at the start) and where they were measured."""
    rate = results.pop("fixed_rate_rps")
    given = results.pop("fixed_rate_given", False)
    summarize(results)
    return {
        "date": datetime.date.today().isoformat(),
        **start,
        "machine": machine(),
        "config": {
            "quick": quick,
            "rounds": profile.rounds,
            "warmup_s": profile.warmup_s,
            "duration_s": profile.duration_s,
            "ttft_requests": profile.ttft_requests,
            "fixed_rate": rate,
            "fixed_rate_given": given,
            "cores": {"target": TARGET_CORE, "simulator_and_load": SIDE_CORE},
            "fast_simulator": FAST_SIM,
            "stream_simulator": STREAM_SIM,
        },
        "candidates": with_candidates,
        **results,
        "checks": checks(results),
    }


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description="Tollway benchmark (see bench/README.md).")
    parser.add_argument("--quick", action="store_true", help="short runs, one round (smoke check)")
    parser.add_argument(
        "--candidates",
        action="store_true",
        help="also measure every pass-through server/client stack",
    )
    parser.add_argument(
        "--gateway-setup",
        choices=sorted(GATEWAY_SETUPS),
        default="plain",
        help="the gateway's config: plain (one deployment) or group3 (a three-deployment group)",
    )
    parser.add_argument(
        "--limits-path",
        action="store_true",
        help="also compare fixed-rate latency with a TPM limit and a budget in force",
    )
    parser.add_argument(
        "--telemetry-path",
        action="store_true",
        help="also compare fixed-rate latency with and without metrics and the request log",
    )
    parser.add_argument(
        "--fixed-rate",
        type=float,
        metavar="RPS",
        help="scenario b's rate (and e's and f's): requests a second, instead of half the "
        "gateway's max throughput (to compare runs at one load)",
    )
    parser.add_argument(
        "--anthropic-path",
        action="store_true",
        help="also compare the Anthropic path (/v1/messages to an anthropic deployment)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=BENCH / "results" / "latest.json",
        help="JSON results file; the Markdown fragment goes beside it (.md)",
    )
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="measure nothing: recompute the summary of an earlier results file, rewrite both",
    )
    return parser.parse_args()


def preflight() -> None:
    """Fail early, with a clear message, on what the run needs."""
    if (os.cpu_count() or 1) < 2:
        raise BenchError("needs at least 2 cores (target on 0, simulator + load on 1)")
    for tool in ("taskset", "wrk"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} is not installed")
    if importlib.util.find_spec("tollway") is None:
        raise BenchError("the tollway package is not importable: run with the project's venv")


def wait_for_quiet() -> float:
    """Wait (bounded) until nothing else keeps the machine busy; return the load seen last."""
    deadline = time.monotonic() + QUIET_WAIT_S
    while True:
        busy_0 = machine_busy_seconds()
        time.sleep(QUIET_SAMPLE_S)
        load = (machine_busy_seconds() - busy_0) / QUIET_SAMPLE_S
        if load <= QUIET_LOAD or time.monotonic() >= deadline:
            break
        log(f"other processes keep {load:.0%} of a core busy; waiting for quiet")
    if load > QUIET_LOAD:
        log(f"machine still busy ({load:.0%} of a core) after {QUIET_WAIT_S:.0f} s; going on")
    return load


def max_other_load(results: dict[str, Any]) -> float:
    """The most CPU other processes used during any one measurement, in cores."""
    return float(
        max(
            run["other_busy"]
            for section in (*SECTIONS, "anthropic_path", "limits_path", "telemetry_path")
            for target in results.get(section, {}).values()
            for run in target["rounds"]
        )
    )


def main() -> int:
    """Run the benchmark, print the summary, write the results; always tear down."""
    args = parse_args()
    if args.render:
        publish(rerender(json.loads(args.render.read_text())), args.render)
        return 0
    profile = QUICK if args.quick else FULL
    # SIGTERM/SIGHUP unwind like Ctrl-C so the finally below stops every child.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _: sys.exit(128 + signum))
    logdir = Path(tempfile.mkdtemp(prefix="tollway-bench-"))
    procs = Processes(logdir)
    keep_logs = False
    try:
        preflight()
        idle_load = wait_for_quiet()
        start = freeze_code(procs)
        results = run_all(
            procs,
            profile,
            args.candidates,
            args.gateway_setup,
            args.anthropic_path,
            args.limits_path,
            args.telemetry_path,
            args.fixed_rate,
        )
    except BenchError as exc:
        keep_logs = True
        log(f"benchmark failed: {exc}\n(logs in {logdir})")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip teardown
        procs.stop_all()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if not keep_logs:
            shutil.rmtree(logdir, ignore_errors=True)
    report = report_for(results, profile, args.quick, args.candidates, start)
    report["other_load"] = {"before": idle_load, "max_during": max_other_load(results)}
    report["config"]["gateway_setup"] = args.gateway_setup
    publish(report, args.out)
    return 0


def rerender(report: dict[str, Any]) -> dict[str, Any]:
    """An earlier report with its medians and checks computed again from its rounds."""
    for section in (*SECTIONS, "anthropic_path", "limits_path", "telemetry_path"):
        for target in report.get(section, {}).values():
            target["median"] = medians(target["rounds"])
    summarize(report)
    report["checks"] = checks(report)
    return report


def publish(report: dict[str, Any], path: Path) -> None:
    """Write the JSON and the Markdown fragment beside it; print the fragment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    fragment = markdown(report)
    path.with_suffix(".md").write_text(fragment)
    print(fragment)
    log(f"wrote {path} and {path.with_suffix('.md')}")


if __name__ == "__main__":
    sys.exit(main())
