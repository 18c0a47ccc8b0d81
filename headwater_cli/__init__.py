"""The `headwater` command and the offline realizations it runs: render, policy check, schema validation.

The top of the import graph: it may import the spec (`headwater`), the Kubernetes components, the policy
pack and the local platform; nothing below imports it (`tests/unit/test_layering.py`).
"""
