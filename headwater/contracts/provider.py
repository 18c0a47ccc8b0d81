"""A Pulumi dynamic provider that keeps one registry subject in step with its contract file.

`SubjectSchema` sets the subject's compatibility level and registers the schema (`pulumi up`). Its
`check` runs in `pulumi preview` too: when the new schema breaks the subject's compatibility with what
the live registry holds, the preview fails naming the subject and each breaking change. The verdict is
the same rule set as `headwater contracts check` (every version the registry holds, at the level the stack
asks for), and when the registry's own rule already has that level, the registry's compatibility endpoint
is asked too and its reasons are quoted. A registry that cannot be reached (before its first deploy, or
from outside the cluster) is not an error: the change is then checked against the last deployed schema
in the Pulumi state.

Deleting the resource leaves the subject in the registry: records written with it may still be in the
topic, and consumers need the schema to read them. Retire a subject by hand once its topic is gone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.dynamic

from headwater.contracts.compat import Incompatibility, check_evolution
from headwater.contracts.model import (
    Compatibility,
    ContractError,
    SchemaType,
    parse_schema_text,
    registered_text,
    same_schema,
)
from headwater.contracts.registry import RegistryAccessError, RegistryClient, RegistryError

INPUTS = (
    "registry_url",
    "subject",
    "schema",
    "schema_type",
    "compatibility",
    "verify_tls",
    "username",
    "password",
)
PASSWORD_ENV = "HEADWATER_REGISTRY_PASSWORD"
HINT = (
    "Make the change compatible (Avro: add fields with defaults, never change a field's type; JSON Schema: "
    "only relax constraints), or publish a new topic version (<topic>.v<N+1>) with its own subject."
)


def _client(props: dict[str, Any]) -> RegistryClient:
    verify = props.get("verify_tls", True)
    user, password = props.get("username"), props.get("password")
    return RegistryClient(
        str(props["registry_url"]),
        verify=verify if verify not in (None, "") else True,
        auth=(str(user), str(password)) if user and password else None,
    )


def breaking_changes(props: dict[str, Any], olds: dict[str, Any] | None = None) -> tuple[list[str], str]:
    """(the breaking changes of `props`' schema, what it was compared with) for its subject and level."""
    subject = str(props["subject"])
    kind = SchemaType(str(props["schema_type"]))
    level = Compatibility(str(props["compatibility"]))
    text = str(props["schema"])
    new = json.loads(text)
    client = _client(props)
    try:
        history = client.history(subject)
        registry_level = client.get_compatibility(subject)
    except RegistryAccessError:
        raise  # reachable, but the credentials are wrong: not a reason to judge offline
    except RegistryError as exc:
        old_text = (olds or {}).get("schema")
        if not old_text or same_schema(str(old_text), text):
            return [], f"nothing (registry not reachable: {exc})"
        previous = [("the last deployed version", json.loads(str(old_text)))]
        offline = check_evolution(subject, kind, level, new, previous)
        return [str(i) for i in offline], (
            f"the last deployed schema in the Pulumi state (the registry at {client.root} is not reachable: {exc})"
        )
    where = f"the {len(history)} version(s) the registry at {client.root} holds"
    if any(same_schema(v.text, text) for v in history):
        return [], where  # already registered: registering it again is a no-op
    versions = [(f"version {v.version} (id {v.id})", json.loads(v.text)) for v in history]
    found: list[Incompatibility] = check_evolution(subject, kind, level, new, versions)
    lines = [str(i) for i in found]
    try:
        refused = bool(history) and registry_level == level and not client.is_compatible(subject, text, kind)
    except RegistryError as exc:
        return [*lines, f"{subject} ({level.value}): the registry cannot check the new schema: {exc}"], where
    if refused:
        lines += [
            f"{subject} ({level.value}): the registry says: {cause}"
            for cause in client.explain(subject, text)
        ]
        if not lines:
            lines.append(
                f"{subject} ({level.value}): the registry's compatibility check refuses the new schema"
            )
    return lines, where


def _problems(news: dict[str, Any]) -> list[pulumi.dynamic.CheckFailure]:
    out: list[pulumi.dynamic.CheckFailure] = []
    for key in ("registry_url", "subject", "schema", "schema_type", "compatibility"):
        if not isinstance(news.get(key), str) or not news.get(key):
            out.append(pulumi.dynamic.CheckFailure(key, f"{key} is required (a non-empty string)"))
    if out:
        return out
    if news["schema_type"] not in {t.value for t in SchemaType}:
        allowed = ", ".join(t.value for t in SchemaType)
        out.append(
            pulumi.dynamic.CheckFailure(
                "schema_type", f"{news['schema_type']!r} is not valid; allowed: {allowed}"
            )
        )
    if news["compatibility"] not in {c.value for c in Compatibility}:
        allowed = ", ".join(c.value for c in Compatibility)
        out.append(
            pulumi.dynamic.CheckFailure(
                "compatibility",
                f"{news['compatibility']!r} is not valid for {news['subject']}; allowed: {allowed}",
            )
        )
    if not out:
        try:
            parse_schema_text(news["schema"], SchemaType(news["schema_type"]), f"subject {news['subject']}")
        except ContractError as err:
            out.append(pulumi.dynamic.CheckFailure("schema", "; ".join(err.problems)))
    return out


class SubjectSchemaProvider(pulumi.dynamic.ResourceProvider):
    """CRUD for one subject of a Confluent-compatible registry (Apicurio's /apis/ccompat/v7)."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.CheckResult:
        failures = _problems(news)
        if not failures:
            try:
                lines, where = breaking_changes(news, _olds)
            except RegistryAccessError as exc:
                hint = f"check the {news.get('username')!r} password (its Secret in the cluster, or {PASSWORD_ENV})"
                failures.append(pulumi.dynamic.CheckFailure("password", f"{exc}: {hint}"))
                return pulumi.dynamic.CheckResult(news, failures)
            if lines:
                message = (
                    f"subject {news['subject']}: the new schema is not {news['compatibility']}-compatible with "
                    f"{where}:\n  - " + "\n  - ".join(lines) + f"\n  {HINT}"
                )
                failures.append(pulumi.dynamic.CheckFailure("schema", message))
        return pulumi.dynamic.CheckResult(news, failures)

    def diff(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        changed = [k for k in INPUTS if _olds.get(k) != _news.get(k)]
        replaces = ["subject"] if "subject" in changed else []
        return pulumi.dynamic.DiffResult(
            changes=bool(changed), replaces=replaces, delete_before_replace=False
        )

    def _apply(self, props: dict[str, Any]) -> dict[str, Any]:
        client = _client(props)
        subject = str(props["subject"])
        kind = SchemaType(str(props["schema_type"]))
        client.set_compatibility(subject, Compatibility(str(props["compatibility"])))
        schema_id = client.register(subject, str(props["schema"]), kind)
        found = client.lookup(subject, str(props["schema"]), kind)
        return {
            **{k: props.get(k) for k in INPUTS},
            "schema_id": schema_id,
            "version": found.version if found else None,
        }

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        return pulumi.dynamic.CreateResult(id_=str(props["subject"]), outs=self._apply(props))

    def update(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(outs=self._apply(_news))

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        client = _client(props)
        latest = client.latest(id_)
        if latest is None:
            return pulumi.dynamic.ReadResult(None, {})
        level = client.get_compatibility(id_)
        outs = {
            **props,
            "subject": id_,
            "schema": registered_text(json.loads(latest.text)),
            "schema_type": latest.schema_type.value,
            "compatibility": level.value if level else props.get("compatibility"),
            "schema_id": latest.id,
            "version": latest.version,
        }
        return pulumi.dynamic.ReadResult(id_, outs)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Leave the subject in place (see the module docstring)."""


@dataclass(frozen=True)
class SubjectSchemaArgs:
    """One subject's registration. `username`/`password` authenticate to the registry (the platform's
    publisher; the password a secret Output, so Pulumi keeps it encrypted in its state)."""

    registry_url: str
    subject: str
    schema: str
    schema_type: str
    compatibility: str
    verify_tls: bool | str = True
    username: str | None = None
    password: Any = None  # pulumi.Input[str]

    def __post_init__(self) -> None:
        problems = [f.reason for f in _problems({**self.inputs(), "password": None})]
        if problems:
            raise ValueError(f"invalid subject {self.subject!r}: " + "; ".join(problems))

    def inputs(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in INPUTS}


class SubjectSchema(pulumi.dynamic.Resource, module="headwater", name="SubjectSchema"):
    """A registry subject with its compatibility level and its current schema."""

    schema_id: pulumi.Output[int]
    """The id the registry gave the schema (what the wire format carries)."""
    version: pulumi.Output[int]
    """The subject's version number of the schema."""

    def __init__(
        self, name: str, args: SubjectSchemaArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        inputs = {**args.inputs(), "schema_id": None, "version": None}
        if args.password is not None:
            inputs["password"] = pulumi.Output.secret(args.password)
        super().__init__(
            SubjectSchemaProvider(),
            name,
            inputs,
            pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(additional_secret_outputs=["password"])
            ),
        )
