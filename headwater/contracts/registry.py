"""A small client for the Confluent-compatible API of Apicurio Registry (`/apis/ccompat/v7`).

It covers what contracts need: subjects, versions, ids, per-subject compatibility, registration and the
compatibility check. When the registry refuses a schema, the reason is taken from Apicurio's own dry run
(`POST /apis/registry/v3/groups/default/artifacts/<subject>/versions?dryRun=true`, which returns the
rule's causes with their locations): the ccompat compatibility endpoint only answers true or false.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests

from headwater.contracts.model import Compatibility, SchemaType

CCOMPAT_PATH = "/apis/ccompat/v7"
V3_PATH = "/apis/registry/v3"
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
# Subjects registered through the ccompat API live in Apicurio's default artifact group.
CCOMPAT_GROUP = "default"


class RegistryError(RuntimeError):
    """The registry could not be reached, or answered something unexpected."""


class RegistryAccessError(RegistryError):
    """The registry refused the caller: 401 (no or wrong credentials) or 403 (its role may not do that)."""

    def __init__(self, message: str, status: int) -> None:
        self.status = status
        super().__init__(message)


class IncompatibleSchemaError(RegistryError):
    """The registry refused a schema under its compatibility rule; `causes` are its reasons."""

    def __init__(self, subject: str, message: str, causes: list[str]) -> None:
        self.subject = subject
        self.causes = causes
        super().__init__(message)


@dataclass(frozen=True)
class RegisteredSchema:
    subject: str
    version: int
    id: int
    schema_type: SchemaType
    text: str


def root_url(url: str) -> str:
    """The registry's root URL, whether given as the root or as the ccompat API's base."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"registry URL must look like http(s)://host[:port], got {url!r}")
    root = url.rstrip("/")
    return root[: -len(CCOMPAT_PATH)] if root.endswith(CCOMPAT_PATH) else root


class RegistryClient:
    """Talks to one registry. `verify` is requests' TLS setting: True, False, or a CA bundle path.
    `auth` is (user, password) for HTTP basic authentication; None sends no credentials."""

    def __init__(
        self,
        url: str,
        *,
        verify: bool | str = True,
        timeout: float = 10.0,
        session: requests.Session | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.root = root_url(url)
        self.ccompat = self.root + CCOMPAT_PATH
        self.verify = verify
        self.timeout = timeout
        self.session = session or requests.Session()
        self.user = auth[0] if auth else None
        if auth:
            self.session.auth = auth

    def __repr__(self) -> str:  # never the password
        return f"RegistryClient({self.root!r}, user={self.user!r})"

    # --- plumbing ---------------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        url: str,
        body: Mapping[str, Any] | None = None,
        *,
        params: Mapping[str, str] | None = None,
        content_type: str = CONTENT_TYPE,
        ok: tuple[int, ...] = (200,),
    ) -> requests.Response:
        headers = {"Accept": f"{CONTENT_TYPE}, application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            response = self.session.request(
                method,
                url,
                json=body,
                params=params,
                headers=headers,
                timeout=self.timeout,
                verify=self.verify,
            )
        except requests.RequestException as exc:
            raise RegistryError(f"{method} {url}: the registry is not reachable: {exc}") from None
        if response.status_code in (401, 403) and response.status_code not in ok:
            who = f"as {self.user!r}" if self.user else "without credentials"
            raise RegistryAccessError(
                f"{method} {url} answered HTTP {response.status_code} {who}: {_error_text(response)}",
                response.status_code,
            )
        if response.status_code not in ok:
            raise RegistryError(
                f"{method} {url} answered HTTP {response.status_code}: {_error_text(response)}"
            )
        return response

    def _subject_url(self, subject: str, *rest: str) -> str:
        parts = [urllib.parse.quote(subject, safe=""), *rest]
        return f"{self.ccompat}/subjects/" + "/".join(parts)

    # --- reads ------------------------------------------------------------------------------------------

    def ready(self) -> bool:
        """True once the API answers (what a start-up wait polls)."""
        try:
            return self.session.get(f"{self.ccompat}/subjects", timeout=2, verify=self.verify).ok
        except requests.RequestException:
            return False

    def subjects(self) -> list[str]:
        return sorted(self._call("GET", f"{self.ccompat}/subjects").json())

    def versions(self, subject: str) -> list[int]:
        """The subject's version numbers, oldest first ([] for an unknown subject)."""
        response = self._call("GET", self._subject_url(subject, "versions"), ok=(200, 404))
        return [] if response.status_code == 404 else sorted(int(v) for v in response.json())

    def version(self, subject: str, version: int | str) -> RegisteredSchema:
        data = self._call("GET", self._subject_url(subject, "versions", str(version))).json()
        return RegisteredSchema(
            subject=subject,
            version=int(data["version"]),
            id=int(data["id"]),
            schema_type=SchemaType(data.get("schemaType") or "AVRO"),
            text=str(data["schema"]),
        )

    def latest(self, subject: str) -> RegisteredSchema | None:
        versions = self.versions(subject)
        return self.version(subject, versions[-1]) if versions else None

    def history(self, subject: str) -> list[RegisteredSchema]:
        """Every version of the subject, oldest first."""
        return [self.version(subject, v) for v in self.versions(subject)]

    def schema_by_id(self, schema_id: int) -> tuple[SchemaType, str]:
        data = self._call("GET", f"{self.ccompat}/schemas/ids/{int(schema_id)}", ok=(200, 404))
        if data.status_code == 404:
            raise RegistryError(f"schema id {schema_id} is unknown to the registry at {self.root}")
        body = data.json()
        return SchemaType(body.get("schemaType") or "AVRO"), str(body["schema"])

    def lookup(self, subject: str, text: str, schema_type: SchemaType) -> RegisteredSchema | None:
        """The version of `subject` whose content is `text`, if registered."""
        response = self._call(
            "POST",
            self._subject_url(subject),
            {"schema": text, "schemaType": schema_type.value},
            ok=(200, 404),
        )
        if response.status_code == 404:
            return None
        data = response.json()
        return RegisteredSchema(
            subject, int(data["version"]), int(data["id"]), schema_type, str(data["schema"])
        )

    def get_compatibility(self, subject: str) -> Compatibility | None:
        """The subject's own compatibility level (None when the subject has none set)."""
        response = self._call(
            "GET", f"{self.ccompat}/config/{urllib.parse.quote(subject, safe='')}", ok=(200, 404)
        )
        if response.status_code == 404:
            return None
        data = response.json()
        level = data.get("compatibilityLevel") or data.get("compatibility")
        return Compatibility(level) if level else None

    def is_compatible(self, subject: str, text: str, schema_type: SchemaType) -> bool:
        """The registry's verdict for `text` under the subject's current rule (True for a new subject)."""
        if not self.versions(subject):
            return True
        url = f"{self.ccompat}/compatibility/subjects/{urllib.parse.quote(subject, safe='')}/versions/latest"
        data = self._call("POST", url, {"schema": text, "schemaType": schema_type.value}).json()
        return bool(data.get("is_compatible"))

    def explain(self, subject: str, text: str) -> list[str]:
        """The registry's reasons for refusing `text` under `subject` (Apicurio's dry run); [] if it accepts."""
        url = f"{self.root}{V3_PATH}/groups/{CCOMPAT_GROUP}/artifacts/{urllib.parse.quote(subject, safe='')}/versions"
        body = {"content": {"content": text, "contentType": "application/json"}}
        response = self._call(
            "POST", url, body, params={"dryRun": "true"}, content_type="application/json", ok=(200, 400, 409)
        )
        if response.status_code == 200:
            return []
        data = _json(response)
        causes = data.get("causes") if isinstance(data, dict) else None
        if isinstance(causes, list) and causes:
            return [
                f"{c.get('context') or '/'}: {c.get('description')}" for c in causes if isinstance(c, dict)
            ]
        return [_error_text(response)]

    # --- writes -----------------------------------------------------------------------------------------

    def set_compatibility(self, subject: str, level: Compatibility, *, settle_s: float = 30.0) -> None:
        """Set the subject's compatibility rule (idempotent).

        A registry that has just started on KafkaSQL storage may still be replaying its journal: it then
        sees no rule yet, creates one, and answers 409 "already exists" when the journal's own rule arrives.
        That answer is retried with backoff for up to `settle_s` seconds, until the PUT lands as an update.
        """
        url = f"{self.ccompat}/config/{urllib.parse.quote(subject, safe='')}"
        deadline = time.monotonic() + settle_s
        pause = 0.2
        while True:
            response = self._call("PUT", url, {"compatibility": level.value}, ok=(200, 409))
            if response.status_code == 200:
                return
            if time.monotonic() + pause > deadline:
                raise RegistryError(
                    f"PUT {url} kept answering HTTP 409 for {settle_s:.0f}s: {_error_text(response)}"
                )
            time.sleep(pause)
            pause = min(pause * 2, 5.0)

    def register(self, subject: str, text: str, schema_type: SchemaType) -> int:
        """Register `text` under `subject` (idempotent: the same content gives the same id)."""
        response = self._call(
            "POST",
            self._subject_url(subject, "versions"),
            {"schema": text, "schemaType": schema_type.value},
            ok=(200, 409),
        )
        if response.status_code == 409:
            causes = self.explain(subject, text) or [_error_text(response)]
            raise IncompatibleSchemaError(
                subject,
                f"the registry at {self.root} refused the new schema for subject {subject}: "
                + "; ".join(causes),
                causes,
            )
        return int(response.json()["id"])


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _error_text(response: requests.Response) -> str:
    data = _json(response)
    if isinstance(data, dict):
        for key in ("message", "detail", "title", "error"):
            if data.get(key):
                return str(data[key])
    return response.text[:500] or response.reason
