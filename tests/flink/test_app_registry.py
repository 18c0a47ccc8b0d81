"""Schema ids from the registry's Confluent-compatible API, against a local stand-in server."""

from __future__ import annotations

import base64
import json

import pytest
from registry_stub import FakeRegistry

from flink_apps.common import schemas
from flink_apps.common.registry import RegistryClient, RegistryError

SIGNALS = schemas.for_topic("agents.signals.v1")


def test_lookup_of_an_unregistered_schema_says_what_to_do(registry: FakeRegistry) -> None:
    client = RegistryClient(registry.url)
    with pytest.raises(
        RegistryError, match=r"not registered under subject 'agents.signals.v1-value'.*--register-schemas"
    ):
        client.lookup_id("agents.signals.v1-value", SIGNALS)
    method, path, body, _ = registry.requests[0]
    assert (method, path) == ("POST", "/apis/ccompat/v7/subjects/agents.signals.v1-value")
    assert body is not None and json.loads(body["schema"]) == SIGNALS and body["schemaType"] == "AVRO"


def test_register_then_lookup_and_fetch_by_id_with_basic_auth(registry: FakeRegistry) -> None:
    client = RegistryClient(registry.url + "/apis/ccompat/v7/", {"basic.auth.user.info": "app:pw"})
    assert client.lookup_id("agents.signals.v1-value", SIGNALS, register=True) == 40
    assert client.lookup_id("agents.signals.v1-value", SIGNALS) == 40
    assert client.schema_by_id(40) == SIGNALS
    assert [r[1] for r in registry.requests] == [
        "/apis/ccompat/v7/subjects/agents.signals.v1-value/versions",
        "/apis/ccompat/v7/subjects/agents.signals.v1-value",
        "/apis/ccompat/v7/schemas/ids/40",
    ]
    expected = "Basic " + base64.b64encode(b"app:pw").decode()
    assert all(r[3] == expected for r in registry.requests)
    with pytest.raises(RegistryError, match="schema id 41 is unknown"):
        client.schema_by_id(41)


def test_unreachable_registry_and_bad_settings_are_clear() -> None:
    with pytest.raises(RegistryError, match="failed"):
        RegistryClient("http://127.0.0.1:9", timeout_s=2).lookup_id("s", SIGNALS)
    with pytest.raises(ValueError, match="http"):
        RegistryClient("registry:8080")
    with pytest.raises(ValueError, match=r"schema\.registry\.password"):
        RegistryClient("http://r", {"password": "x"})
