"""The data-plane benchmark's own arithmetic: which event a signal read back from Kafka carries."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from flink_apps.common import schemas
from flink_apps.common.wire import AvroCodec

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dataplane_bench", ROOT / "bench" / "dataplane_bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "event_id", ["evt-1", "evt-0123456789abcdef-42", "e" * 63, "e" * 64, "evt-" + "x" * 200]
)
def test_the_latency_readers_find_the_event_id_in_a_signal(event_id: str) -> None:
    # A signal in the wire format, every field filled as agent-events fills it. Ids of 64 characters and more
    # take a varint of two bytes for their length.
    signal = {
        "event_id": event_id,
        "event_type": "tool.called",
        "event_category": "tool",
        "is_error": False,
        "agent_id": "planner-001",
        "agent_type": "planner",
        "entity_id": "customer-0001",
        "tenant_id": "tenant-1",
        "session_id": "sess-1",
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "parent_event_id": None,
        "status": None,
        "duration_ms": None,
        "tags": ["prod"],
        "occurred_at": 1_767_225_600_000,
        "payload_json": json.dumps({"tool": "search"}),
        "payload_bytes": 18,
        "ingest_lag_ms": 12,
        "source": {"topic": "agents.events.raw.v1", "partition": 0, "offset": 7, "timestamp": None},
        "contract": "agents.events.raw.v1",
    }
    body = AvroCodec(schemas.for_topic("agents.signals.v1"), 4242).encode(signal)
    assert _bench().signal_event_id(body) == event_id
