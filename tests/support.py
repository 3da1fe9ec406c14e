"""Test support: real processes on real ports (the simulator, the gateway) and their config."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent

CLIENT_KEY = "client-key-for-tests-0123456789"
"""The bootstrap admin key every test gateway accepts (``TOLLWAY_ADMIN_KEY``)."""


POSTGRES_URL = os.environ.get(
    "TOLLWAY_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
"""A PostgreSQL server where tests may create and drop databases."""

REDIS_URL = os.environ.get("TOLLWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
"""A Redis server tests share; each test isolates itself by a unique key prefix."""


def unavailable(message: str) -> None:
    """A required service is missing: a failure under ``CI=true``, else a skip saying why."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


async def _admin_database(statement: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        async with asyncio.timeout(10), engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database (its SQLAlchemy URL) for one test; dropped afterwards."""
    name = f"tollway_gw_{uuid.uuid4().hex[:10]}"
    try:
        asyncio.run(_admin_database(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # any failure means PostgreSQL is unusable here
        unavailable(f"PostgreSQL at {POSTGRES_URL} is not usable: {type(exc).__name__}: {exc}")
    yield POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    asyncio.run(_admin_database(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def fresh_store(backend: str, log_dir: Path, name: str) -> Iterator[str]:
    """The URL of a fresh store of ``backend`` (``sqlite``: a file in ``log_dir`` named after
    ``name``; ``postgresql``: a database of its own, dropped afterwards) while the block runs."""
    if backend != "postgresql":
        yield f"sqlite+aiosqlite:///{log_dir}/{name}-{uuid.uuid4().hex[:8]}.db"
        return
    databases = postgres_database()
    yield next(databases)
    next(databases, None)


def chat_gateway_on(
    backend: str, log_dir: Path, simulator_url: str, name: str
) -> Iterator[tuple[str, Process]]:
    """A gateway with one chat model on the simulator, on a fresh store of ``backend``: its
    URL and process (for a module fixture parametrized by store backend to ``yield from``)."""
    with fresh_store(backend, log_dir, name) as url:
        deployment = {"provider": "openai", "model": "sim-chat", "api_base": simulator_url + "/v1"}
        config = {"store": {"url": url}, "models": [{"name": "chat", "deployments": [deployment]}]}
        with running_gateway(log_dir, config, {"TOLLWAY_STORE_URL": url}) as running:
            yield running


def redis_url() -> str:
    """``REDIS_URL`` once it answers PING (else fail under CI, skip elsewhere)."""
    host, _, port = REDIS_URL.split("://", 1)[1].split("/", 1)[0].rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port or 6379)), timeout=3) as s:
            s.sendall(b"PING\r\n")
            if not s.recv(64).startswith(b"+PONG"):
                raise OSError("no PONG")
    except OSError as exc:
        unavailable(f"Redis at {REDIS_URL} is not usable: {type(exc).__name__}: {exc}")
    return REDIS_URL


def unique_prefix(name: str = "t") -> str:
    """A key prefix no other test (or concurrent test run) uses."""
    return f"tollway-test:{name}:{uuid.uuid4().hex[:10]}:"


_PORTS = (10_000, 32_000)
"""Where test servers' ports are picked: below the kernel's ephemeral range (32768 and up on
Linux), from which it hands out the ports of outgoing connections and of binds to port 0."""
_HANDED: set[int] = set()


def free_port() -> int:
    """A port free on 127.0.0.1 for a server a test is about to start.

    Asking the kernel for one (a bind to port 0, then closing it) let two test workers be
    given the same port a moment apart: a gateway then failed to bind, and its test talked to
    another worker's gateway. Each pytest-xdist worker picks from a slice of its own of a
    range the kernel never hands out, never the same port twice, and only one it can bind."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    index = int(worker) if worker.isdigit() else 0
    span = (_PORTS[1] - _PORTS[0]) // max(workers, 1)
    low = _PORTS[0] + span * (index % max(workers, 1))
    for _ in range(200):
        port = random.randrange(low, low + span)
        if port in _HANDED:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use, or a closed connection's port still waiting
        _HANDED.add(port)
        return port
    raise RuntimeError(f"no free port in {low}..{low + span}")


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


def wait_for_ids(
    fetch: Callable[[], Iterable[dict[str, Any]]], ids: set[str], what: str, timeout: float = 15.0
) -> dict[str, Any]:
    """The items ``fetch`` lists whose ``request_id`` is in ``ids``, by request id, once all of
    them are there (written in the background: the request log, the audit trail)."""
    deadline = time.monotonic() + timeout
    found: dict[str, Any] = {}
    while time.monotonic() < deadline:
        found = {item["request_id"]: item for item in fetch() if item["request_id"] in ids}
        if len(found) == len(ids):
            return found
        time.sleep(0.1)
    raise AssertionError(f"not {what}: {sorted(ids - set(found))}")


def sim_departure(sim: str, tag: str, until: float) -> dict[str, Any] | None:
    """The simulator's record of the request tagged ``x-sim-test-tag: tag`` losing its
    caller, waited for until ``until`` (``time.time()``); None if it never came."""
    while True:
        for row in httpx.get(sim + "/_sim/departures").json():
            if row["headers"].get("x-sim-test-tag") == tag:
                return dict(row)
        if time.time() > until:
            return None
        time.sleep(0.05)


def admin_request(url: str, method: str, path: str, body: Any = None) -> Any:
    """An admin API call with the tests' admin key (``CLIENT_KEY``): its JSON, asserted 2xx."""
    response = httpx.request(
        method, url + path, json=body, headers={"Authorization": f"Bearer {CLIENT_KEY}"}, timeout=10
    )
    assert response.status_code < 300, response.text
    return response.json()


def budgeted_key(url: str, name: str) -> tuple[str, str]:
    """A new virtual key (id, key) named ``name-...`` under a $50 daily budget of its own."""
    created = admin_request(url, "POST", "/admin/keys", {"name": f"{name}-{uuid.uuid4().hex[:6]}"})
    budget = {"scope": "key", "scope_id": created["id"], "period": "day", "limit_usd": 50.0}
    admin_request(url, "PUT", "/admin/budgets", budget)
    return created["id"], created["key"]


def logged_row(url: str, request_id: str, admin: dict[str, str]) -> dict[str, Any]:
    """The request log's row of ``request_id``, once written (within 10 s)."""

    def rows() -> list[dict[str, Any]]:
        page = httpx.get(url + "/admin/logs", params={"since": "10m"}, headers=admin).json()
        return list(page["data"])

    return dict(wait_for_ids(rows, {request_id}, "logged", timeout=10.0)[request_id])


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
    log_dir: Path,
    config: dict[str, Any] | None,
    env: dict[str, str] | None = None,
    *extra: str,
) -> Iterator[tuple[str, Process]]:
    """A ``tollway serve`` process on ``config`` (None: the embedded default); ``extra``
    arguments go to ``serve`` (``--log-level``, ``debug``)."""
    with running_gateways(log_dir, [(config, env)], *extra) as [running]:
        yield running


@contextmanager
def running_gateways(
    log_dir: Path,
    setups: Iterable[tuple[dict[str, Any] | None, dict[str, str] | None]],
    *extra: str,
) -> Iterator[list[tuple[str, Process]]]:
    """``tollway serve`` processes on each (config, env) of ``setups``, started at once and
    then waited for, as ``running_gateway`` starts one: a start is mostly imports, so two
    take little longer than one. Only for gateways that may start together (replicas on
    PostgreSQL, which migrate under an advisory lock, or each on a store of its own), not
    for replicas that share one SQLite file."""
    started: list[tuple[str, Process]] = []
    try:
        for config, env in setups:
            started.append(_gateway_process(log_dir, config, env, extra))
        for url, process in started:
            wait_http(url + "/health/ready", proc=process.proc)
        yield started
    except RuntimeError as exc:
        said = [
            f"--- gateway output{'' if len(started) == 1 else f' ({url})'} ---\n{process.output()}"
            for url, process in started
        ]
        raise RuntimeError("\n".join([str(exc), *said])) from None
    finally:
        for _, process in started:
            process.stop()


def _gateway_process(
    log_dir: Path, config: dict[str, Any] | None, env: dict[str, str] | None, extra: Iterable[str]
) -> tuple[str, Process]:
    """A ``tollway serve`` process just started (not yet ready) and its base URL."""
    port = free_port()
    args = ["serve", "--port", str(port), *extra]
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
    return f"http://127.0.0.1:{port}", process


def png(width: int, height: int) -> bytes:
    """A real PNG (blank, greyscale) of the given size: a few KB even when large."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * ((width + 1) * height))
    signature = b"\x89PNG\r\n\x1a\n"
    return signature + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def pdf(pages: int, *, fan_out: int = 0, object_streams: bool = False, pad: int = 0) -> bytes:
    """A real PDF of ``pages`` blank pages: their page tree flat under its root, or in nodes
    of ``fan_out`` pages each (every node with its ``/Count``); with ``object_streams``, every
    object compressed in one object stream indexed by a cross-reference stream (PDF 1.5, as
    modern writers do). ``pad``: bytes of comment after the header, to weigh more."""
    objects: dict[int, bytes] = {1: b"<< /Type /Catalog /Pages 2 0 R >>"}
    numbers = iter(range(3, 3 + 2 * pages + 2))

    def leaves(parent: int, count: int) -> list[int]:
        kids = [next(numbers) for _ in range(count)]
        for kid in kids:
            objects[kid] = b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] >>" % parent
        return kids

    def node(kids: list[int], count: int, parent: int | None) -> bytes:
        refs = b" ".join(b"%d 0 R" % kid for kid in kids)
        up = b" /Parent %d 0 R" % parent if parent else b""
        return b"<< /Type /Pages%s /Kids [%s] /Count %d >>" % (up, refs, count)

    if fan_out:
        nodes = []
        for start in range(0, pages, fan_out):
            number, count = next(numbers), min(fan_out, pages - start)
            objects[number] = node(leaves(number, count), count, 2)
            nodes.append(number)
        objects[2] = node(nodes, pages, None)
    else:
        objects[2] = node(leaves(2, pages), pages, None)
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + b"%" + b"x" * pad + b"\n")
    last = max(objects)
    if not object_streams:
        offsets = {}
        for number in sorted(objects):
            offsets[number] = len(out)
            out += b"%d 0 obj\n%s\nendobj\n" % (number, objects[number])
        xref = len(out)
        out += b"xref\n0 %d\n0000000000 65535 f \n" % (last + 1)
        out += b"".join(b"%010d 00000 n \n" % offsets.get(n, 0) for n in range(1, last + 1))
        out += b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (last + 1)
        return bytes(out + b"startxref\n%d\n%%%%EOF\n" % xref)
    order = sorted(objects)
    bodies, header = b"", b""
    for number in order:
        header += b"%d %d " % (number, len(bodies))
        bodies += objects[number] + b"\n"
    packed = zlib.compress(header + bodies)
    stream, xref = last + 1, last + 2
    stream_at = len(out)
    out += b"%d 0 obj\n<< /Type /ObjStm /N %d /First %d /Filter /FlateDecode /Length %d >>\n" % (
        stream,
        len(order),
        len(header),
        len(packed),
    )
    out += b"stream\n" + packed + b"\nendstream\nendobj\n"
    xref_at = len(out)
    rows = [struct.pack(">BIH", 0, 0, 65535)]
    rows += [struct.pack(">BIH", 2, stream, order.index(n)) if n in objects
             else struct.pack(">BIH", 0, 0, 0) for n in range(1, last + 1)]  # fmt: skip
    rows += [struct.pack(">BIH", 1, stream_at, 0), struct.pack(">BIH", 1, xref_at, 0)]
    table = zlib.compress(b"".join(rows))
    out += b"%d 0 obj\n<< /Type /XRef /Size %d /W [1 4 2] /Root 1 0 R /Filter /FlateDecode" % (
        xref,
        xref + 1,
    )
    out += b" /Length %d >>\nstream\n" % len(table) + table + b"\nendstream\nendobj\n"
    return bytes(out + b"startxref\n%d\n%%%%EOF\n" % xref_at)


def self_signed(directory: Path, host: str) -> tuple[Path, Path]:
    """A certificate for ``host`` (a name, or an IP address) that no CA signed, and its key,
    as PEM files in ``directory``."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    try:
        alternative: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alternative = x509.DNSName(host)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(public).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([alternative]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
