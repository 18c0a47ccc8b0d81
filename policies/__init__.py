"""Policy checks of the platform: a Pulumi CrossGuard pack (`pulumi preview --policy-pack policies`).

Rules live in importable modules (`strimzi_rules`, `flink_rules`, `k8s_rules`, on top of `rulebook`);
`pack` assembles them; `__main__` only starts the pack. `headwater check --stack <name>` runs the same
policies offline against every rendered object of a stack.
"""
