"""Headwater's PyFlink applications: `agent_events` and `feature_aggregator`.

Each app is `logic` (pure Python), `pipeline` (Flink wiring) and `main` (configuration); `common` holds what
both share: the wire format, the schema files, the Kafka client properties and the registry client.
"""
