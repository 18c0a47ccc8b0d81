"""The Flink components with Pulumi mocks, in every stack: what gets created, with which names, parents and
content; how each environment runs its apps (upgrade mode, HA, state paths, images, sizing); and that the
apps' Kafka arguments and credentials come from the spec and the mounted secrets only."""

from __future__ import annotations

import re
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components import checkpoint_storage as storage
from components import flink_application as fa
from components.checkpoint_storage import CheckpointStorage, CheckpointStorageArgs
from components.flink_application import FlinkApplication, FlinkApplicationArgs
from components.flink_operator import FlinkOperator, render_flink_operator
from components.kafka_cluster import OPERATOR_NAMESPACE
from components.testing import RecordingMocks, pulumi_test
from headwater import versions
from headwater.config import load_platform, stack_names
from headwater.spec import Consume, Platform, Produce, TopicKind

STACKS = stack_names()
FLINK_DEPLOYMENT = f"kubernetes:{versions.FLINK_CRD_API_VERSION}:FlinkDeployment"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"


def _build_flink(p: Platform, seen: dict[str, Any]) -> None:
    """Create the Flink half of a stack the way the platform does, and record outputs and URNs."""

    @pulumi_test
    def build() -> Any:
        operator = FlinkOperator("flink-operator", p.watched_namespaces)
        state = CheckpointStorage("checkpoint-storage", CheckpointStorageArgs(p))
        apps = {
            a.name: FlinkApplication(
                f"flink-{a.name}",
                FlinkApplicationArgs(p, a.name),
                pulumi.ResourceOptions(depends_on=[operator, state]),
            )
            for a in p.apps
        }
        outputs = [operator.release, state.state_uri, state.endpoint]
        for name, app in apps.items():
            outputs += [app.job_name, app.image, app.deployment.urn]
            seen.setdefault("order", []).append(name)
        return pulumi.Output.all(*outputs).apply(lambda v: seen.update(values=v))

    build()  # returns once every registration has reached the mocks


def _deployments(mocks: RecordingMocks) -> dict[str, dict[str, Any]]:
    return {r.inputs["metadata"]["name"]: r.inputs for r in mocks.of_type(FLINK_DEPLOYMENT)}


# --- every stack --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_creates_operator_storage_and_one_deployment_per_app(
    mocks: RecordingMocks, stack: str
) -> None:
    p = load_platform(stack)
    seen: dict[str, Any] = {}
    _build_flink(p, seen)

    release, state_uri, endpoint, *per_app = seen["values"]
    assert release == "flink-kubernetes-operator"
    assert state_uri == p.flink.state_uri
    assert endpoint == (p.flink.s3_endpoint or "")
    for i, name in enumerate(seen["order"]):
        job_name, image, urn = per_app[3 * i : 3 * i + 3]
        assert job_name == name
        assert image == p.flink.image_ref(name)
        # parented by its component, named after the app
        assert (
            f"headwater:flink:FlinkApplication$kubernetes:flink.apache.org/v1beta1:FlinkDeployment::flink-{name}-flinkdeployment"
            in urn
        )

    (helm,) = mocks.of_type(HELM_RELEASE)
    assert helm.name == "flink-operator-release"
    assert helm.inputs["version"] == versions.FLINK_OPERATOR_VERSION
    assert helm.inputs["namespace"] == OPERATOR_NAMESPACE

    deployments = _deployments(mocks)
    assert sorted(deployments) == sorted(a.name for a in p.apps)
    # per app: ServiceAccount, Role, RoleBinding, Kafka client ConfigMap (+ a state claim for file:// state)
    n = len(p.apps)
    assert len(mocks.of_type("kubernetes:core/v1:ServiceAccount")) == n
    assert len(mocks.of_type("kubernetes:rbac.authorization.k8s.io/v1:Role")) == n
    assert len(mocks.of_type("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding")) == n
    assert len(mocks.of_type("kubernetes:core/v1:ConfigMap")) == n
    claims = mocks.of_type("kubernetes:core/v1:PersistentVolumeClaim")
    expected_claims = (n if storage.is_local_path(p.flink) else 0) + (1 if p.flink.deploy_minio else 0)
    assert len(claims) == expected_claims
    assert len(mocks.of_type("kubernetes:apps/v1:Deployment")) == (1 if p.flink.deploy_minio else 0)

    for name, dep in deployments.items():
        spec = dep["spec"]
        assert spec["flinkVersion"] == versions.FLINK_VERSION_ENUM
        assert spec["mode"] == "native"
        assert spec["serviceAccount"] == f"{name}-flink"
        assert spec["job"]["jarURI"] == f"local:///opt/flink/opt/flink-python-{versions.FLINK_VERSION}.jar"
        assert spec["job"]["entryClass"] == "org.apache.flink.client.python.PythonDriver"
        app = next(a for a in p.apps if a.name == name)
        assert spec["job"]["args"][:4] == ["-pyclientexec", fa.PYTHON, "-pym", app.module]
        assert spec["job"]["parallelism"] == p.flink.parallelism
        assert spec["job"]["state"] == "running"
        conf = spec["flinkConfiguration"]
        assert all(isinstance(v, str) for v in conf.values())
        assert conf["state.backend.type"] == "rocksdb"
        assert conf["execution.checkpointing.incremental"] == "true"
        assert conf["execution.checkpointing.mode"] == "EXACTLY_ONCE"
        assert conf["execution.checkpointing.interval"] == f"{p.flink.checkpoint_interval_ms} ms"
        assert conf["execution.checkpointing.externalized-checkpoint-retention"] == "RETAIN_ON_CANCELLATION"
        assert conf["restart-strategy.type"] == "exponential-delay"
        assert conf["taskmanager.numberOfTaskSlots"] == str(p.flink.task_slots)
        paths = storage.state_paths(p.flink, name)
        assert conf["execution.checkpointing.dir"] == paths.checkpoints
        assert conf["execution.checkpointing.savepoint-dir"] == paths.savepoints
        assert ("high-availability.storageDir" in conf) == p.flink.ha
        # pinned image: a tag other than latest, or a digest
        assert re.fullmatch(r"[^:@]+(:[A-Za-z0-9_.-]+|@sha256:[0-9a-f]+)", spec["image"]), spec["image"]
        assert not spec["image"].endswith(":latest")


@pytest.mark.parametrize("stack", STACKS)
def test_pods_are_restricted_and_credentials_come_from_secrets(mocks: RecordingMocks, stack: str) -> None:
    p = load_platform(stack)
    _build_flink(p, {})
    for name, dep in _deployments(mocks).items():
        pod = dep["spec"]["podTemplate"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        containers = pod["containers"] + pod["initContainers"]
        assert [c["name"] for c in pod["containers"]] == ["flink-main-container"]
        for c in containers:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["runAsNonRoot"] is True
            for env in c.get("env", []):
                if env["name"].startswith("AWS_"):
                    assert "value" not in env
                    assert env["valueFrom"]["secretKeyRef"]["name"] == p.flink.s3_credentials_secret
        secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        # Kafka credentials, the cluster CA, and the app's own schema registry password.
        assert secrets == {name, f"{p.kafka.cluster_name}-cluster-ca-cert", f"{name}-registry"}
        args = dep["spec"]["job"]["args"]
        assert args[args.index("--kafka-properties-file") + 1] == fa.PROPERTIES_FILE
        assert not any("password" in a.lower() or "jaas" in a.lower() for a in args)

    minio = mocks.of_type("kubernetes:apps/v1:Deployment")
    for m in minio:
        pod = m.inputs["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        (c,) = pod["containers"]
        assert c["image"] == storage.MINIO_IMAGE and "latest" not in c["image"]
        for env in c["env"]:
            if env["name"].startswith("MINIO_ROOT"):
                assert "value" not in env
                assert env["valueFrom"]["secretKeyRef"]["name"] == p.flink.s3_credentials_secret


@pytest.mark.parametrize("stack", STACKS)
def test_app_arguments_come_from_the_principals_flows(stack: str) -> None:
    p = load_platform(stack)
    kinds = {t.name: t.kind for t in p.topics}
    for app in p.apps:
        principal = p.principal(app.name)
        args = fa.app_arguments(p, app)
        pairs = list(zip(args[::2], args[1::2], strict=True))

        def values(flag: str, pairs: list[tuple[str, str]] = pairs) -> list[str]:
            return [v for k, v in pairs if k == flag]

        assert values("--bootstrap-servers") == [
            f"{p.kafka.cluster_name}-kafka-bootstrap.{p.namespace}.svc:9093"
        ]
        assert values("--source-topic") == [c.topic for c in principal.consumes]
        assert values("--group-id") == sorted({c.group for c in principal.consumes})
        assert values("--sink-topic") == [
            f.topic for f in principal.produces if kinds[f.topic] != TopicKind.DEADLETTER
        ]
        assert values("--dead-letter-topic") == [
            f.topic for f in principal.produces if kinds[f.topic] == TopicKind.DEADLETTER
        ]
        prefix = values("--transactional-id-prefix")
        assert prefix == ([principal.transactional_id_prefix] if principal.transactional else [])
        assert values("--schema-registry-url") == [f"http://schema-registry.{p.namespace}.svc:8080"]
        timeout = values("--transaction-timeout-ms")
        assert timeout == ([str(p.kafka.transaction_max_timeout_ms)] if principal.transactional else [])


# --- per environment ---------------------------------------------------------------------------------------


def test_prod_savepoints_ha_durable_paths_autoscaler(mocks: RecordingMocks) -> None:
    p = load_platform("prod")
    _build_flink(p, {})
    deployments = _deployments(mocks)
    assert set(deployments) == {"agent-events", "feature-aggregator"}
    for name, dep in deployments.items():
        spec = dep["spec"]
        conf = spec["flinkConfiguration"]
        assert spec["job"]["upgradeMode"] == "savepoint"
        assert dep["metadata"]["labels"]["headwater.io/stateful"] == "true"
        assert spec["jobManager"]["replicas"] == 2
        assert conf["high-availability.type"] == "kubernetes"
        assert conf["high-availability.storageDir"] == f"s3://headwater-flink-prod/{name}/ha"
        assert conf["execution.checkpointing.dir"] == f"s3://headwater-flink-prod/{name}/checkpoints"
        assert conf["execution.checkpointing.savepoint-dir"] == f"s3://headwater-flink-prod/{name}/savepoints"
        assert conf["kubernetes.operator.periodic.savepoint.interval"] == "1h"
        assert conf["kubernetes.operator.deployment.rollback.enabled"] == "true"
        assert conf["job.autoscaler.enabled"] == "true"
        # Operator 1.15 names; target.utilization(.boundary) are deprecated there.
        assert conf["job.autoscaler.utilization.target"] == "0.7"
        assert (conf["job.autoscaler.utilization.min"], conf["job.autoscaler.utilization.max"]) == (
            "0.5",
            "0.9",
        )
        assert not [k for k in conf if k.startswith("job.autoscaler.target.")]
        assert "s3.endpoint" not in conf  # AWS S3 itself
        assert spec["image"] == f"registry.example.com/headwater/{name}:0.1.0"
        assert spec["jobManager"]["resource"] == {"cpu": 1.0, "memory": "4096m"}
        assert spec["taskManager"]["resource"] == {"cpu": 2.0, "memory": "8192m"}
        assert conf["kubernetes.taskmanager.cpu.limit-factor"] == "2"
        env = spec["podTemplate"]["spec"]["containers"][0]["env"]
        # workload identity: the S3 plugin is enabled, no access keys are handed out
        assert env == [
            {"name": "ENABLE_BUILT_IN_PLUGINS", "value": f"flink-s3-fs-presto-{versions.FLINK_VERSION}.jar"}
        ]
    assert not mocks.of_type("kubernetes:apps/v1:Deployment")  # no MinIO in prod
    args = deployments["agent-events"]["spec"]["job"]["args"]
    assert args[args.index("--dead-letter-topic") + 1] == "agents.events.deadletter.v1"
    assert args[args.index("--transactional-id-prefix") + 1] == "agent-events-"
    template = mocks.named("flink-agent-events-configmap-agent-events-kafka-client").inputs["data"]
    assert "security.protocol=SSL" in template[fa.TEMPLATE_KEY]
    assert f"ssl.keystore.location={fa.USER_DIR}/user.p12" in template[fa.TEMPLATE_KEY]


def test_staging_uses_savepoints_and_secret_credentials(mocks: RecordingMocks) -> None:
    p = load_platform("staging")
    _build_flink(p, {})
    for dep in _deployments(mocks).values():
        spec = dep["spec"]
        assert spec["job"]["upgradeMode"] == "savepoint"
        assert spec["jobManager"]["replicas"] == 1
        assert spec["flinkConfiguration"]["kubernetes.operator.periodic.savepoint.interval"] == "6h"
        assert "job.autoscaler.enabled" not in spec["flinkConfiguration"]
        env = {e["name"]: e for e in spec["podTemplate"]["spec"]["containers"][0]["env"]}
        assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {
            "name": "flink-s3-credentials",
            "key": storage.ACCESS_KEY,
        }


def test_dev_runs_minio_and_last_state_upgrades(mocks: RecordingMocks) -> None:
    p = load_platform("dev")
    _build_flink(p, {})
    (deployment,) = mocks.of_type("kubernetes:apps/v1:Deployment")
    assert deployment.name == "checkpoint-storage-deployment-minio"
    (service,) = mocks.of_type("kubernetes:core/v1:Service")
    assert service.inputs["metadata"]["name"] == "minio"
    assert service.inputs["spec"]["ports"][0]["port"] == 9000
    (claim,) = mocks.of_type("kubernetes:core/v1:PersistentVolumeClaim")
    assert claim.inputs["metadata"]["name"] == "minio-data"
    hook = deployment.inputs["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["postStart"]
    assert "local/headwater-flink-dev" in hook["exec"]["command"][-1]
    for dep in _deployments(mocks).values():
        conf = dep["spec"]["flinkConfiguration"]
        assert dep["spec"]["job"]["upgradeMode"] == "last-state"
        assert conf["s3.endpoint"] == "http://minio.headwater.svc:9000"
        assert conf["s3.path.style.access"] == "true"
        assert conf["execution.checkpointing.dir"].startswith("s3://headwater-flink-dev/")
    template = mocks.named("flink-agent-events-configmap-agent-events-kafka-client").inputs["data"]
    assert "sasl.mechanism=SCRAM-SHA-512" in template[fa.TEMPLATE_KEY]
    assert f"{fa.USER_DIR}/sasl.jaas.config" in template[fa.SCRIPT_KEY]


def test_local_keeps_state_on_a_claim_without_ha(mocks: RecordingMocks) -> None:
    p = load_platform("local")
    _build_flink(p, {})
    for name, dep in _deployments(mocks).items():
        conf = dep["spec"]["flinkConfiguration"]
        assert dep["spec"]["job"]["upgradeMode"] == "savepoint"  # no HA record for last-state
        assert "high-availability.type" not in conf
        assert conf["execution.checkpointing.dir"] == f"file:///var/lib/headwater/flink/{name}/checkpoints"
        pod = dep["spec"]["podTemplate"]["spec"]
        mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert mounts["flink-state"] == f"/var/lib/headwater/flink/{name}"
        (role,) = [
            r
            for r in mocks.of_type("kubernetes:rbac.authorization.k8s.io/v1:Role")
            if r.inputs["metadata"]["name"] == f"{name}-flink"
        ]
        assert [rule["resources"] for rule in role.inputs["rules"]] == [
            ["pods"],
            ["deployments"],
            ["deployments/finalizers"],
        ]


# --- the operator ------------------------------------------------------------------------------------------


def test_operator_chart_and_image_are_pinned_and_restricted() -> None:
    release = render_flink_operator(("headwater",))
    values = release.values
    assert release.chart == "flink-kubernetes-operator"
    assert release.version == versions.FLINK_OPERATOR_VERSION
    assert release.repository == versions.FLINK_OPERATOR_HELM_REPO
    assert release.namespace == OPERATOR_NAMESPACE
    assert values["image"] == {
        "repository": "apache/flink-kubernetes-operator",
        "tag": versions.FLINK_OPERATOR_VERSION,
        "pullPolicy": "IfNotPresent",
    }
    assert values["watchNamespaces"] == ["headwater"]
    assert values["webhook"] == {"create": False}
    assert values["jobServiceAccount"] == {"create": False}
    assert values["podSecurityContext"]["runAsNonRoot"] is True
    for key in ("operatorSecurityContext", "webhookSecurityContext"):
        assert values[key]["allowPrivilegeEscalation"] is False
        assert values[key]["capabilities"] == {"drop": ["ALL"]}
    conf = values["defaultConfiguration"]["flink-conf.yaml"]
    assert values["defaultConfiguration"]["config.yaml"] == conf
    assert "kubernetes.operator.savepoint.history.max.count: 10\n" in conf
    assert render_flink_operator(("headwater",), webhook=True).values["webhook"] == {"create": True}
    with pytest.raises(ValueError, match="at least one namespace"):
        render_flink_operator(())


def test_operator_component_installs_the_release(mocks: RecordingMocks) -> None:
    seen: list[Any] = []

    @pulumi_test
    def build() -> Any:
        op = FlinkOperator("ops", ("headwater", "agents"), webhook=True)
        return pulumi.Output.all(op.release, op.urn).apply(seen.extend)

    build()
    release, urn = seen
    assert release == "flink-kubernetes-operator"
    assert urn.endswith("headwater:flink:FlinkOperator::ops")
    (helm,) = mocks.of_type(HELM_RELEASE)
    assert helm.inputs["values"]["watchNamespaces"] == ["headwater", "agents"]
    assert helm.inputs["values"]["webhook"] == {"create": True}


# --- pieces ------------------------------------------------------------------------------------------------


def test_state_paths_are_decided_in_one_place() -> None:
    p = load_platform("prod")
    paths = storage.state_paths(replace(p.flink, state_uri="s3://bucket/prefix/"), "app")
    assert paths == storage.StatePaths(
        "s3://bucket/prefix/app/checkpoints", "s3://bucket/prefix/app/savepoints", "s3://bucket/prefix/app/ha"
    )


def test_sizes_convert_to_flink_units() -> None:
    assert fa.flink_memory("2Gi") == "2048m"
    assert fa.flink_memory("512Mi") == "512m"
    assert fa.flink_memory("1G") == "1000000000b"
    assert fa.flink_memory("1.5Gi") == "1536m"
    assert fa.cpu_cores("500m") == 0.5
    assert fa.cpu_cores("2") == 2.0


def test_args_fail_fast() -> None:
    p = load_platform("dev")
    with pytest.raises(ValueError, match="no app 'nope'"):
        FlinkApplicationArgs(p, "nope")
    two_groups = replace(
        p,
        principals=tuple(
            replace(pr, consumes=(*pr.consumes, Consume("agents.signals.v1", "other")))
            if pr.name == "agent-events"
            else pr
            for pr in p.principals
        ),
    )
    with pytest.raises(ValueError, match="several groups"):
        FlinkApplicationArgs(two_groups, "agent-events")
    two_sinks = replace(
        p,
        principals=tuple(
            replace(pr, produces=(*pr.produces, Produce("features.agent_activity.v1", True)))
            if pr.name == "agent-events"
            else pr
            for pr in p.principals
        ),
    )
    with pytest.raises(ValueError, match="2 sink topics"):
        FlinkApplicationArgs(two_sinks, "agent-events")
    no_secret = replace(p, flink=replace(p.flink, s3_credentials_secret=None))
    with pytest.raises(ValueError, match="s3CredentialsSecret"):
        CheckpointStorageArgs(no_secret)
    with pytest.raises(ValueError, match="stateUri"):
        FlinkApplicationArgs(replace(p, flink=replace(p.flink, state_uri="gs://x")), "agent-events")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_assemble_script_writes_the_properties_file_and_prints_no_secret(tmp_path: Path, stack: str) -> None:
    """Run the init container's script against fake mounted secrets (paths moved under tmp_path)."""
    p = load_platform(stack)
    principal = p.principal("agent-events")
    dirs = {
        d: tmp_path / d.strip("/").replace("/", "_")
        for d in (fa.USER_DIR, fa.CA_DIR, fa.TEMPLATE_DIR, fa.CLIENT_DIR, fa.REGISTRY_DIR)
    }
    for d in dirs.values():
        d.mkdir()

    def moved(text: str) -> str:
        for old, new in dirs.items():
            text = text.replace(old, str(new))
        return text

    (dirs[fa.TEMPLATE_DIR] / fa.TEMPLATE_KEY).write_text(fa.properties_template(p, principal))
    (dirs[fa.CA_DIR] / "ca.password").write_text("ca-secret-1")
    (dirs[fa.USER_DIR] / "user.password").write_text("user-secret-2")
    jaas = 'org.apache.kafka.common.security.scram.ScramLoginModule required username="agent-events" password="pw-3";'
    (dirs[fa.USER_DIR] / "sasl.jaas.config").write_text(jaas)
    script = tmp_path / "assemble.sh"
    (dirs[fa.REGISTRY_DIR] / "password").write_text("registry-secret-4")
    user = fa.registry_identity(p, p.apps[[a.name for a in p.apps].index("agent-events")])
    assert user is not None and user.role == "sr-readonly"
    script.write_text(moved(fa.assemble_script(principal, user)))
    done = subprocess.run(["/bin/sh", str(script)], capture_output=True, text=True, check=True)
    assert "secret" not in done.stdout + done.stderr and "pw-3" not in done.stdout + done.stderr
    written = Path(moved(fa.PROPERTIES_FILE)).read_text()
    props = dict(line.split("=", 1) for line in written.splitlines() if line and not line.startswith("#"))
    assert props["ssl.truststore.password"] == "ca-secret-1"
    assert props["ssl.truststore.location"] == f"{fa.CA_DIR}/ca.p12"
    # The apps' registry client authenticates as the app (flink_apps.common.registry reads this key).
    assert props["schema.registry.basic.auth.user.info"] == "agent-events:registry-secret-4"
    if stack == "prod":
        assert props["security.protocol"] == "SSL"
        assert props["ssl.keystore.password"] == "user-secret-2"
    else:
        assert props["security.protocol"] == "SASL_SSL"
        assert props["sasl.jaas.config"] == jaas
    assert oct(Path(moved(fa.PROPERTIES_FILE)).stat().st_mode & 0o777) == "0o600"
    # a missing secret key fails the init container instead of writing a half file
    (dirs[fa.CA_DIR] / "ca.password").unlink()
    Path(moved(fa.PROPERTIES_FILE)).unlink()
    failed = subprocess.run(["/bin/sh", str(script)], capture_output=True, text=True, check=False)
    assert failed.returncode != 0
    assert not Path(moved(fa.PROPERTIES_FILE)).exists()


def test_prod_apps_reach_s3_through_workload_identity() -> None:
    from components.flink_application import render_rbac

    p = load_platform("prod")
    for app in p.apps:
        (sa,) = [o for o in render_rbac(p, app) if o["kind"] == "ServiceAccount"]
        assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(
            ":role/headwater-flink-prod"
        )
    dev = load_platform("dev")
    (sa,) = [o for o in render_rbac(dev, dev.apps[0]) if o["kind"] == "ServiceAccount"]
    assert "annotations" not in sa["metadata"]
