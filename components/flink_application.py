"""A packaged PyFlink app as a `FlinkDeployment` (application mode) of the Flink Kubernetes Operator.

Everything comes from the spec: the app (`platform.apps`), its Kafka identity and flows (the principal of the
same name), the environment's Flink settings (sizing, images, state). Topic arguments are derived from the
principal's flows and never written a second time:

- each consumed topic -> `--source-topic`, its consumer group -> `--group-id`;
- each produced topic -> `--sink-topic`, or `--dead-letter-topic` for a topic of kind `deadletter`;
- a transactional producer -> `--transactional-id-prefix` (the prefix its ACLs allow) and
  `--transaction-timeout-ms` (the brokers' `transaction.max.timeout.ms`);
- plus `--bootstrap-servers`, `--kafka-properties-file` and `--schema-registry-url`, then the catalog's
  `args` of the app. The names are those of `flink_apps/<app>/main.py` (`flink_apps.common.cli`).

Kafka credentials reach the app as a client properties file (`--kafka-properties-file`): an init container
writes it into a memory-backed volume from a non-secret template (ConfigMap) and the mounted secrets — the
principal's KafkaUser secret and the cluster CA secret, both written by Strimzi — so no secret appears in a
command line, an environment variable, a ConfigMap or a log line.

Each app runs under its own ServiceAccount, bound to a Role with what Flink's native Kubernetes integration
needs in its namespace: pods (the JobManager starts and stops its TaskManagers), configmaps (Kubernetes HA:
leader election and job metadata), read access to deployments (TaskManager pods are owned by the
JobManager deployment) and update on their finalizers (that owner reference blocks the owner's deletion).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pulumi
from kubernetes.utils import parse_quantity

from components import checkpoint_storage as storage
from components.k8s import create_object, labels, metadata, restricted_container_security
from components.kafka_cluster import bootstrap_address, cluster_ca_secret
from components.kafka_topics import LABEL_PREFIX
from components.kafka_users import user_secret
from components.schema_registry import service_url
from headwater import flink_conf, versions
from headwater.contracts import access
from headwater.kafka_config import KeyStore, java_client_properties
from headwater.spec import App, Authentication, Platform, Principal, Tier, app_flows

ENTRY_CLASS = "org.apache.flink.client.python.PythonDriver"
JAR_URI = f"local:///opt/flink/opt/flink-python-{versions.FLINK_VERSION}.jar"
PYTHON = "/usr/bin/python3"  # the interpreter of the app images (client and Python workers)
FLINK_USER = 9999  # uid/gid of the Flink images
MAIN_CONTAINER = "flink-main-container"  # the operator merges the pod template into this container

# Kafka client configuration inside the pods.
KAFKA_DIR = "/etc/headwater/kafka"
USER_DIR = f"{KAFKA_DIR}/user"  # the principal's KafkaUser secret
CA_DIR = f"{KAFKA_DIR}/cluster-ca"  # the cluster CA secret
TEMPLATE_DIR = f"{KAFKA_DIR}/template"  # ConfigMap: properties template and the assembling script
REGISTRY_DIR = "/etc/headwater/registry"  # the app's schema registry password (its `<app>-registry` Secret)
CLIENT_DIR = "/var/run/headwater/kafka"  # memory-backed volume holding the assembled file
PROPERTIES_FILE = f"{CLIENT_DIR}/client.properties"
TEMPLATE_KEY = "client.properties.template"
SCRIPT_KEY = "assemble.sh"


SAVEPOINT_HISTORY = 10
PROMETHEUS_PORT = 9249
METRICS_PORT_NAME = "metrics"  # the container port name PodMonitors scrape


# --- names -----------------------------------------------------------------------------------------------


def service_account(app: str) -> str:
    return f"{app}-flink"


def kafka_client_configmap(app: str) -> str:
    return f"{app}-kafka-client"


# --- what the spec says about one app --------------------------------------------------------------------


def default_schema_registry_url(platform: Platform) -> str:
    """The in-cluster registry's root, as the registry component publishes it."""
    return service_url(platform)


def app_arguments(platform: Platform, app: App, schema_registry_url: str | None = None) -> list[str]:
    """The app's own arguments (after `-pym <module>`): connection, flows, then the catalog's extra args."""
    flows = app_flows(platform, app)
    args = [
        "--bootstrap-servers",
        bootstrap_address(platform.kafka, platform.namespace),
        "--kafka-properties-file",
        PROPERTIES_FILE,
    ]
    for topic in flows.sources:
        args += ["--source-topic", topic]
    args += ["--group-id", flows.group_id, "--isolation-level", flows.isolation_level]
    for topic in flows.sinks:
        args += ["--sink-topic", topic]
    for topic in flows.dead_letters:
        args += ["--dead-letter-topic", topic]
    if flows.transactional_id_prefix:
        args += ["--transactional-id-prefix", flows.transactional_id_prefix]
        # As long as the brokers allow: a checkpoint (and its commit) may be late without aborting.
        args += ["--transaction-timeout-ms", str(platform.kafka.transaction_max_timeout_ms)]
    args += ["--schema-registry-url", schema_registry_url or default_schema_registry_url(platform)]
    for key, value in platform.app_args(app):
        args += [f"--{key}", value]
    return args


def upgrade_mode(platform: Platform, app: App) -> str:
    """How the operator carries state across an upgrade.

    - stateless apps: `stateless`;
    - staging and prod: `savepoint` — a consistent, portable snapshot taken right before the upgrade;
    - dev and local with Kubernetes HA: `last-state` — the latest checkpoint recorded in the HA metadata,
      so upgrades neither wait for a savepoint nor get stuck when a half-broken dev job cannot take one;
      without HA there is no such record, so `savepoint`.
    """
    if not app.stateful:
        return "stateless"
    if platform.tier.is_development and platform.flink.ha:
        return "last-state"
    return "savepoint"


# --- sizes -----------------------------------------------------------------------------------------------


def _bytes(quantity: str) -> int:
    """A Kubernetes memory quantity in bytes (`4Gi`, `512M`, `1e9`), as the Kubernetes client parses it."""
    return int(parse_quantity(quantity))


def flink_memory(quantity: str) -> str:
    """A Kubernetes memory quantity as a Flink memory size (`2Gi` -> `2048m`; Flink's `m` is MiB)."""
    size = _bytes(quantity)
    for unit, factor in (("m", 2**20), ("k", 2**10)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}b"


def cpu_cores(quantity: str) -> float:
    """A Kubernetes CPU quantity in cores (`500m` -> 0.5)."""
    return float(parse_quantity(quantity))


def _limit_factor(request: float, limit: float) -> str:
    return format(Decimal(str(limit)) / Decimal(str(request)), "f") if request else "1.0"


def jobmanager_replicas(platform: Platform) -> int:
    """A standby JobManager in prod (needs Kubernetes HA), one elsewhere."""
    return 2 if platform.tier == Tier.PROD and platform.flink.ha else 1


# --- configuration ---------------------------------------------------------------------------------------


def flink_configuration(platform: Platform, app: App) -> dict[str, str]:
    """flinkConfiguration of the app's FlinkDeployment (Flink 2.x keys; every value a string)."""
    settings = platform.flink
    paths = storage.state_paths(settings, app.name)
    jm, tm = settings.jobmanager, settings.taskmanager
    conf: dict[str, str] = {
        "taskmanager.numberOfTaskSlots": str(settings.task_slots),
        # failures
        "restart-strategy.type": "exponential-delay",
        "restart-strategy.exponential-delay.initial-backoff": "1 s",
        "restart-strategy.exponential-delay.max-backoff": "2 min",
        "restart-strategy.exponential-delay.backoff-multiplier": "2.0",
        "restart-strategy.exponential-delay.reset-backoff-threshold": "10 min",
        "restart-strategy.exponential-delay.jitter-factor": "0.1",
        # operator: savepoint history and bounded waiting for a new deployment to become stable
        "kubernetes.operator.savepoint.history.max.count": str(SAVEPOINT_HISTORY),
        "kubernetes.operator.savepoint.history.max.age": "7 d",
        "kubernetes.operator.deployment.readiness.timeout": "5 min",
        # resources: requests are the CRD's cpu/memory, limits through the limit factors
        "kubernetes.jobmanager.cpu.limit-factor": _limit_factor(
            cpu_cores(jm.cpu_request), cpu_cores(jm.cpu_limit)
        ),
        "kubernetes.taskmanager.cpu.limit-factor": _limit_factor(
            cpu_cores(tm.cpu_request), cpu_cores(tm.cpu_limit)
        ),
        "kubernetes.jobmanager.memory.limit-factor": _limit_factor(
            _bytes(jm.memory_request), _bytes(jm.memory_limit)
        ),
        "kubernetes.taskmanager.memory.limit-factor": _limit_factor(
            _bytes(tm.memory_request), _bytes(tm.memory_limit)
        ),
        # the Python workers run the interpreter the job was built with
        "python.executable": PYTHON,
        **flink_conf.prometheus_reporter_conf(PROMETHEUS_PORT),
    }
    if settings.ha:
        conf["high-availability.type"] = "kubernetes"
        conf["high-availability.storageDir"] = paths.ha
        # Rolling back to the last stable spec restores from HA metadata, so only with HA.
        conf["kubernetes.operator.deployment.rollback.enabled"] = "true"
    if settings.savepoint_interval and app.stateful:
        conf["kubernetes.operator.periodic.savepoint.interval"] = settings.savepoint_interval
    if settings.autoscaler:
        conf.update(
            {
                "job.autoscaler.enabled": "true",
                "job.autoscaler.stabilization.interval": "5 min",
                "job.autoscaler.metrics.window": "10 min",
                # Operator 1.15 names (target.utilization and target.utilization.boundary are deprecated):
                # scale when a vertex is busier than max or idler than min, towards the target.
                "job.autoscaler.utilization.target": "0.7",
                "job.autoscaler.utilization.max": "0.9",
                "job.autoscaler.utilization.min": "0.5",
                "job.autoscaler.restart.time": "2 min",
                "job.autoscaler.catch-up.duration": "10 min",
                "job.autoscaler.scale-down.interval": "1 h",
                "job.autoscaler.vertex.min-parallelism": "1",
                "job.autoscaler.vertex.max-parallelism": str(_max_partitions(platform, app)),
            }
        )
    # checkpointing, state backend, Python execution mode and bundles: the same derivation as local runs
    conf.update(flink_conf.app_flink_conf(settings, paths.checkpoints, paths.savepoints))
    conf.update(storage.flink_configuration(settings))
    return dict(sorted(conf.items()))


def _max_partitions(platform: Platform, app: App) -> int:
    """More parallel readers than partitions sit idle: the autoscaler's ceiling per vertex."""
    flows = app_flows(platform, app)
    return max(platform.topic(t).partitions for t in flows.sources)


# --- Kafka client properties -----------------------------------------------------------------------------


def properties_template(platform: Platform, principal: Principal) -> str:
    """The non-secret lines of the app's Kafka client properties (the script appends the secret ones)."""
    props = java_client_properties(
        principal.authentication,
        truststore=KeyStore("PKCS12", f"{CA_DIR}/ca.p12"),
        keystore=KeyStore("PKCS12", f"{USER_DIR}/user.p12"),
    )
    lines = ["# Completed by the kafka-client-config init container with values from the mounted secrets."]
    lines += [f"{key}={value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def registry_identity(platform: Platform, app: App) -> access.RegistryUser | None:
    """The app's schema registry user (it reads as itself), or None when it touches no contracted topic."""
    try:
        return access.registry_user(platform, app.name)
    except KeyError:
        return None


def assemble_script(principal: Principal, registry_user: access.RegistryUser | None = None) -> str:
    """Shell run by the init container: template + secret values -> the properties file. Prints no secret."""
    appends = [("ssl.truststore.password", f"{CA_DIR}/ca.password", "")]
    if principal.authentication == Authentication.TLS:
        appends.append(("ssl.keystore.password", f"{USER_DIR}/user.password", ""))
    else:
        appends.append(("sasl.jaas.config", f"{USER_DIR}/sasl.jaas.config", ""))
    if registry_user is not None:
        # The apps' registry client reads `schema.registry.basic.auth.user.info` (user:password).
        appends.append(
            (
                "schema.registry.basic.auth.user.info",
                f"{REGISTRY_DIR}/{access.SECRET_KEY}",
                f"{registry_user.name}:",
            )
        )
    # `value=$(cat ...)` fails the script (set -e) when a secret key is missing; printf writes the value
    # into the file only, never to the log.
    body = "".join(
        f"value=\"$(cat {path})\"\nprintf '%s=%s%s\\n' '{key}' '{prefix}' \"$value\" >> \"$tmp\"\n"
        for key, path, prefix in appends
    )
    return (
        "#!/bin/sh\n"
        "# Assemble the Kafka client properties from the template and the mounted secrets.\n"
        "set -eu\n"
        "umask 077\n"
        f'tmp="{PROPERTIES_FILE}.tmp"\n'
        f'cp "{TEMPLATE_DIR}/{TEMPLATE_KEY}" "$tmp"\n'
        f"{body}"
        f'mv "$tmp" "{PROPERTIES_FILE}"\n'
        f'echo "kafka client properties written to {PROPERTIES_FILE}"\n'
    )


# --- the objects -----------------------------------------------------------------------------------------


def _pod_template(platform: Platform, app: App, image: str) -> dict[str, Any]:
    settings = platform.flink
    security = restricted_container_security()
    mounts = [
        {"name": "kafka-user", "mountPath": USER_DIR, "readOnly": True},
        {"name": "kafka-cluster-ca", "mountPath": CA_DIR, "readOnly": True},
        {"name": "kafka-client", "mountPath": CLIENT_DIR, "readOnly": True},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "kafka-user", "secret": {"secretName": user_secret(app.name), "defaultMode": 0o440}},
        {
            "name": "kafka-cluster-ca",
            "secret": {"secretName": cluster_ca_secret(platform.kafka), "defaultMode": 0o440},
        },
        {
            "name": "kafka-client-template",
            "configMap": {"name": kafka_client_configmap(app.name), "defaultMode": 0o440},
        },
        {"name": "kafka-client", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
    ]
    if storage.is_local_path(settings):
        root = f"{storage.local_root(settings)}/{app.name}"
        mounts.append({"name": "flink-state", "mountPath": root})
        volumes.append(
            {
                "name": "flink-state",
                "persistentVolumeClaim": {"claimName": storage.local_state_claim(app.name)},
            }
        )
    registry_user = registry_identity(platform, app)
    init_mounts = [
        {"name": "kafka-user", "mountPath": USER_DIR, "readOnly": True},
        {"name": "kafka-cluster-ca", "mountPath": CA_DIR, "readOnly": True},
        {"name": "kafka-client-template", "mountPath": TEMPLATE_DIR, "readOnly": True},
        {"name": "kafka-client", "mountPath": CLIENT_DIR},
    ]
    if registry_user is not None:
        # Only the init container sees the registry password; the app reads it from the assembled file.
        volumes.append(
            {
                "name": "registry-credentials",
                "secret": {
                    "secretName": registry_user.secret,
                    "items": [{"key": access.SECRET_KEY, "path": access.SECRET_KEY}],
                    "defaultMode": 0o440,
                },
            }
        )
        init_mounts.append({"name": "registry-credentials", "mountPath": REGISTRY_DIR, "readOnly": True})
    init = {
        "name": "kafka-client-config",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/sh", f"{TEMPLATE_DIR}/{SCRIPT_KEY}"],
        "resources": {
            "requests": {"cpu": "50m", "memory": "32Mi"},
            "limits": {"cpu": "200m", "memory": "64Mi"},
        },
        "securityContext": security,
        "volumeMounts": init_mounts,
    }
    main: dict[str, Any] = {
        "name": MAIN_CONTAINER,
        "securityContext": security,
        "volumeMounts": mounts,
        "ports": [{"name": METRICS_PORT_NAME, "containerPort": PROMETHEUS_PORT, "protocol": "TCP"}],
    }
    env = storage.container_env(settings)
    if env:
        main["env"] = env
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"labels": labels("flink", app.name)},
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": FLINK_USER,
                "runAsGroup": FLINK_USER,
                "fsGroup": FLINK_USER,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "initContainers": [init],
            "containers": [main],
            "volumes": volumes,
        },
    }


def _resource(res: Any) -> dict[str, Any]:
    return {"cpu": cpu_cores(res.cpu_request), "memory": flink_memory(res.memory_request)}


def render_flink_deployment(
    platform: Platform, app: App, schema_registry_url: str | None = None
) -> dict[str, Any]:
    settings = platform.flink
    image = settings.image_ref(app.name)
    return {
        "apiVersion": versions.FLINK_CRD_API_VERSION,
        "kind": "FlinkDeployment",
        "metadata": metadata(
            app.name,
            platform.namespace,
            labels(
                "flink",
                app.name,
                {
                    f"{LABEL_PREFIX}/principal": app.name,
                    f"{LABEL_PREFIX}/stateful": "true" if app.stateful else "false",
                },
            ),
            {"pulumi.com/waitFor": "jsonpath={.status.lifecycleState}=STABLE"},
        ),
        "spec": {
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "flinkVersion": versions.FLINK_VERSION_ENUM,
            "mode": "native",
            "serviceAccount": service_account(app.name),
            "flinkConfiguration": flink_configuration(platform, app),
            "podTemplate": _pod_template(platform, app, image),
            "jobManager": {
                "replicas": jobmanager_replicas(platform),
                "resource": _resource(settings.jobmanager),
            },
            "taskManager": {"resource": _resource(settings.taskmanager)},
            "job": {
                "jarURI": JAR_URI,
                "entryClass": ENTRY_CLASS,
                "args": [
                    "-pyclientexec",
                    PYTHON,
                    "-pym",
                    app.module,
                    *app_arguments(platform, app, schema_registry_url),
                ],
                "parallelism": settings.parallelism,
                "upgradeMode": upgrade_mode(platform, app),
                "state": "running",
                "allowNonRestoredState": False,
            },
        },
    }


def render_rbac(platform: Platform, app: App) -> list[dict[str, Any]]:
    """ServiceAccount, Role and RoleBinding of one app (Flink native Kubernetes and Kubernetes HA)."""
    name = service_account(app.name)
    ns = platform.namespace
    lab = labels("flink", app.name)
    rw = ["get", "list", "watch", "create", "update", "patch", "delete"]
    rules: list[dict[str, Any]] = [
        # The JobManager creates, watches and deletes its TaskManager pods.
        {"apiGroups": [""], "resources": ["pods"], "verbs": rw},
        # TaskManager pods are owned by the JobManager deployment, which the JobManager looks up.
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch"]},
        # ... and their owner reference blocks the owner's deletion (blockOwnerDeletion), which clusters with
        # OwnerReferencesPermissionEnforcement admit only for who may update the owner's finalizers.
        {"apiGroups": ["apps"], "resources": ["deployments/finalizers"], "verbs": ["update"]},
    ]
    if platform.flink.ha:
        # Kubernetes HA: leader election and job metadata (checkpoint pointers) live in ConfigMaps.
        rules.append({"apiGroups": [""], "resources": ["configmaps"], "verbs": rw})
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": metadata(name, ns, lab, dict(platform.flink.service_account_annotations) or None),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": metadata(name, ns, lab),
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": metadata(name, ns, lab),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
        },
    ]


def render_kafka_client_config(platform: Platform, app: App) -> dict[str, Any]:
    principal = platform.principal(app.name)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(kafka_client_configmap(app.name), platform.namespace, labels("flink", app.name)),
        "data": {
            SCRIPT_KEY: assemble_script(principal, registry_identity(platform, app)),
            TEMPLATE_KEY: properties_template(platform, principal),
        },
    }


def render_flink_application(
    platform: Platform, app: App, schema_registry_url: str | None = None
) -> list[dict[str, Any]]:
    """Every object of one app: RBAC, the Kafka client template, local state (file://) and the deployment."""
    return [
        *render_rbac(platform, app),
        render_kafka_client_config(platform, app),
        *storage.render_local_state(platform, app.name),
        render_flink_deployment(platform, app, schema_registry_url),
    ]


def render_flink_applications(
    platform: Platform, schema_registry_url: str | None = None
) -> list[dict[str, Any]]:
    return [o for app in platform.apps for o in render_flink_application(platform, app, schema_registry_url)]


# --- Pulumi ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlinkApplicationArgs:
    """One app of the platform; validated against the spec before anything is created."""

    platform: Platform
    app: str
    schema_registry_url: str | None = None
    _app: App = field(init=False, repr=False)

    def __post_init__(self) -> None:
        apps = {a.name: a for a in self.platform.apps}
        if self.app not in apps:
            raise ValueError(f"no app {self.app!r} in the catalog; apps: {', '.join(sorted(apps)) or 'none'}")
        object.__setattr__(self, "_app", apps[self.app])
        try:
            self.platform.principal(self.app)
        except KeyError:
            raise ValueError(f"app {self.app!r} has no principal of the same name") from None
        # Storage and flow rules are the config loader's (reported before anything is built); a hand-built
        # Platform gets the same verdicts here.
        found = storage.problems(self.platform.flink)
        if found:
            raise ValueError(f"app {self.app!r}: " + "; ".join(found))
        app_flows(self.platform, self._app)
        self.platform.flink.image_ref(self.app)  # raises KeyError without a pinned image

    @property
    def spec(self) -> App:
        return self._app


class FlinkApplication(pulumi.ComponentResource):
    """One PyFlink app: its ServiceAccount and Role, Kafka client template and `FlinkDeployment`."""

    deployment: pulumi.Resource
    """The `FlinkDeployment` custom resource."""
    job_name: pulumi.Output[str]
    """Name of the FlinkDeployment (the app's name)."""
    image: pulumi.Output[str]
    """The pinned image the app runs."""

    def __init__(
        self, name: str, args: FlinkApplicationArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("headwater:flink:FlinkApplication", name, None, opts)
        rendered = render_flink_application(args.platform, args.spec, args.schema_registry_url)
        parts = [
            create_object(
                f"{name}-{o['kind'].lower()}-{o['metadata']['name']}", o, pulumi.ResourceOptions(parent=self)
            )
            for o in rendered
            if o["kind"] != "FlinkDeployment"
        ]
        (deployment,) = (o for o in rendered if o["kind"] == "FlinkDeployment")
        self.deployment = create_object(
            f"{name}-flinkdeployment", deployment, pulumi.ResourceOptions(parent=self, depends_on=parts)
        )
        self.job_name = pulumi.Output.from_input(args.app)
        self.image = pulumi.Output.from_input(deployment["spec"]["image"])
        self.register_outputs({"job_name": self.job_name, "image": self.image})
