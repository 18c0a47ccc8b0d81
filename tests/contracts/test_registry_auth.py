"""Nobody uses the registry anonymously: on a real Apicurio Registry 3.3.3, with the local stack's users.

The platform's publisher writes; a principal whose flows touch a contracted topic only reads, as itself;
no credentials or a wrong password get 401, a reader's write 403. Every client of the platform passes its
credentials: the contracts CLI, the Pulumi dynamic provider and the Flink apps' own registry client.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from flink_apps.common.registry import RegistryClient as AppRegistryClient
from flink_apps.common.registry import RegistryError as AppRegistryError
from headwater.contracts.model import SchemaType, registered_text
from headwater.contracts.provider import SubjectSchemaProvider
from headwater.contracts.registry import RegistryAccessError, RegistryClient
from headwater.local.registry import LocalRegistry
from headwater_cli.main import main

SCHEMA = {"type": "record", "name": "AuthProbe", "fields": [{"name": "a", "type": "string"}]}
TEXT = registered_text(SCHEMA)


@pytest.fixture
def subject(client: RegistryClient, fresh_subject: str) -> str:
    """A subject the publisher registered, for the readers to find."""
    client.register(fresh_subject, TEXT, SchemaType.AVRO)
    return fresh_subject


def test_without_credentials_nothing_is_allowed(registry: LocalRegistry, subject: str) -> None:
    anonymous = registry.client(None)
    for attempt in (
        lambda: anonymous.register(subject, TEXT, SchemaType.AVRO),
        lambda: anonymous.subjects(),
        lambda: anonymous.lookup(subject, TEXT, SchemaType.AVRO),
    ):
        with pytest.raises(RegistryAccessError) as refused:
            attempt()
        assert refused.value.status == 401 and "without credentials" in str(refused.value)


def test_a_wrong_password_is_refused(registry: LocalRegistry, fresh_subject: str) -> None:
    intruder = RegistryClient(registry.url, auth=("contracts-publisher", "not-the-password"))
    with pytest.raises(RegistryAccessError) as refused:
        intruder.register(fresh_subject, TEXT, SchemaType.AVRO)
    assert refused.value.status == 401
    assert "not-the-password" not in str(refused.value) + repr(intruder)


@pytest.mark.parametrize("reader", ["agent-gateway", "agent-events", "agent-runtime"])
def test_a_reader_reads_but_may_not_write(registry: LocalRegistry, subject: str, reader: str) -> None:
    client = registry.client(reader)
    found = client.lookup(subject, TEXT, SchemaType.AVRO)
    assert found is not None and subject in client.subjects()
    assert client.schema_by_id(found.id)[0] == SchemaType.AVRO
    evolved = registered_text(
        {**SCHEMA, "fields": [*SCHEMA["fields"], {"name": "b", "type": "int", "default": 0}]}
    )
    for attempt in (
        lambda: client.register(subject, evolved, SchemaType.AVRO),
        lambda: client.set_compatibility(subject, client.get_compatibility(subject) or "NONE"),  # type: ignore[arg-type]
    ):
        with pytest.raises(RegistryAccessError) as refused:
            attempt()
        assert refused.value.status == 403 and f"as {reader!r}" in str(refused.value)
    assert client.versions(subject) == [1]


def test_the_publisher_writes(registry: LocalRegistry, client: RegistryClient, fresh_subject: str) -> None:
    schema_id = client.register(fresh_subject, TEXT, SchemaType.AVRO)
    assert json.loads(registry.client("agent-runtime").schema_by_id(schema_id)[1]) == SCHEMA


def test_the_apps_client_authenticates_from_its_properties(registry: LocalRegistry, subject: str) -> None:
    """flink_apps.common.registry, as the Flink apps use it with `schema.registry.basic.auth.user.info`."""
    app = AppRegistryClient(registry.url, {"basic.auth.user.info": registry.user_info("agent-events")})
    assert app.lookup_id(subject, SCHEMA) >= 0
    with pytest.raises(AppRegistryError, match="HTTP 403"):  # an app reads; only the platform registers
        app.lookup_id(subject + "-other", SCHEMA, register=True)
    with pytest.raises(AppRegistryError, match="HTTP 401"):
        AppRegistryClient(registry.url).lookup_id(subject, SCHEMA)


def test_contracts_cli_registers_only_with_the_publishers_password(
    registry: LocalRegistry, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("HEADWATER_REGISTRY_PASSWORD", raising=False)
    assert main(["contracts", "register", "--url", registry.url, "--stack", "local"]) == 2
    assert "HTTP 401 without credentials" in capsys.readouterr().err
    monkeypatch.setenv("HEADWATER_REGISTRY_PASSWORD", registry.password("agent-gateway"))
    assert main(["contracts", "register", "--url", registry.url, "--user", "agent-gateway"]) == 2
    assert "HTTP 403 as 'agent-gateway'" in capsys.readouterr().err
    monkeypatch.setenv("HEADWATER_REGISTRY_PASSWORD", registry.password())
    assert main(["contracts", "register", "--url", registry.url, "--stack", "local"]) == 0


def test_pulumi_provider_authenticates_and_names_a_wrong_password(
    registry: LocalRegistry, fresh_subject: str
) -> None:
    props: dict[str, Any] = {
        "registry_url": registry.url,
        "subject": fresh_subject,
        "schema": TEXT,
        "schema_type": "AVRO",
        "compatibility": "BACKWARD",
        "verify_tls": True,
        "username": "contracts-publisher",
        "password": registry.password(),
    }
    provider = SubjectSchemaProvider()
    assert provider.check({}, props).failures == []
    outs = provider.create(props).outs
    assert outs is not None and outs["schema_id"] >= 0 and outs["version"] == 1
    (failure,) = provider.check({}, {**props, "password": "wrong"}).failures
    assert failure.property == "password" and "HTTP 401 as 'contracts-publisher'" in failure.reason
    assert "wrong" not in failure.reason.replace("wrong password", "")
