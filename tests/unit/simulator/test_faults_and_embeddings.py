"""Fault-spec parsing, settings validation and deterministic embeddings of the simulator."""

from __future__ import annotations

import base64
import math
from array import array

import pytest

from tollway.simulator import SimulatorSettings, SimulatorState
from tollway.simulator.embeddings import EmbeddingCache, input_key, make_vector
from tollway.simulator.faults import Fault, parse_fault


@pytest.mark.parametrize(
    ("spec", "fault"),
    [
        ("status:500", Fault("status", 500)),
        (" Status : 429 ", Fault("status", 429)),
        ("reset", Fault("reset")),
        ("hang", Fault("hang")),
        ("stop-after:0", Fault("stop-after", 0)),
        ("stop-after:12", Fault("stop-after", 12)),
        ("error-after:0", Fault("error-after", 0)),
        ("hang-after:3", Fault("hang-after", 3)),
        ("keepalive", Fault("keepalive")),
        ("keepalive-after:0", Fault("keepalive-after", 0)),
        ("echo:401", Fault("echo", 401)),
        ("echo-after:2", Fault("echo-after", 2)),
    ],
)
def test_parse_fault(spec: str, fault: Fault) -> None:
    assert parse_fault(spec) == fault


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "boom",
        "status",
        "status:abc",
        "status:200",
        "status:600",
        "reset:1",
        "stop-after:-1",
        "error-after",
        "error-after:-2",
        "hang-after",
        "hang-after:-1",
        "keepalive:1",
        "keepalive-after",
        "echo",
        "echo:200",
        "echo-after:-1",
    ],
)
def test_parse_fault_rejects(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_fault(spec)


def test_settings_reject_bad_faults_and_fields() -> None:
    with pytest.raises(ValueError):
        SimulatorSettings(fault="status:9000")
    with pytest.raises(ValueError):
        SimulatorSettings.model_validate({"nope": 1})
    settings = SimulatorSettings()
    with pytest.raises(ValueError):
        settings.fault = "what"


def test_fault_rate_is_deterministic_per_seed() -> None:
    state = SimulatorState(SimulatorSettings(fault="status:500", fault_rate=0.3, seed=9))
    first = [state.pick_fault(None) is not None for _ in range(50)]
    state.configure(seed=9)
    assert [state.pick_fault(None) is not None for _ in range(50)] == first
    assert 0 < sum(first) < 50
    assert state.pick_fault("reset") == Fault("reset")


def test_vectors_are_unit_deterministic_and_distinct() -> None:
    one = make_vector(input_key("hello"), 256)
    assert len(one) == 256
    assert math.isclose(math.sqrt(sum(x * x for x in one)), 1.0, rel_tol=1e-5)
    assert make_vector(input_key("hello"), 256) == one
    assert make_vector(input_key("world"), 256) != one
    assert input_key([1, 2]) != input_key("1,2")


def test_encodings_agree_and_cache_is_bounded() -> None:
    cache = EmbeddingCache(max_entries=2)
    entry = cache.get("s:x", 8)
    decoded = array("f", base64.b64decode(entry.as_base64())).tolist()
    assert decoded == entry.values.tolist()
    assert cache.get("s:x", 8) is entry
    cache.get("s:y", 8)
    cache.get("s:z", 8)
    assert cache.get("s:x", 8) is not entry
