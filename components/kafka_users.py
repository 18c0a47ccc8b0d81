"""`KafkaUser`s, one per principal, with ACLs derived from the principal's declared flows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from components.k8s import create_object, labels, metadata
from headwater import versions
from headwater.spec import Acl, AclResource, Platform, Principal, acls_for


def render_acl(acl: Acl) -> dict[str, Any]:
    resource: dict[str, Any] = {"type": acl.resource.value}
    if acl.resource != AclResource.CLUSTER:
        resource["name"] = acl.name
        resource["patternType"] = acl.pattern
    return {"resource": resource, "operations": list(acl.operations)}


def render_user(platform: Platform, principal: Principal) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "authentication": {"type": principal.authentication.value},
        "authorization": {"type": "simple", "acls": [render_acl(a) for a in acls_for(principal)]},
    }
    quotas = {
        k: v
        for k, v in {
            "producerByteRate": principal.quotas.producer_byte_rate,
            "consumerByteRate": principal.quotas.consumer_byte_rate,
            "requestPercentage": principal.quotas.request_percentage,
        }.items()
        if v is not None
    }
    if quotas:
        spec["quotas"] = quotas
    return {
        "apiVersion": versions.STRIMZI_API_VERSION,
        "kind": "KafkaUser",
        "metadata": metadata(
            principal.name,
            platform.namespace,
            labels(
                "principal",
                principal.name,
                {
                    "strimzi.io/cluster": platform.kafka.cluster_name,
                    "headwater.io/principal-kind": principal.kind,
                },
            ),
        ),
        "spec": spec,
    }


def render_users(platform: Platform) -> list[dict[str, Any]]:
    return [render_user(platform, p) for p in platform.principals]


def user_secret(principal: str) -> str:
    """Strimzi's user operator writes each user's credentials to a secret named after the user."""
    return principal


@dataclass(frozen=True)
class KafkaPrincipalsArgs:
    platform: Platform

    def __post_init__(self) -> None:
        topics = {t.name for t in self.platform.topics}
        for p in self.platform.principals:
            missing = sorted(({c.topic for c in p.consumes} | {f.topic for f in p.produces}) - topics)
            if missing:
                raise ValueError(f"principal {p.name!r} has flows on topics not in the catalog: {missing}")


class KafkaPrincipals(pulumi.ComponentResource):
    """A `KafkaUser` per principal; the user operator creates its credentials secret."""

    secrets: pulumi.Output[dict[str, str]]
    """Principal name -> the secret holding its credentials (user.crt/user.key or password)."""

    def __init__(
        self, name: str, args: KafkaPrincipalsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("headwater:kafka:KafkaPrincipals", name, None, opts)
        self.users = {
            p.name: create_object(
                f"{name}-{p.name}", render_user(args.platform, p), pulumi.ResourceOptions(parent=self)
            )
            for p in args.platform.principals
        }
        self.secrets = pulumi.Output.from_input(
            {p.name: user_secret(p.name) for p in args.platform.principals}
        )
        self.register_outputs({"secrets": self.secrets})
