"""Pulumi components: one module per resource family, each a pure renderer plus a ComponentResource."""
