"""Render benchmark: a synthetic catalog of 1,000 topics and 200 principals, rendered like a real stack.

Prints time and peak memory for loading+validating the spec and for rendering every object, next to the
shipped prod catalog as the baseline measured in the same process. Not a test: figures, not assertions.

    make bench            # or: .venv/bin/python bench/render_bench.py --topics 1000 --principals 200
"""

from __future__ import annotations

import argparse
import gc
import shutil
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from headwater.config import CATALOG_DIR, load_platform, load_stack_config, read_yaml
from headwater_cli.render import dump, render_stack


def synthetic_catalog(n_topics: int, n_principals: int, folder: Path) -> dict[str, Any]:
    """Domains of 50 topics; each principal consumes 3 topics and produces 2, some transactionally.

    Every synthetic topic has a data contract (a copy, in `folder`'s schemas/, of a shipped topic's schema of the
    same kind, with its key); the synthetic principals' flows name synthetic topics only (never the action
    path's, whose flows follow from its roles), and the materializer reads the synthetic feature topics too."""
    base = read_yaml(CATALOG_DIR / "catalog.yaml")
    shutil.copytree(CATALOG_DIR / "schemas", folder / "schemas")
    topics = dict(base["topics"])
    kinds = ["events", "events", "state", "feature", "deadletter", "outbox"]
    contracts: dict[str, dict[str, str]] = {}
    for body in base["topics"].values():
        if body.get("schema") and body["kind"] in kinds:
            contracts.setdefault(body["kind"], {"schema": body["schema"], "key": body["key"]})
    names: list[str] = []
    for i in range(n_topics - len(topics)):
        name = f"domain{i // 50}.dataset{i}.v1"
        names.append(name)
        topics[name] = {
            "owner": f"team-{i // 50}",
            "sla": ["gold", "silver", "bronze"][i % 3],
            "kind": kinds[i % len(kinds)],
            "partitions": 6 + i % 7,
            "retention": f"{1 + i % 14}d",
            "description": f"synthetic dataset {i}",
            "key": contracts[kinds[i % len(kinds)]]["key"],
        }
        shipped = Path(contracts[kinds[i % len(kinds)]]["schema"])
        topics[name]["schema"] = f"schemas/{name}{shipped.suffix}"
        shutil.copyfile(CATALOG_DIR / shipped, folder / topics[name]["schema"])
    names.sort()
    principals = {
        name: _with_synthetic_features(body, base["topics"], topics)
        for name, body in base["principals"].items()
    }
    for j in range(n_principals - len(principals)):
        principals[f"svc-{j}"] = {
            "kind": "service" if j % 2 else "app",
            "consumes": [
                {"topic": names[(j * 7 + k) % len(names)], "group": f"svc-{j}-g{k}"} for k in range(3)
            ],
            "produces": [
                {"topic": names[(j * 11 + k) % len(names)], "transactional": j % 3 == 0} for k in range(2)
            ],
        }
    return {**base, "topics": topics, "principals": principals}


def _with_synthetic_features(
    principal: dict[str, Any], shipped: dict[str, Any], topics: dict[str, Any]
) -> dict[str, Any]:
    """The materializer (it consumes every shipped feature topic, in one group, and produces only a dead-letter
    topic) consumes the synthetic feature topics too; any other principal as it is."""
    features = {n for n, t in shipped.items() if t["kind"] == "feature"}
    consumes = principal.get("consumes", [])
    groups = {c["group"] for c in consumes if c["topic"] in features}
    produces = [f["topic"] for f in principal.get("produces", [])]
    if not ({c["topic"] for c in consumes} >= features and len(groups) == 1 and len(produces) == 1):
        return principal
    if shipped.get(produces[0], {}).get("kind") != "deadletter":
        return principal
    group = groups.pop()
    added = [
        {"topic": n, "group": group}
        for n, t in topics.items()
        if t["kind"] == "feature" and n not in features
    ]
    return {**principal, "consumes": consumes + added}


def measure(label: str, fn: Callable[[], Any]) -> Any:
    gc.collect()
    tracemalloc.start()
    start = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"{label:<44} {elapsed * 1000:9.1f} ms   peak {peak / 2**20:7.1f} MiB", flush=True)
    return result, elapsed, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topics", type=int, default=1000)
    parser.add_argument("--principals", type=int, default=200)
    parser.add_argument("--stack", default="prod")
    args = parser.parse_args()
    config = load_stack_config(args.stack)
    # Stack overrides name shipped topics only; the synthetic catalog keeps them.
    base_platform, base_load, _ = measure("baseline: load shipped catalog", lambda: load_platform(args.stack))
    base_objs, base_render, base_peak = measure(
        "baseline: render + YAML", lambda: [dump(o) for o in render_stack(base_platform)]
    )
    with tempfile.TemporaryDirectory(prefix="render-bench-") as tmp:
        folder = Path(tmp)  # the synthetic catalog's schemas, read by the loader and the render
        catalog = synthetic_catalog(args.topics, args.principals, folder)
        label = f"{args.topics} topics, {args.principals} principals"
        platform, load_s, _ = measure(
            f"load+validate {label}",
            lambda: load_platform(args.stack, config, catalog, catalog_dir=folder),
        )
        objs, render_s, peak = measure(
            f"render + YAML {label}", lambda: [dump(o) for o in render_stack(platform)]
        )
    print(f"objects: baseline {len(base_objs)}, synthetic {len(objs)}")
    print(
        f"ratio synthetic/baseline: load {load_s / base_load:.1f}x, render {render_s / base_render:.1f}x, "
        f"render peak memory {peak / max(base_peak, 1):.1f}x; "
        f"per object {render_s / len(objs) * 1e6:.0f} us vs {base_render / len(base_objs) * 1e6:.0f} us"
    )


if __name__ == "__main__":
    main()
