"""The approvers' page: people sign in, see the actions the gate holds for a human (with their context, the
signals and features behind them, and the time left), and approve or reject them with a reason.

Part of the gate's layer (and its image): it imports nothing of the platform and is configured by the
description the platform derives (`headwater.action_gate.approvers_description`). It reads the audit trail and
writes decisions as the catalog's approvers' principal; the person who decides is recorded in the decision, and
the gate copies it into the audit trail. `board` (the pending actions, from audit records) and `auth`
(passwords, sessions, CSRF tokens) are pure; `web` is the HTTP app, `kafka_io` the Kafka wiring, `main` the
process (HTTPS only).
"""
