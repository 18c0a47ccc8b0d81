"""Custom resources against the upstream CRDs of the pinned Strimzi and Flink operator releases."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from headwater_cli.validate import validate_object, validate_objects

Obj = dict[str, Any]


def _has(messages: list[str], prefix: str, *words: str) -> bool:
    """True when one message starts with `prefix` (the field path) and mentions every word."""
    return any(m.startswith(prefix) and all(w in m for w in words) for m in messages)


@pytest.mark.parametrize("fixture", ["kafka", "node_pool", "topic", "user", "flink_deployment"])
def test_minimal_valid_custom_resources_pass(fixture: str, request: pytest.FixtureRequest) -> None:
    assert validate_object(request.getfixturevalue(fixture)) == []


def test_kafka_replicas_removed_in_strimzi_1_is_an_unknown_field(kafka: Obj) -> None:
    kafka["spec"]["kafka"]["replicas"] = 3
    kafka["spec"]["kafka"]["storage"] = {"type": "ephemeral"}

    messages = validate_object(kafka)

    assert _has(messages, "spec.kafka.replicas: unknown field", "listeners")
    assert _has(messages, "spec.kafka.storage: unknown field")
    assert len(messages) == 2


def test_typo_in_a_field_name_is_rejected(topic: Obj) -> None:
    topic["spec"]["partitons"] = topic["spec"].pop("partitions")

    assert validate_object(topic) == [
        "spec.partitons: unknown field (allowed here: config, partitions, replicas, topicName)"
    ]


def test_unknown_top_level_field_is_rejected(topic: Obj) -> None:
    topic["sepc"] = {}

    assert _has(validate_object(topic), "sepc: unknown field")


def test_wrong_type_names_the_path_and_the_types(topic: Obj, node_pool: Obj) -> None:
    topic["spec"]["partitions"] = "6"
    node_pool["spec"]["storage"]["volumes"][0]["id"] = "zero"

    assert validate_object(topic) == ['spec.partitions: expected integer, got string "6"']
    assert _has(validate_object(node_pool), "spec.storage.volumes[0].id: expected integer", '"zero"')


def test_null_is_rejected_where_the_schema_is_not_nullable(kafka: Obj) -> None:
    kafka["spec"]["kafka"]["version"] = None

    assert validate_object(kafka) == ["spec.kafka.version: expected string, got null null"]


def test_enum_violation_lists_the_allowed_values(user: Obj) -> None:
    user["spec"]["authentication"]["type"] = "oauth"

    assert _has(validate_object(user), "spec.authentication.type: ", '"oauth" is not one of', "scram-sha-512")


def test_required_field_missing(node_pool: Obj) -> None:
    del node_pool["spec"]["roles"]

    assert validate_object(node_pool) == ["spec.roles: required field is missing"]


def test_removed_api_version_v1beta2_is_not_served(kafka: Obj, topic: Obj) -> None:
    for obj in (kafka, topic):
        obj["apiVersion"] = "kafka.strimzi.io/v1beta2"
        messages = validate_object(obj)
        assert len(messages) == 1
        assert _has(messages, "apiVersion: ", "v1beta2", "not served", "served: kafka.strimzi.io/v1")


def test_singular_acl_operation_is_rejected(user: Obj) -> None:
    acl = user["spec"]["authorization"]["acls"][0]
    acl["operation"] = acl.pop("operations")[0]

    messages = validate_object(user)

    assert "spec.authorization.acls[0].operation: unknown field" in messages[0]
    assert "spec.authorization.acls[0].operations: required field is missing" in messages
    assert len(messages) == 2


def test_acl_operations_must_be_known_operations(user: Obj) -> None:
    user["spec"]["authorization"]["acls"][0]["operations"] = ["Write", "Produce"]

    assert _has(
        validate_object(user), "spec.authorization.acls[0].operations[1]: ", '"Produce" is not one of'
    )


def test_unknown_flink_deployment_field_is_rejected(flink_deployment: Obj) -> None:
    flink_deployment["spec"]["jobManager"]["replicaCount"] = 2
    flink_deployment["spec"]["job"]["entrypointClass"] = "x"

    messages = validate_object(flink_deployment)

    assert _has(messages, "spec.jobManager.replicaCount: unknown field", "resource")
    assert _has(messages, "spec.job.entrypointClass: unknown field", "entryClass")
    assert len(messages) == 2


def test_flink_configuration_takes_any_yaml_as_operator_1_15_does(flink_deployment: Obj) -> None:
    # Operator 1.15 accepts Flink 2's YAML config (nested values, numbers); 1.10 and older took strings only.
    flink_deployment["spec"]["flinkConfiguration"]["taskmanager.numberOfTaskSlots"] = 2
    flink_deployment["spec"]["flinkConfiguration"]["pipeline"] = {"object-reuse": True}

    assert validate_object(flink_deployment) == []


def test_unknown_flink_version_is_rejected(flink_deployment: Obj) -> None:
    flink_deployment["spec"]["flinkVersion"] = "v9_9"

    assert _has(validate_object(flink_deployment), "spec.flinkVersion: ", '"v9_9" is not one of')


def test_flink_pod_template_is_checked_as_a_pod(flink_deployment: Obj) -> None:
    flink_deployment["spec"]["podTemplate"] = {
        "spec": {"containers": [{"name": "flink-main-container", "imagePullPolcy": "Always"}]}
    }

    assert _has(
        validate_object(flink_deployment), "spec.podTemplate.spec.containers[0].imagePullPolcy: unknown"
    )


def test_preserve_unknown_fields_keeps_free_form_config_open(kafka: Obj, topic: Obj) -> None:
    kafka["spec"]["kafka"]["config"]["any.broker.setting"] = "x"
    topic["spec"]["config"]["min.insync.replicas"] = 2

    assert validate_object(kafka) == []
    assert validate_object(topic) == []


def test_int_or_string_accepts_both_and_nothing_else(node_pool: Obj) -> None:
    node_pool["spec"]["resources"]["requests"]["cpu"] = 2
    assert validate_object(node_pool) == []

    node_pool["spec"]["resources"]["requests"]["cpu"] = True
    assert _has(validate_object(node_pool), "spec.resources.requests.cpu: expected integer or string")


def test_one_of_branches_do_not_close_the_object(node_pool: Obj) -> None:
    env: list[Obj] = [
        {"name": "A", "value": "1"},
        {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
    ]
    node_pool["spec"]["template"] = {"kafkaContainer": {"env": env}}
    assert validate_object(node_pool) == []

    env[0]["valueFrom"] = copy.deepcopy(env[1]["valueFrom"])
    assert validate_object(node_pool) == [
        "spec.template.kafkaContainer.env[0]: set exactly one of: value | valueFrom"
    ]


def test_metadata_types_are_checked(topic: Obj) -> None:
    topic["metadata"]["labels"]["replicas"] = 3
    topic["metadata"]["annotations"] = ["not", "a", "map"]
    del topic["metadata"]["name"]
    topic["metadata"]["finalizers"] = ["kept: metadata is the API server's, not the CRD's"]

    messages = validate_object(topic)

    assert _has(messages, "metadata.labels.replicas: expected string, got integer 3")
    assert _has(messages, "metadata.annotations: expected object, got array")
    assert _has(messages, "metadata.name: required field is missing")
    assert len(messages) == 3


def test_unknown_kind_in_a_custom_group_lists_the_known_kinds() -> None:
    messages = validate_object(
        {"apiVersion": "kafka.strimzi.io/v1", "kind": "KafkaTopc", "metadata": {"name": "a"}}
    )

    assert len(messages) == 1
    assert _has(messages, "kind: ", "KafkaTopc", "KafkaTopic", "KafkaUser", "KafkaNodePool")


def test_validate_objects_keys_every_object_and_reports_duplicates(kafka: Obj, topic: Obj, user: Obj) -> None:
    broken = copy.deepcopy(topic)
    broken["spec"]["partitions"] = -1

    results = validate_objects([kafka, topic, user, broken])

    assert set(results) == {"Kafka/kafka/events", "KafkaTopic/kafka/orders", "KafkaUser/kafka/ingest"}
    assert results["Kafka/kafka/events"] == []
    assert results["KafkaUser/kafka/ingest"] == []
    assert results["KafkaTopic/kafka/orders"][0].startswith("(root): duplicate object")
    assert _has(results["KafkaTopic/kafka/orders"], "spec.partitions: ", "minimum")


def test_open_api_nullable_and_int_or_string_become_json_schema() -> None:
    import jsonschema

    from headwater_cli.validate import _convert

    schema = _convert(
        {
            "type": "object",
            "properties": {
                "mode": {"type": "string", "enum": ["a", "b"], "nullable": True},
                "size": {
                    "x-kubernetes-int-or-string": True,
                    "anyOf": [{"type": "integer"}, {"type": "string"}],
                },
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
        }
    )
    validator = jsonschema.Draft7Validator(schema)

    assert validator.is_valid({"mode": None, "size": 3, "free": {"anything": [1]}})
    assert validator.is_valid({"mode": "a", "size": "3Gi"})
    assert not validator.is_valid({"mode": "c"})
    assert not validator.is_valid({"size": 1.5})
    assert not validator.is_valid({"other": 1})
