"""Rules for plain Kubernetes objects and Helm releases: pinned images, restricted pods, no stray load balancers.

Pods are found wherever this platform declares them: workloads (Deployment & co.), the Flink operator's
pod templates in a `FlinkDeployment`, and the values of the operator Helm charts. The pods the operators
create themselves are judged through the operators' settings (`k8s-operator-pod-security`): what the
Strimzi cluster operator's pod security provider gives Kafka's pods, and the security contexts the
Flink operator chart and Strimzi's templates set.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from policies import flink_rules, strimzi_rules
from policies.rulebook import (
    ALLOW_LOAD_BALANCER_PROPERTY,
    POD_SECURITY_LEVELS,
    POD_SECURITY_PROPERTY,
    Context,
    ResourceType,
    Rule,
    as_int,
    dig,
    image_problem,
    is_true,
    items,
    mapping,
    tag_problem,
    walk,
)

HELM_RELEASE = ResourceType("helm.sh", "v3", "Release")
WORKLOADS: Mapping[tuple[str, str], tuple[str, ...]] = {
    # (group, kind) -> path to the pod spec
    ("core", "Pod"): ("spec",),
    ("apps", "Deployment"): ("spec", "template", "spec"),
    ("apps", "StatefulSet"): ("spec", "template", "spec"),
    ("apps", "DaemonSet"): ("spec", "template", "spec"),
    ("apps", "ReplicaSet"): ("spec", "template", "spec"),
    ("batch", "Job"): ("spec", "template", "spec"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template", "spec"),
}

# Charts whose image would float unless a value pins it: chart name -> (value path, how to pin it).
CHART_IMAGE_PINS: Mapping[str, tuple[tuple[str, ...], ...]] = {
    "strimzi-kafka-operator": (("defaultImageTag",),),
    "flink-kubernetes-operator": (("image", "tag"), ("image", "digest")),  # chart default: tag latest
}
# Charts whose pods are not restricted by default: chart name -> (pod context, container contexts).
CHART_POD_SECURITY: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "flink-kubernetes-operator": (
        "podSecurityContext",
        ("operatorSecurityContext", "webhookSecurityContext"),
    ),
}


def _type(resource_type: str) -> ResourceType | None:
    return ResourceType.parse(resource_type)


def _is_release(resource_type: str) -> bool:
    return _type(resource_type) == HELM_RELEASE


def _chart_name(props: Mapping[str, Any]) -> str:
    return str(props.get("chart") or "").rstrip("/").rsplit("/", 1)[-1]


def _release_name(props: Mapping[str, Any]) -> str:
    return f"Helm release {props.get('name') or '?'} (chart {_chart_name(props) or '?'})"


def _pod_spec(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any] | None:
    t = _type(resource_type)
    path = WORKLOADS.get((t.group, t.kind)) if t else None
    return mapping(dig(props, *path)) if path else None


def _containers(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [mapping(c) for key in ("initContainers", "containers") for c in items(pod.get(key))]


# --- pinned images -----------------------------------------------------------------------------------


def _pinned_images(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[str]:
    if _is_release(resource_type):
        yield from _release_images(props)
        return
    pod = _pod_spec(resource_type, props)
    if pod is not None:
        kind = props.get("kind") or resource_type.rsplit(":", 1)[-1]
        for c in _containers(pod):
            why = image_problem(c.get("image"))
            if why:
                yield (
                    f"{kind} {dig(props, 'metadata', 'name')}: container {c.get('name')} image "
                    f"{c.get('image')!r} {why}: pin a version tag or a digest (headwater/versions.py)"
                )
        return
    t = _type(resource_type)
    if t is None or "." not in t.group or flink_rules.is_flink_deployment(resource_type):
        return  # FlinkDeployment images are judged by flink-pinned-versions
    for path, key, value in walk(props.get("spec"), "spec"):
        if key == "image" and isinstance(value, str) and (why := image_problem(value)):
            yield (
                f"{t.kind} {dig(props, 'metadata', 'name')}: {path} {value!r} {why}: pin a version tag or a "
                "digest (headwater/versions.py)"
            )


def _release_images(props: Mapping[str, Any]) -> Iterator[str]:
    where = _release_name(props)
    if not str(props.get("version") or "").strip():
        yield f"{where} has no chart version: pin it (headwater/versions.py), or every install may differ"
    values = mapping(props.get("values"))
    pins = CHART_IMAGE_PINS.get(_chart_name(props))
    if pins and not any(isinstance(dig(values, *p), str) and dig(values, *p).strip() for p in pins):
        shown = " or ".join("values." + ".".join(p) for p in pins)
        yield f"{where} does not pin its image: set {shown} to a version (headwater/versions.py)"
    for path, key, value in walk(values, "values"):
        if key == "image" and isinstance(value, str) and (why := image_problem(value)):
            yield f"{where}: {path} {value!r} {why}: pin a version tag or a digest"
        elif key == "image" and isinstance(value, Mapping) and "repository" in value and not pins:
            if not any(isinstance(value.get(k), str) and value.get(k) for k in ("tag", "digest")):
                yield f"{where}: {path} names a repository without a tag or digest: set {path}.tag"
        elif key in ("tag", "imageTag", "defaultImageTag") and (why := _set_tag_problem(value)):
            yield f"{where}: {path} {why}: set a version tag"


def _set_tag_problem(value: Any) -> str | None:
    """Only a tag that is written down can be wrong here; an empty one falls back to the chart's pin."""
    return tag_problem(value) if isinstance(value, str) and value.strip() else None


# --- restricted pods ---------------------------------------------------------------------------------


def _pod_problems(pod: Mapping[str, Any], where: str) -> Iterator[str]:
    pod_sc = mapping(pod.get("securityContext"))
    pod_non_root = is_true(pod_sc.get("runAsNonRoot"))
    if as_int(pod_sc.get("runAsUser")) == 0:
        yield f"{where}: securityContext.runAsUser is 0 (root): use a non-zero user and runAsNonRoot: true"
    for c in _containers(pod):
        sc = mapping(c.get("securityContext"))
        name = c.get("name")
        non_root = is_true(sc.get("runAsNonRoot")) or (pod_non_root and sc.get("runAsNonRoot") is None)
        if as_int(sc.get("runAsUser")) == 0:
            yield f"{where}: container {name} runs as user 0 (root): use a non-zero runAsUser"
        elif not non_root:
            yield (
                f"{where}: container {name} may run as root: set securityContext.runAsNonRoot: true "
                "(on the pod or the container)"
            )
        if sc.get("allowPrivilegeEscalation") is not False:
            yield f"{where}: container {name} does not set securityContext.allowPrivilegeEscalation: false"
        if is_true(sc.get("privileged")):
            yield f"{where}: container {name} is privileged: remove securityContext.privileged"


def _pod_security(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[str]:
    name = dig(props, "metadata", "name")
    if _is_release(resource_type):
        yield from _release_pod_security(props)
    elif flink_rules.is_flink_deployment(resource_type):
        # The JobManager and TaskManager pods mostly share one template: say each problem once.
        by_role: dict[str, list[str]] = {}
        for role, template in flink_rules.flink_pod_templates(props):
            pod = mapping(template.get("spec"))
            found = by_role.setdefault(role, [])
            if flink_rules.MAIN_CONTAINER not in [c.get("name") for c in _containers(pod)]:
                found.append(
                    f"@: the pod template has no {flink_rules.MAIN_CONTAINER} container: add it to "
                    "spec.podTemplate with securityContext runAsNonRoot: true and "
                    "allowPrivilegeEscalation: false"
                )
            found += _pod_problems(pod, "@")
        for message in dict.fromkeys(m for found in by_role.values() for m in found):
            roles = " and ".join(r for r, found in by_role.items() if message in found)
            yield message.replace("@", f"FlinkDeployment {name} {roles} pod", 1)
    elif (workload_pod := _pod_spec(resource_type, props)) is not None:
        yield from _pod_problems(
            workload_pod, f"{props.get('kind') or resource_type.rsplit(':', 1)[-1]} {name}"
        )


def _release_pod_security(props: Mapping[str, Any]) -> Iterator[str]:
    where = _release_name(props)
    values = mapping(props.get("values"))
    required = CHART_POD_SECURITY.get(_chart_name(props))
    if required:
        pod_key, container_keys = required
        if not is_true(dig(values, pod_key, "runAsNonRoot")):
            yield f"{where}: set values.{pod_key}.runAsNonRoot: true"
        for key in container_keys:
            if key.startswith("webhook") and dig(values, "webhook", "create") is False:
                continue
            if dig(values, key, "allowPrivilegeEscalation") is not False:
                yield f"{where}: set values.{key}.allowPrivilegeEscalation: false"
    for path, key, value in walk(values, "values"):
        if not (
            isinstance(key, str) and key.lower().endswith("securitycontext") and isinstance(value, Mapping)
        ):
            continue
        if value.get("runAsNonRoot") is False or as_int(value.get("runAsUser")) == 0:
            yield f"{where}: {path} lets the pod run as root: set runAsNonRoot: true and a non-zero user"
        if is_true(value.get("allowPrivilegeEscalation")):
            yield f"{where}: {path}.allowPrivilegeEscalation is true: set it to false"
        if is_true(value.get("privileged")):
            yield f"{where}: {path}.privileged is true: remove it"


# --- operators: the pods they create must pass the namespaces' Pod Security admission ------------------

STRIMZI_CHART = "strimzi-kafka-operator"
FLINK_CHART = "flink-kubernetes-operator"
STRIMZI_PROVIDER_ENV = "STRIMZI_POD_SECURITY_PROVIDER_CLASS"
# Strimzi 1.2.0 reads the shortcut (any case) or the class name; its default is the baseline provider.
STRIMZI_RESTRICTED = ("restricted", "io.strimzi.plugin.security.profiles.impl.RestrictedPodSecurityProvider")
# Strimzi custom resources' template keys whose container securityContext *replaces* the provider's one.
STRIMZI_KINDS = ("Kafka", "KafkaNodePool")


def restricted_problems(sc: Any, pod_sc: Any = None) -> list[str]:
    """What a container securityContext (with its pod's) lacks for the Restricted Pod Security Standard."""
    sc, pod_sc = mapping(sc), mapping(pod_sc)
    out: list[str] = []
    if sc.get("allowPrivilegeEscalation") is not False:
        out.append("allowPrivilegeEscalation: false")
    if "ALL" not in [str(c) for c in items(dig(sc, "capabilities", "drop"))]:
        out.append("capabilities.drop: [ALL]")
    added = [str(c) for c in items(dig(sc, "capabilities", "add")) if str(c) != "NET_BIND_SERVICE"]
    if added:
        out.append(f"no capabilities.add beyond NET_BIND_SERVICE (has {added})")
    non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
    if not is_true(non_root) or as_int(sc.get("runAsUser", pod_sc.get("runAsUser"))) == 0:
        out.append("runAsNonRoot: true (and no runAsUser 0)")
    seccomp = dig(sc, "seccompProfile", "type") or dig(pod_sc, "seccompProfile", "type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        out.append("seccompProfile.type: RuntimeDefault")
    if is_true(sc.get("privileged")):
        out.append("no privileged")
    return out


def _env_value(envs: Any, name: str) -> str | None:
    for env in items(envs):
        if mapping(env).get("name") == name:
            value = mapping(env).get("value")
            return str(value) if value is not None else None
    return None


def _operator_pod_security(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[str]:
    if ctx.pod_security_standard != "restricted":
        return  # baseline: Strimzi's default provider and the charts' defaults already pass
    t = _type(resource_type)
    if _is_release(resource_type):
        yield from _operator_release(props)
    elif t is not None and t.group == strimzi_rules.GROUP and t.kind in STRIMZI_KINDS:
        name = dig(props, "metadata", "name")
        for path, key, value in walk(props.get("spec"), "spec"):
            # A template's container securityContext replaces what the restricted provider would set.
            if key == "securityContext" and ".template." in f".{path}" and "ontainer." in path:
                missing = restricted_problems(value)
                if missing:
                    yield (
                        f"{t.kind} {name}: {path} replaces the restricted context Strimzi's pod security "
                        f"provider sets, and lacks {'; '.join(missing)}: remove it, or complete it"
                    )


def _operator_release(props: Mapping[str, Any]) -> Iterator[str]:
    where = _release_name(props)
    values = mapping(props.get("values"))
    chart = _chart_name(props)
    if chart == STRIMZI_CHART:
        provider = _env_value(values.get("extraEnvs"), STRIMZI_PROVIDER_ENV)
        if provider is None or provider.strip().lower() not in [v.lower() for v in STRIMZI_RESTRICTED]:
            yield (
                f"{where}: the cluster operator uses the {provider or 'default (baseline)'} pod security "
                "provider, so the Kafka, init, entity operator, Kafka Exporter and Cruise Control containers it "
                "creates get no restricted security context and the namespace's restricted Pod Security "
                f"admission refuses them: set values.extraEnvs [{{name: {STRIMZI_PROVIDER_ENV}, value: "
                "restricted}]"
            )
        if "securityContext" in values:  # the chart's default is restricted; one set here replaces it
            missing = restricted_problems(values.get("securityContext"), values.get("podSecurityContext"))
            if missing:
                yield f"{where}: values.securityContext lacks {'; '.join(missing)}"
    elif chart == FLINK_CHART:
        pod_sc = values.get("podSecurityContext")
        keys = ["operatorSecurityContext"]
        if dig(values, "webhook", "create") is not False:
            keys.append("webhookSecurityContext")
        for key in keys:
            missing = restricted_problems(values.get(key), pod_sc)
            if missing:
                yield (
                    f"{where}: the operator pod's values.{key} (with values.podSecurityContext) lacks "
                    f"{'; '.join(missing)}, so the restricted namespace refuses the pod"
                )


# --- load balancers ----------------------------------------------------------------------------------


def _load_balancers(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[str]:
    if ctx.allow_load_balancer:
        return
    fix = (
        "use ClusterIP behind the ingress, or allow it for the stack with headwater:allowLoadBalancer: true "
        "in stacks/Pulumi.<stack>.yaml"
    )
    t = _type(resource_type)
    name = dig(props, "metadata", "name")
    if t == ResourceType("core", "v1", "Service") and dig(props, "spec", "type") == "LoadBalancer":
        yield f"Service {name} is of type LoadBalancer (a public address): {fix}"
    elif t is not None and t.group == strimzi_rules.GROUP and t.kind == "Kafka":
        for i, raw in enumerate(items(dig(props, "spec", "kafka", "listeners"))):
            if mapping(raw).get("type") == "loadbalancer":
                yield f"Kafka {name}: spec.kafka.listeners[{i}] is of type loadbalancer: {fix}"
    elif flink_rules.is_flink_deployment(resource_type):
        key = "kubernetes.rest-service.exposed.type"
        if dig(props, "spec", "flinkConfiguration", key) == "LoadBalancer":
            yield f"FlinkDeployment {name}: flinkConfiguration {key} is LoadBalancer: {fix}"
    elif _is_release(resource_type):
        for path, key, value in walk(props.get("values"), "values"):
            if key == "type" and value == "LoadBalancer":
                yield f"{_release_name(props)}: {path} is LoadBalancer: {fix}"


RULES: tuple[Rule, ...] = (
    Rule(
        name="k8s-pinned-images",
        description="Operator, registry and workload images are pinned (a version tag or digest, not latest).",
        applies=lambda token: _type(token) is not None,
        check=_pinned_images,
    ),
    Rule(
        name="k8s-pod-security",
        description="Pods run as non-root without privilege escalation (the Restricted Pod Security Standard).",
        applies=lambda token: _type(token) is not None,
        check=_pod_security,
    ),
    Rule(
        name="k8s-operator-pod-security",
        description=(
            "The operators create pods that pass the namespaces' Pod Security level: Strimzi's restricted pod "
            "security provider, restricted Flink operator and Strimzi template security contexts."
        ),
        applies=lambda token: _type(token) is not None,
        check=_operator_pod_security,
        config_properties={
            POD_SECURITY_PROPERTY: {
                "type": "string",
                "enum": list(POD_SECURITY_LEVELS),
                "description": "The Pod Security level the platform namespaces enforce (default: restricted).",
            }
        },
    ),
    Rule(
        name="k8s-no-load-balancer",
        description="No LoadBalancer Service unless the stack allows it (headwater:allowLoadBalancer).",
        applies=lambda token: _type(token) is not None,
        check=_load_balancers,
        config_properties={
            ALLOW_LOAD_BALANCER_PROPERTY: {
                "type": "boolean",
                "description": "Allow LoadBalancer services (default: the stack's headwater:allowLoadBalancer).",
            }
        },
    ),
)
