"""`pulumi preview/up/destroy` of this project, by the real engine, against a real API server.

One dev stack goes through the whole life a platform team gives it: preview with the policy pack, up (which
must create exactly what the offline render lists, with the same content, admitted under the namespaces'
Pod Security levels, and wait for Kafka before its dependents), a second up with nothing to do, a change
that must update in place, and destroy, which must leave nothing behind. A prod-shaped stack is previewed
through the policy pack, passing as shipped and failing when weakened. Figures are printed as they come.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import OperatorStand
from controlplane import ControlPlane
from figures import figure
from pulumi_cli import ROOT, PulumiStack

from components.k8s import object_key
from headwater.config import decode_pulumi_config, load_platform, read_yaml
from headwater.local.registry import LocalRegistry
from headwater_cli.render import render_stack

S3_ACCESS, S3_SECRET = "e2e-access-key", "e2e-s3-secret-9f3b7c"


def _stack_config(stack: str, **overrides: Any) -> dict[str, Any]:
    """The shipped stack file's config, with the charts taken from the project (no repository here)."""
    config = dict(read_yaml(ROOT / "stacks" / f"Pulumi.{stack}.yaml")["config"])
    config["headwater:operatorCharts"] = "charts"
    config.update(overrides)
    return config


def _rendered(stack: PulumiStack) -> list[dict[str, Any]]:
    """The offline render of exactly the configuration Pulumi decrypts for the program."""
    platform = load_platform(
        stack.name, decode_pulumi_config(stack.decrypted_config()), secret_keys=stack.secret_keys()
    )
    return render_stack(platform)


def _api_path(obj: dict[str, Any], plural: str) -> str:
    group_version = obj["apiVersion"]
    base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    ns = obj["metadata"].get("namespace")
    return (
        f"{base}/namespaces/{ns}/{plural}/{obj['metadata']['name']}"
        if ns
        else f"{base}/{plural}/{obj['metadata']['name']}"
    )


def _plurals(plane: ControlPlane) -> dict[tuple[str, str], str]:
    """(apiVersion, kind) -> resource plural, from the API server's discovery."""
    out: dict[tuple[str, str], str] = {}
    for res in plane.api("GET", "/api/v1")["resources"]:
        if "/" not in res["name"]:  # not a subresource (namespaces/status is kind Namespace too)
            out[("v1", res["kind"])] = res["name"]
    for group in plane.api("GET", "/apis")["groups"]:
        for version in group["versions"]:
            gv = version["groupVersion"]
            for res in plane.api("GET", f"/apis/{gv}")["resources"]:
                if "/" not in res["name"]:
                    out[(gv, res["kind"])] = res["name"]
    return out


def _differences(want: Any, got: Any, path: str = "") -> list[str]:
    """Where `got` (what the API server stores) does not hold `want` (what the render says)."""
    if got is None and (want in (0, False, "") or want == {} or want == []):
        return []  # Kubernetes' Go types omit zero values (`omitempty`): stored as absent, not lost
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return [f"{path}: expected a mapping, stored {got!r}"]
        return [d for k, v in want.items() for d in _differences(v, got.get(k), f"{path}.{k}")]
    if isinstance(want, list):
        if not isinstance(got, list) or len(want) != len(got):
            return [f"{path}: expected {len(want)} items, stored {got!r}"[:300]]
        return [
            d
            for i, (w, g) in enumerate(zip(want, got, strict=True))
            for d in _differences(w, g, f"{path}[{i}]")
        ]
    if want != got and str(want) != str(got):
        return [f"{path}: expected {want!r}, stored {got!r}"[:300]]
    return []


def _failed_creates(plane: ControlPlane) -> list[str]:
    events = plane.api("GET", "/api/v1/events")["items"]
    return [
        f"{e['involvedObject']['kind']}/{e['involvedObject'].get('namespace')}/{e['involvedObject']['name']}: {e['message']}"
        for e in events
        if e.get("reason") == "FailedCreate"
    ]


def _kubernetes_objects(urns: list[str]) -> list[str]:
    """Those URNs that are Kubernetes objects or Helm releases (`...$kubernetes:core/v1:Secret::name`)."""
    return [u for u in urns if u.split("::")[2].rsplit("$", 1)[-1].startswith("kubernetes:")]


def _kind(urn: str) -> str:
    """The object's kind; a `helm.sh/v3:Release` is what the offline render calls a HelmRelease."""
    kind_type = urn.split("::")[2].rsplit("$", 1)[-1]
    return "HelmRelease" if kind_type.startswith("kubernetes:helm.sh/") else kind_type.rsplit(":", 1)[-1]


def _kinds(objects: list[str] | list[dict[str, Any]]) -> list[str]:
    """Sorted kinds, for a readable mismatch."""
    return sorted(o["kind"] if isinstance(o, dict) else _kind(o) for o in objects)


def _steps(run_output: str) -> dict[str, list[str]]:
    """Operations by resource URN from `pulumi preview --json`."""
    steps: dict[str, list[str]] = {}
    for step in json.loads(run_output).get("steps", []):
        steps.setdefault(step["op"], []).append(step["urn"])
    return steps


@pytest.fixture(scope="module")
def dev(
    control_plane: ControlPlane, registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PulumiStack]:
    home = tmp_path_factory.mktemp("pulumi-dev")
    stack = PulumiStack(
        name="e2e-dev",
        bin=control_plane.bin,
        home=home,
        kubeconfig=control_plane.kubeconfig,
        config_file=home / "Pulumi.e2e-dev.yaml",
        extra_env={
            "HEADWATER_REGISTRY_URL": registry.url,
            "HEADWATER_REGISTRY_PASSWORD": registry.password(),
        },
    )
    stack.init(_stack_config("dev"))
    stack.set_secret("headwater:flink.s3Credentials.accessKey", S3_ACCESS)
    stack.set_secret("headwater:flink.s3Credentials.secretKey", S3_SECRET)
    # The cluster's storage: a volume for dev's MinIO claim (no provisioner runs here).
    control_plane.api(
        "POST",
        "/api/v1/persistentvolumes",
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": "e2e-minio"},
            "spec": {
                "capacity": {"storage": "20Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": str(home / "pv")},
            },
        },
    )
    yield stack
    # whatever a failed test left: the stack's resources go with the control plane; the state goes here
    stack.clean()


def test_dev_preview_with_the_policy_pack_passes(dev: PulumiStack) -> None:
    run = dev.run("preview", "--policy-pack", str(ROOT / "policies"), "--json")
    steps = _steps(run.stdout)
    figure("dev preview (with policy pack)", f"{run.seconds:.1f}s, {len(steps.get('create', []))} to create")
    assert not run.stdout.count('"enforcementLevel": "mandatory"')
    rendered = _rendered(dev)
    k8s_creates = _kubernetes_objects(steps["create"])
    assert _kinds(k8s_creates) == _kinds(rendered)


def test_dev_up_creates_exactly_the_render(
    dev: PulumiStack, control_plane: ControlPlane, registry: LocalRegistry
) -> None:
    with OperatorStand(control_plane) as stand:
        run = dev.run("up", "--yes", "--skip-preview")
    figure("dev up", f"{run.seconds:.1f}s")
    rendered = _rendered(dev)
    plurals = _plurals(control_plane)
    stored: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for obj in rendered:
        if obj["kind"] == "HelmRelease":
            # Helm keeps each release as a secret in its namespace
            releases = control_plane.api(
                "GET",
                f"/api/v1/namespaces/{obj['namespace']}/secrets?labelSelector=owner%3Dhelm,name%3D{obj['name']}",
            )["items"]
            if not releases:
                problems.append(f"{object_key(obj)}: no Helm release stored")
            continue
        plural = plurals[(obj["apiVersion"], obj["kind"])]
        try:
            got = control_plane.api("GET", _api_path(obj, plural))
        except Exception as error:
            problems.append(f"{object_key(obj)}: not stored ({error})")
            continue
        stored[object_key(obj)] = got
        want = {k: v for k, v in obj.items() if k not in ("status",)}
        if obj["kind"] == "Secret":
            want.pop("stringData", None)  # stored as base64 `data`
        problems += [f"{object_key(obj)} {d}" for d in _differences(want, got)]
    assert problems == [], "\n".join(problems)
    figure(
        "objects created",
        f"{len(stored)} Kubernetes objects + {sum(o['kind'] == 'HelmRelease' for o in rendered)} Helm releases",
    )

    # Strict server-side validation: every object, re-applied as a dry run, has no field the server drops.
    for obj in rendered:
        if obj["kind"] == "HelmRelease":
            continue
        path = _api_path(obj, plurals[(obj["apiVersion"], obj["kind"])])
        control_plane.api(
            "PATCH",
            f"{path}?dryRun=All&fieldValidation=Strict&fieldManager=e2e-strict&force=true",
            obj,
            content_type="application/apply-patch+yaml",
        )

    # Ordering: nothing that needs Kafka was created before the operator's part marked it Ready.
    (ready_at,) = stand.kafka_ready_at.values()
    for obj in rendered:
        if obj.get("kind") in ("KafkaTopic", "KafkaUser", "FlinkDeployment"):
            created = time.mktime(
                time.strptime(stored[object_key(obj)]["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")
            )
            assert created - time.timezone >= int(ready_at) - 1, object_key(obj)
    assert stand.flink_stable

    # Pod Security: every pod the controllers made from the platform's Deployments was admitted.
    assert _failed_creates(control_plane) == []
    pods = control_plane.api("GET", "/api/v1/pods")["items"]
    deployments = [o for o in rendered if o["kind"] == "Deployment"]
    namespaces = {o["metadata"]["namespace"] for o in deployments} | {"headwater-system"}
    in_platform = [p for p in pods if p["metadata"]["namespace"] in namespaces]
    assert len(in_platform) >= len(deployments) + 2  # + both operators from their charts
    assert all(p["status"].get("phase") == "Running" for p in in_platform)
    figure("pods admitted and running (simulated kubelet)", str(len(in_platform)))

    # Contracts went through the dynamic provider into the registry.
    subjects = registry.client().subjects()
    assert {
        "agents.events.raw.v1-value",
        "agents.signals.v1-value",
        "features.agent_activity.v1-value",
    } <= set(subjects)

    # Secrets from secret config stay secret in state.
    assert S3_SECRET not in dev.state_text()


def test_dev_second_up_has_nothing_to_do(dev: PulumiStack) -> None:
    run = dev.run("preview", "--expect-no-changes", "--json")
    steps = _steps(run.stdout)
    assert set(steps) <= {"same"}, {op: urns for op, urns in steps.items() if op != "same"}
    figure("dev preview with no changes", f"{run.seconds:.1f}s")


def test_dev_change_updates_in_place(dev: PulumiStack, control_plane: ControlPlane, tmp_path: Path) -> None:
    """Step 2 of a platform's life: a new topic with its contract, a new principal and flow reading it, more
    partitions, a changed app option. Everything updates in place; nothing stateful is replaced."""
    folder = tmp_path / "catalog"
    shutil.copytree(ROOT / "catalog", folder)
    catalog = yaml.safe_load((folder / "catalog.yaml").read_text())
    catalog["topics"]["agents.handoffs.v1"] = {
        **copy.deepcopy(catalog["topics"]["agents.events.raw.v1"]),
        "description": "Hand-offs between agents (JSON).",
        "schema": "schemas/agents.handoffs.v1.json",
    }
    shutil.copy(
        folder / "schemas" / "agents.events.raw.v1.json", folder / "schemas" / "agents.handoffs.v1.json"
    )
    catalog["principals"]["agent-gateway"]["produces"].append({"topic": "agents.handoffs.v1"})
    catalog["principals"]["handoff-router"] = {
        "kind": "service",
        "description": "Routes hand-offs to the agent that takes over.",
        "consumes": [{"topic": "agents.handoffs.v1", "group": "handoff-router"}],
    }
    (folder / "catalog.yaml").write_text(yaml.safe_dump(catalog, sort_keys=False))
    config = _stack_config("dev")
    config["headwater:catalog"] = str(folder)
    config["headwater:topics"] = {
        **config["headwater:topics"],
        "agents.signals.v1": {"partitions": 6, "retention": "2d"},
    }
    config["headwater:flink"] = {
        **yaml.safe_load(dev.config_file.read_text())["config"]["headwater:flink"],
        "appArgs": {"feature-aggregator": {"window-size-ms": 30000}},
    }
    dev.write_config(config)

    preview = dev.run("preview", "--diff", "--json")
    steps = _steps(preview.stdout)
    replaced = [u for op in ("replace", "create-replacement", "delete-replaced") for u in steps.get(op, [])]
    assert replaced == []
    created = sorted(u.rsplit("::", 1)[1] for u in steps.get("create", []))
    updated = sorted(u.rsplit("::", 1)[1] for u in steps.get("update", []))
    figure("step-2 change", f"create {created}; update {updated}")
    assert "headwater-topics-agents.handoffs.v1" in created
    assert "headwater-registry-subject-agents.handoffs.v1" in created  # its contract, through the provider
    assert "headwater-principals-handoff-router" in created
    assert "headwater-topics-agents.signals.v1" in updated
    assert any("feature-aggregator" in u for u in updated)
    assert any(re.search(r"principals-agent-gateway$", u) for u in updated)
    for stateful in ("kafka-kafka", "nodepool", "flink-agent-events"):
        assert not [u for u in replaced if stateful in u]

    with OperatorStand(control_plane):
        run = dev.run("up", "--yes", "--skip-preview")
    figure("step-2 up", f"{run.seconds:.1f}s")
    topic = control_plane.api(
        "GET", "/apis/kafka.strimzi.io/v1/namespaces/headwater/kafkatopics/agents.signals.v1"
    )
    assert topic["spec"]["partitions"] == 6
    assert dev.run("preview", "--expect-no-changes").returncode == 0


def test_dev_destroy_leaves_nothing(dev: PulumiStack, control_plane: ControlPlane) -> None:
    run = dev.run("destroy", "--yes", "--skip-preview")
    figure("dev destroy", f"{run.seconds:.1f}s")
    namespaces = {n["metadata"]["name"] for n in control_plane.api("GET", "/api/v1/namespaces")["items"]}
    assert not namespaces & {"headwater", "headwater-system"}
    crds = [
        c["metadata"]["name"]
        for c in control_plane.api("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")["items"]
    ]
    assert [c for c in crds if re.search(r"strimzi\.io|flink\.apache\.org", c)] == []
    pods = control_plane.api("GET", "/api/v1/pods")["items"]
    assert pods == []


# --- a prod-shaped stack -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prod(
    control_plane: ControlPlane, registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PulumiStack]:
    home = tmp_path_factory.mktemp("pulumi-prod")
    stack = PulumiStack(
        name="e2e-prod",
        bin=control_plane.bin,
        home=home,
        kubeconfig=control_plane.kubeconfig,
        config_file=home / "Pulumi.e2e-prod.yaml",
        extra_env={
            "HEADWATER_REGISTRY_URL": registry.url,
            "HEADWATER_REGISTRY_PASSWORD": registry.password(),
        },
    )
    stack.init(_stack_config("prod"))
    yield stack
    stack.clean()


def test_prod_preview_with_the_policy_pack_passes(prod: PulumiStack) -> None:
    run = prod.run("preview", "--policy-pack", str(ROOT / "policies"), "--json")
    steps = _steps(run.stdout)
    figure("prod preview (with policy pack)", f"{run.seconds:.1f}s, {len(steps.get('create', []))} to create")
    assert _kinds(_kubernetes_objects(steps["create"])) == _kinds(_rendered(prod))


def test_weakened_prod_preview_fails_on_mandatory_policies(prod: PulumiStack) -> None:
    """What the config loader lets through (state on a local path) the policy pack stops, through the engine."""
    flink = dict(_stack_config("prod")["headwater:flink"])
    flink["stateUri"] = "file:///var/lib/headwater/flink"
    prod.write_config({"headwater:flink": flink})
    try:
        run = prod.run("preview", "--policy-pack", str(ROOT / "policies"), check=False)
    finally:
        prod.write_config({"headwater:flink": _stack_config("prod")["headwater:flink"]})
    assert run.returncode != 0
    violations = re.findall(r"\[mandatory\]\s+([a-z0-9-]+)\s+\(", run.output)
    figure("weakened prod preview", f"exit {run.returncode}, mandatory: {sorted(set(violations))}")
    # exactly what was weakened: each app's checkpoint, savepoint and HA paths
    assert violations == ["flink-durable-state"] * 6, violations
    assert "file:///var/lib/headwater/flink" in run.output


def test_bad_stack_config_fails_before_any_resource(prod: PulumiStack) -> None:
    kafka = dict(_stack_config("prod")["headwater:kafka"])
    kafka["racks"] = ["zone-a"]
    kafka["replicationFactor"] = 1
    prod.write_config({"headwater:kafka": kafka})
    try:
        run = prod.run("preview", "--json", check=False)
    finally:
        prod.write_config({"headwater:kafka": _stack_config("prod")["headwater:kafka"]})
    assert run.returncode != 0
    assert "stack 'e2e-prod' is not valid" in run.output or "stack e2e-prod:" in run.output
    assert "kafka.replicationFactor = 1 is not valid" in run.output
    assert "Traceback" not in run.output
    steps = _steps(run.stdout) if run.stdout.strip().startswith("{") else {}
    assert [u for u in steps.get("create", []) if "::pulumi:pulumi:Stack::" not in u] == []
