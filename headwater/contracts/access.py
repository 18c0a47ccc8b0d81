"""Who may use the schema registry, and how: derived from the catalog, like the Kafka ACLs.

Apicurio Registry 3 (3.3.3) authenticates with HTTP basic against Quarkus' embedded users realm (the
`quarkus-elytron-security-properties-file` extension is in its distribution, and its build enables the
embedded realm) and authorizes with its own role-based access control on the identity's roles
(`apicurio.auth.role-source=token`): `sr-readonly` reads, `sr-developer` also writes subjects, versions and
per-subject rules, `sr-admin` (nobody here) changes global settings. Anonymous requests get 401, a reader's
write 403. No identity server runs for it; passwords come from secrets in the environment.

- the platform's publisher (`PUBLISHER`) registers the catalog's contracts: `pulumi up` and local start-up;
- every catalog principal whose flows produce or consume a topic with a data contract reads (looks up the
  schema ids it writes with, or the schemas of the records it reads), under its own name.

`realm_properties` renders the registry settings that the Kubernetes component and the local registry share.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from headwater.spec import Platform

PUBLISHER = "contracts-publisher"
WRITE_ROLE = "sr-developer"
READ_ROLE = "sr-readonly"
PASSWORD_ENV_PREFIX = "HEADWATER_REGISTRY_PASSWORD_"
SECRET_KEY = "password"


@dataclass(frozen=True, order=True)
class RegistryUser:
    name: str
    role: str

    @property
    def password_env(self) -> str:
        """The environment variable the registry reads this user's password from."""
        return PASSWORD_ENV_PREFIX + self.name.upper().replace("-", "_")

    @property
    def secret(self) -> str:
        """The Kubernetes Secret (key `password`) holding this user's registry password."""
        return f"{self.name}-registry"


def publisher() -> RegistryUser:
    return RegistryUser(PUBLISHER, WRITE_ROLE)


def registry_users(platform: Platform) -> tuple[RegistryUser, ...]:
    """The publisher, and a reader for each principal whose flows touch a topic with a data contract."""
    contracted = {t.name for t in platform.topics if t.schema}
    users = {publisher()}
    for p in platform.principals:
        if ({c.topic for c in p.consumes} | {f.topic for f in p.produces}) & contracted:
            users.add(RegistryUser(p.name, READ_ROLE))
    return tuple(sorted(users))


def registry_user(platform: Platform, name: str) -> RegistryUser:
    for user in registry_users(platform):
        if user.name == name:
            return user
    known = ", ".join(u.name for u in registry_users(platform))
    raise KeyError(f"{name!r} has no schema registry identity; identities: {known}")


def realm_properties(
    users: Iterable[RegistryUser], password: Callable[[RegistryUser], str]
) -> dict[str, str]:
    """Registry settings: basic authentication on the embedded users, role-based authorization, no anonymous
    reads. `password(user)` is what the file says for the password, e.g. a `${ENV}` reference."""
    props = {
        "quarkus.http.auth.basic": "true",
        # Passwords are given as they are (from secrets), not as pre-computed digests.
        "quarkus.security.users.embedded.plain-text": "true",
        "apicurio.auth.role-based-authorization": "true",
        "apicurio.auth.role-source": "token",
        "apicurio.auth.anonymous-read-access.enabled": "false",
        "apicurio.auth.authenticated-read-access.enabled": "false",
    }
    for user in users:
        props[f"quarkus.security.users.embedded.users.{user.name}"] = password(user)
        props[f"quarkus.security.users.embedded.roles.{user.name}"] = user.role
    return dict(sorted(props.items()))
