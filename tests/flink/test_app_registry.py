"""Schema ids from the registry's Confluent-compatible API, against a local stand-in server."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from flink_apps.common import schemas
from flink_apps.common.registry import RegistryClient, RegistryError

SIGNALS = schemas.load(schemas.SIGNALS)


class FakeRegistry:
    """Answers like a ccompat v7 endpoint for one subject; records every request."""

    def __init__(self) -> None:
        self.registered: dict[str, tuple[int, dict[str, Any]]] = {}
        self.requests: list[tuple[str, str, dict[str, Any] | None, str | None]] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = json.loads(self.rfile.read(length))
                registry.requests.append(("POST", self.path, body, self.headers.get("Authorization")))
                prefix = "/apis/ccompat/v7/subjects/"
                subject = self.path[len(prefix) :].removesuffix("/versions")
                if self.path.endswith("/versions"):
                    registry.registered[subject] = (len(registry.registered) + 40, json.loads(body["schema"]))
                    self._answer(200, {"id": registry.registered[subject][0]})
                elif subject in registry.registered:
                    self._answer(200, {"subject": subject, "id": registry.registered[subject][0], "version": 1})
                else:
                    self._answer(404, {"error_code": 40401, "message": f"Subject '{subject}' not found."})

            def do_GET(self) -> None:
                registry.requests.append(("GET", self.path, None, self.headers.get("Authorization")))
                wanted = int(self.path.rsplit("/", 1)[1])
                for schema_id, schema in registry.registered.values():
                    if schema_id == wanted:
                        self._answer(200, {"schema": json.dumps(schema)})
                        return
                self._answer(404, {"error_code": 40403, "message": "Schema not found"})

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    fake = FakeRegistry()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def test_lookup_of_an_unregistered_schema_says_what_to_do(registry: FakeRegistry) -> None:
    client = RegistryClient(registry.url)
    with pytest.raises(RegistryError, match=r"not registered under subject 'agents.signals.v1-value'.*--register-schemas"):
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
    with pytest.raises(ValueError, match="schema.registry.password"):
        RegistryClient("http://r", {"password": "x"})
