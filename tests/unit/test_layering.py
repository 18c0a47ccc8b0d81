"""The import direction of the tree, read from the source (ast), so a new import cannot quietly reverse it.

Bottom to top:
- the spec (`headwater`: model, loader, versions, contracts and the derivations every realization needs)
  imports nothing else from the project;
- the realizations read it: the Kubernetes components, the local platform (`headwater.local`), the policy
  pack (which also reads the components' label names);
- the command line and the offline render/check (`headwater_cli`) and the Pulumi program (`stacks`) sit on
  top; nothing imports them.
`flink_apps`, `feature_store` (the materializer and agents' reads) and `approval_gate` ship as their own images
and import nothing of the rest: they are configured by their options and the descriptions the platform writes.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# layer -> the layers its modules may import (besides their own).
ALLOWED: dict[str, frozenset[str]] = {
    "spec": frozenset(),
    "flink_apps": frozenset(),
    "feature_store": frozenset(),
    "approval_gate": frozenset(),
    "components": frozenset({"spec"}),
    "local": frozenset({"spec"}),
    "policies": frozenset({"spec", "components"}),
    "cli": frozenset({"spec", "components", "local", "policies"}),
    "stacks": frozenset({"spec", "components"}),
}

# Imports that break the direction today and are on their way out: (importer, imported module).
# The local Flink runner still takes the apps' arguments and retained-checkpoint count from the component.
KNOWN: frozenset[tuple[str, str]] = frozenset(
    {
        ("headwater.local.flink", "components.flink_application"),
        # The local Prometheus loads the very alert rules the render ships, and a run's summary counts the
        # series they read; both come from the observability component until the rules move below it.
        ("headwater.local.prometheus", "components.observability"),
        ("headwater.local.runtime", "components.observability"),
    }
)


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name; None for what is not part of the product (tests, bench)."""
    top = module.split(".")[0]
    if module == "headwater.local" or module.startswith("headwater.local."):
        return "local"
    return {
        "headwater": "spec",
        "headwater_cli": "cli",
        "components": "components",
        "policies": "policies",
        "flink_apps": "flink_apps",
        "feature_store": "feature_store",
        "approval_gate": "approval_gate",
        "stacks": "stacks",
    }.get(top)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> Iterator[str]:
    """Every module a file imports, at any depth (function-level imports count too), relative ones resolved."""
    module = module_name(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            yield name
            # `from pkg import module` imports pkg.module: count it under its own name.
            folder = ROOT.joinpath(*name.split("."))
            for alias in node.names:
                if (folder / f"{alias.name}.py").is_file() or (folder / alias.name).is_dir():
                    yield f"{name}.{alias.name}"


def product_files() -> Iterator[Path]:
    for top in (
        "headwater",
        "headwater_cli",
        "components",
        "policies",
        "flink_apps",
        "feature_store",
        "approval_gate",
        "stacks",
    ):
        yield from sorted((ROOT / top).rglob("*.py"))


def _known(importer: str, name: str) -> bool:
    return any(importer == i and (name == m or name.startswith(m + ".")) for i, m in KNOWN)


def violations(edges: dict[str, set[str]]) -> list[str]:
    out = []
    for importer, imported in sorted(edges.items()):
        src = layer_of(importer)
        assert src is not None, importer
        for name in sorted(imported):
            dst = layer_of(name)
            if dst is None or dst == src or dst in ALLOWED[src] or _known(importer, name):
                continue
            out.append(
                f"{importer} ({src}) imports {name} ({dst}); {src} may import only {sorted(ALLOWED[src])}"
            )
    return out


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): set(imports_of(p)) for p in product_files()}


def test_every_module_imports_only_downwards() -> None:
    problems = violations(import_graph())
    assert not problems, "imports against the layering:\n  " + "\n  ".join(problems)


def test_the_spec_package_imports_nothing_above_it() -> None:
    # Package level: the spec's modules reach no other part of the project at all.
    graph = import_graph()
    reached = {
        layer_of(name)
        for module, imported in graph.items()
        if layer_of(module) == "spec"
        for name in imported
        if layer_of(name) not in (None, "spec")
    }
    assert reached == set()


def test_the_check_sees_a_reversed_import() -> None:
    # The reader itself: a spec module importing a component, or a component importing the CLI, is caught.
    edges = {
        "headwater.spec": {"components.k8s"},
        "components.kafka_cluster": {"headwater_cli.render", "headwater.spec"},
        "headwater.local.kafka": {"headwater.config", "policies.rulebook"},
    }
    assert [v.split(" ")[0] for v in violations(edges)] == [
        "components.kafka_cluster",
        "headwater.local.kafka",
        "headwater.spec",
    ]


def test_layers_by_name() -> None:
    assert layer_of("headwater.local") == "local" and layer_of("headwater.local.kafka") == "local"
    assert layer_of("headwater.localize") == "spec" and layer_of("headwater_cli.main") == "cli"
    assert layer_of("pulumi") is None and layer_of("tests.unit.conftest") is None
