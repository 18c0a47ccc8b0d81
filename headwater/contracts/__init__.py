"""Data contracts as code: one registry subject per catalog topic, checked for compatibility offline and at
deploy, registered by `pulumi up` (or `headwater contracts register` for the local runtime).

Submodules: `model` (contracts from the catalog), `compat` and `json_compat` (compatibility rules),
`history` (earlier versions from git), `registry` (a Confluent-compatible API client), `serde` (the
Confluent wire format for producers and consumers), `provider` (the Pulumi dynamic provider),
`kafkasql` (what the registry's KafkaSQL storage needs from Kafka), `cli` (`headwater contracts ...`).
Importing this package pulls in nothing heavy, so the serde helpers stay cheap to import.
"""

from __future__ import annotations

from headwater.contracts.model import (
    Compatibility,
    Contract,
    ContractError,
    SchemaType,
    load_contracts,
    registered_text,
    subject_name,
)

__all__ = [
    "Compatibility",
    "Contract",
    "ContractError",
    "SchemaType",
    "load_contracts",
    "registered_text",
    "subject_name",
]
