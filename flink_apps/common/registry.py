"""Schema ids from a registry's Confluent-compatible API (Apicurio serves it under /apis/ccompat/v7).

Only the standard library, so the client works inside Flink's Python workers too.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
CCOMPAT_PATH = "/apis/ccompat/v7"


class RegistryError(RuntimeError):
    """The registry refused or could not answer a request."""


@dataclass(frozen=True)
class RegistryClient:
    """`url` is the registry's root (`http://registry:8080`); the ccompat path is added unless present.

    `properties` are the `schema.registry.*` keys of the Kafka properties file (prefix removed):
    `basic.auth.user.info` (`user:password`) and `ssl.ca.location` (a PEM file) are understood.
    """

    url: str
    properties: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        parsed = urllib.parse.urlparse(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"schema registry URL must be http(s)://host[:port]/..., got {self.url!r}")
        unknown = set(self.properties) - {"basic.auth.user.info", "ssl.ca.location"}
        if unknown:
            raise ValueError(
                f"unknown properties {', '.join('schema.registry.' + k for k in sorted(unknown))} "
                "(allowed: schema.registry.basic.auth.user.info, schema.registry.ssl.ca.location)"
            )

    @property
    def base(self) -> str:
        root = self.url.rstrip("/")
        return root if root.endswith(CCOMPAT_PATH) else root + CCOMPAT_PATH

    def lookup_id(self, subject: str, schema: Mapping[str, Any], *, register: bool = False) -> int:
        """The id of `schema` under `subject`; registers it first when `register` is set."""
        body = {"schema": json.dumps(schema, sort_keys=True), "schemaType": "AVRO"}
        quoted = urllib.parse.quote(subject, safe="")
        if register:
            answer = self._request("POST", f"/subjects/{quoted}/versions", body)
        else:
            try:
                answer = self._request("POST", f"/subjects/{quoted}", body)
            except _NotFoundError:
                raise RegistryError(
                    f"schema {schema.get('name')!r} is not registered under subject {subject!r} at {self.url}; "
                    "register it first (the platform does) or start the app with --register-schemas"
                ) from None
        schema_id = answer.get("id")
        if not isinstance(schema_id, int):
            raise RegistryError(
                f"registry answered without an integer id for subject {subject!r}: {answer!r}"
            )
        return schema_id

    def schema_by_id(self, schema_id: int) -> dict[str, Any]:
        """The Avro schema registered with `schema_id`."""
        try:
            answer = self._request("GET", f"/schemas/ids/{int(schema_id)}", None)
        except _NotFoundError:
            raise RegistryError(f"schema id {schema_id} is unknown to the registry at {self.url}") from None
        text = answer.get("schema")
        if not isinstance(text, str):
            raise RegistryError(f"registry answered without a schema for id {schema_id}")
        schema = json.loads(text)
        if not isinstance(schema, dict):
            raise RegistryError(f"schema id {schema_id} is not an Avro record schema")
        return schema

    def _request(self, method: str, path: str, body: Mapping[str, Any] | None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Accept", CONTENT_TYPE)
        if data is not None:
            request.add_header("Content-Type", CONTENT_TYPE)
        user_info = self.properties.get("basic.auth.user.info")
        if user_info:
            request.add_header("Authorization", "Basic " + base64.b64encode(user_info.encode()).decode())
        context = None
        if self.url.startswith("https:"):
            context = ssl.create_default_context(cafile=self.properties.get("ssl.ca.location"))
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s, context=context) as response:
                answer = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:500]
            if exc.code == 404:
                raise _NotFoundError(detail) from None
            raise RegistryError(f"{method} {self.base}{path} failed with HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise RegistryError(f"{method} {self.base}{path} failed: {exc}") from None
        if not isinstance(answer, dict):
            raise RegistryError(f"{method} {self.base}{path} answered {answer!r}, expected a JSON object")
        return answer


class _NotFoundError(Exception):
    pass
