"""The approval gate: proposed actions -> risk policy -> approved by rule, or held for an approver's decision
until their SLA -> approved actions (each at most once) and an audit record for every step; exactly-once.

Its own layer: it imports nothing of the platform and is configured by the description the platform derives
from the catalog (`headwater.action_gate.gate_description`). `policy` and `logic` are pure (most tests);
`main` is the Kafka wiring (transactions, read_committed, offsets in the transaction).
"""
