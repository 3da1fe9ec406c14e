"""Compare variants of the gateway running at the same time on the same core.

Timings on this kind of machine drift by a third within an hour, so two variants measured
one after the other differ by more than most changes are worth. Here every variant runs at
once, all pinned to the target core, each saturated by its own ``wrk`` on the side core
(with the simulator). The kernel shares the core between them, so a slow minute slows all
of them alike, and what is compared is the CPU time each process (all its threads) spends
per request over the same seconds. The ratios repeat within a few percent from round to round
(1 to 7%: the gateway's share is lower when the machine runs fast).

The absolute numbers are higher than in ``run.py`` (the variants evict each other's caches)
and latencies mean nothing here: use it to decide between variants, then measure the one
chosen with ``run.py``.

    python bench/paired.py gateway "gateway:telemetry: {request_log: {enabled: false}}"
    python bench/paired.py gateway tree:/path/to/other/checkout passthrough

A variant is ``gateway`` (the benchmark's gateway), ``gateway:YAML`` (the same with YAML
appended to its config file), ``tree:PATH`` (the gateway of another checkout of this
repository, e.g. a git worktree at another commit; ``tree:PATH:YAML`` too) or
``passthrough`` (``passthrough:STACK``: another of ``passthrough.py``'s stacks, e.g.
``passthrough:aiohttp-http1``, the gateway's own upstream client). A gateway variant
written ``...@anthropic`` is loaded with Anthropic Messages requests served by the Anthropic
deployment (``run.py``'s scenario d), so ``gateway gateway@anthropic`` compares the two paths.
The first variant is the reference of the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # bench/run.py: processes, simulator, gateway config, wrk scripts


@dataclass
class Variant:
    """One contender: what runs and under which name it is reported."""

    label: str
    kind: str  # gateway or passthrough
    root: Path  # the checkout whose code runs
    extra_yaml: str = ""
    dialect: str = "openai"  # the requests the load sends (run.Target.dialect)
    stack: str = "aiohttp-aiohttp"  # a pass-through's server and client (passthrough.py)

    @property
    def target(self) -> run.Target:
        """What the load generator sends: body, path and model as in ``run.py``."""
        return run.Target(self.label, self.kind, dialect=self.dialect)


def parse_variant(text: str) -> Variant:
    """``gateway[:YAML]``, ``tree:PATH[:YAML]`` (either with ``@anthropic``) or
    ``passthrough``."""
    if text.endswith("@anthropic") and text != "passthrough@anthropic":
        variant = parse_variant(text.removesuffix("@anthropic"))
        variant.label, variant.dialect = text, "anthropic"
        return variant
    if text == "passthrough" or text.startswith("passthrough:"):
        stack = text.partition(":")[2] or "aiohttp-aiohttp"
        if stack not in run.STACKS:
            raise run.BenchError(f"unknown pass-through stack {stack!r}: {', '.join(run.STACKS)}")
        return Variant(text, "passthrough", run.ROOT, stack=stack)
    if text == "gateway" or text.startswith("gateway:"):
        return Variant(text, "gateway", run.ROOT, text.partition(":")[2])
    if text.startswith("tree:"):
        path, _, extra = text[len("tree:") :].partition(":")
        root = Path(path).resolve()
        if not (root / "tollway" / "__init__.py").exists():
            raise run.BenchError(f"{root} is not a checkout of this repository")
        return Variant(text, "gateway", root, extra)
    raise run.BenchError(
        f"unknown variant {text!r}: gateway[:YAML], tree:PATH[:YAML], passthrough[:STACK]"
    )


def start(procs: run.Processes, variant: Variant, index: int, sim: run.Server) -> run.Server:
    """Start ``variant`` on the target core; a gateway gets a virtual key for the load."""
    port = run.free_port()
    name = f"variant-{index}"
    if variant.kind == "passthrough":
        cmd = [run.PYTHON, str(run.BENCH / "passthrough.py"), "--stack", variant.stack]
        cmd += ["--host", run.HOST, "--port", str(port), "--upstream", sim.url]
        server = run.Server(name, procs.start(name, cmd, run.TARGET_CORE), port)
        run.wait_ready(procs, server, "/health", variant.target.model)
        return server
    config = run.gateway_config(procs, sim, port)
    if variant.extra_yaml:
        config.write_text(config.read_text() + variant.extra_yaml + "\n")
    cmd = [*run.TOLLWAY, "serve", "--config", str(config), "--host", run.HOST]
    cmd += ["--port", str(port)]
    env = {run.ADMIN_KEY_ENV: run.ADMIN_KEY, "PYTHONPATH": str(variant.root)}
    server = run.Server(name, procs.start(name, cmd, run.TARGET_CORE, env), port)
    run.wait_ready(procs, server, "/health/ready", variant.target.model)
    server.api_key = run.create_key(server)
    return server


def one_round(
    procs: run.Processes, variants: list[Variant], sim: run.Server, args: argparse.Namespace
) -> list[float]:
    """CPU microseconds a request of every variant, all loaded over the same seconds."""
    servers = [start(procs, variant, i, sim) for i, variant in enumerate(variants)]
    try:
        return run.side_by_side(servers, [v.target for v in variants], args.seconds)
    finally:
        for server in servers:
            procs.stop(server.proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "variants", nargs="+", help="gateway[:YAML], tree:PATH[:YAML] (+@anthropic), passthrough"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=10, help="measured seconds a round")
    parser.add_argument("--connections", type=int, default=run.THROUGHPUT_CONNECTIONS)
    args = parser.parse_args()
    try:
        variants = [parse_variant(text) for text in args.variants]
    except run.BenchError as exc:
        parser.error(str(exc))
    procs = run.Processes(Path(tempfile.mkdtemp(prefix="tollway-paired-")))
    rounds: list[list[float]] = []
    try:
        sim = run.start_simulator(procs, "simulator", run.FAST_SIM)
        for number in range(1, args.rounds + 1):
            rounds.append(one_round(procs, variants, sim, args))
            line = "  ".join(f"{cpu:6.1f}" for cpu in rounds[-1])
            run.log(f"round {number}/{args.rounds}: CPU us a request {line}")
    except run.BenchError as exc:
        print(f"error: {exc}; logs in {procs.logdir}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
    print("| variant | CPU us a request (median) | ratio to the first (median) | ratio range |")
    print("|---|---:|---:|---|")
    for index, variant in enumerate(variants):
        cpu = [r[index] for r in rounds]
        ratios = sorted(r[index] / r[0] for r in rounds)
        spread = f"{ratios[0]:.3f} to {ratios[-1]:.3f}"
        print(
            f"| `{variant.label}` | {statistics.median(cpu):.1f} "
            f"| {statistics.median(ratios):.3f} | {spread} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
