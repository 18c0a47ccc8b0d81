"""A stand-in for the schema registry's Confluent-compatible API (ccompat v7), on a local port."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any


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
                    self._answer(
                        200, {"subject": subject, "id": registry.registered[subject][0], "version": 1}
                    )
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
