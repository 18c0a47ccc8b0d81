"""The Flink Kubernetes Operator, from its pinned Helm chart, in the operators' namespace.

The chart's image tag defaults to `latest`; here repository and tag are set from `headwater.versions`. The
admission webhook is off unless asked for (it needs cert-manager). The operator's pod satisfies the
Restricted Pod Security Standard that `headwater-system` enforces, it watches only the platform's
namespaces, and the chart creates no job service account or role: each app brings its own, with the least
rights Flink's native Kubernetes integration needs (`components.flink_application`).
"""

from __future__ import annotations

from typing import Any

import pulumi

from components.k8s import HelmRelease, create_release, image_digest, restricted_container_security
from components.kafka_cluster import OPERATOR_NAMESPACE
from headwater import versions

RELEASE_NAME = "flink-kubernetes-operator"
IMAGE_REPOSITORY = "apache/flink-kubernetes-operator"
OPERATOR_USER = 9999  # the uid/gid the operator image runs as

# Operator-wide defaults for every FlinkDeployment it manages; each deployment's own flinkConfiguration
# (rendered by `components.flink_application` with the same keys) overrides them.
OPERATOR_DEFAULTS: dict[str, str] = {
    "kubernetes.operator.reconcile.interval": "15 s",
    "kubernetes.operator.observer.progress-check.interval": "5 s",
    "kubernetes.operator.savepoint.history.max.age": "7 d",
    "kubernetes.operator.savepoint.history.max.count": "10",
    "kubernetes.operator.savepoint.format.type": "CANONICAL",
    "kubernetes.operator.deployment.rollback.enabled": "false",
    "kubernetes.operator.deployment.readiness.timeout": "5 min",
    "kubernetes.operator.job.upgrade.last-state-fallback.enabled": "true",
    "kubernetes.operator.cluster.health-check.enabled": "true",
    "kubernetes.operator.jm-deployment-recovery.enabled": "true",
}


def _conf_text(conf: dict[str, str]) -> str:
    return "".join(f"{key}: {value}\n" for key, value in sorted(conf.items()))


def render_flink_operator(
    watched_namespaces: tuple[str, ...], webhook: bool = False, charts_folder: str | None = None
) -> HelmRelease:
    """The operator at a pinned chart and image, watching only `watched_namespaces`."""
    if not watched_namespaces:
        raise ValueError("the Flink operator must watch at least one namespace (an empty list means all)")
    security = restricted_container_security()
    conf = _conf_text(OPERATOR_DEFAULTS)
    values: dict[str, Any] = {
        "image": {
            "repository": IMAGE_REPOSITORY,
            "tag": versions.FLINK_OPERATOR_VERSION,
            "pullPolicy": "IfNotPresent",
            # The chart uses the digest instead of the tag when one is set (known digests only).
            **(
                {"digest": d}
                if (d := image_digest(f"{IMAGE_REPOSITORY}:{versions.FLINK_OPERATOR_VERSION}"))
                else {}
            ),
        },
        "watchNamespaces": list(watched_namespaces),
        "webhook": {"create": webhook},
        # Apps bring their own service account and role (least privilege, one per app).
        "jobServiceAccount": {"create": False},
        "rbac": {
            "create": True,
            "nodesRule": {"create": False},
            "jobRole": {"create": False},
            "jobRoleBinding": {"create": False},
        },
        "podSecurityContext": {
            "runAsNonRoot": True,
            "runAsUser": OPERATOR_USER,
            "runAsGroup": OPERATOR_USER,
            "fsGroup": OPERATOR_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "operatorSecurityContext": security,
        "webhookSecurityContext": security,
        "operatorPod": {
            "resources": {
                "requests": {"cpu": "200m", "memory": "512Mi"},
                "limits": {"cpu": "1", "memory": "512Mi"},
            },
        },
        "defaultConfiguration": {
            "create": True,
            "append": True,
            # Chart 1.15 renders both files and Flink reads flink-conf.yaml when present; the same
            # overrides go into both so whichever file the operator loads carries them.
            "flink-conf.yaml": conf,
            "config.yaml": conf,
        },
    }
    return HelmRelease(
        name=RELEASE_NAME,
        namespace=OPERATOR_NAMESPACE,
        chart=versions.FLINK_OPERATOR_CHART,
        version=versions.FLINK_OPERATOR_VERSION,
        repository=versions.FLINK_OPERATOR_HELM_REPO,
        values=values,
        charts_folder=charts_folder,
    )


class FlinkOperator(pulumi.ComponentResource):
    """The Flink Kubernetes Operator, installed from its pinned Helm chart into the operators' namespace.

    The namespace itself is created with the Strimzi operator (`components.kafka_cluster`); pass the
    resources that create it in `opts.depends_on`.
    """

    release: pulumi.Output[str]
    """Name of the Helm release."""

    def __init__(
        self,
        name: str,
        watched_namespaces: tuple[str, ...],
        webhook: bool = False,
        opts: pulumi.ResourceOptions | None = None,
        charts_folder: str | None = None,
    ) -> None:
        super().__init__("headwater:flink:FlinkOperator", name, None, opts)
        # What the component waits for (the namespaces the chart writes into), the release waits for too.
        deps = list(opts.depends_on) if opts and isinstance(opts.depends_on, list) else []
        self.helm_release = create_release(
            f"{name}-release",
            render_flink_operator(watched_namespaces, webhook, charts_folder),
            pulumi.ResourceOptions(parent=self, depends_on=deps),
        )
        self.release = self.helm_release.name
        self.register_outputs({"release": self.release})
