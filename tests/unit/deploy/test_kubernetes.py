"""deploy/kubernetes: the kustomize base and the production overlay, rendered without a
cluster, checked offline against Kubernetes' schemas and against what the code does.

No kustomize binary is needed: `render` below applies the few kustomize features the
manifests use (resources, namespace, images, patches, secretGenerator without name
hashes) and refuses any other; where `kubectl` exists, its own `kubectl kustomize` must
give the same resources. Built-in kinds are validated with kubernetes-validate (strict,
its bundled schemas for one fixed Kubernetes version); the custom resources (Strimzi's
KafkaTopic and KafkaUser, the Prometheus Operator's ServiceMonitor) by the assertions
here. The cross-checks: topics equal storemon/kafka/topics.py's specs, each Kafka user's
ACLs the topics and groups its service's code uses, probes the routes each service
serves on the port it listens on, resources BENCHMARKS.md's measured RSS, settings
variables storemon's own, every Secret and ConfigMap referenced exists.
"""

from __future__ import annotations

import base64
import copy
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

from storemon.cli import build_parser
from storemon.config import Settings, SettingsError
from storemon.kafka import topics as topics_module
from storemon.kafka.topics import (
    CHANGELOG_TOPICS,
    COPARTITIONED_TOPICS,
    INPUT_TOPICS,
    TOPIC_REPORT_EVENTS,
    TOPIC_REPORT_REQUESTS,
    TOPIC_REPORT_TASKS,
    TOPIC_SPECS,
    TOPIC_STATUS,
    TOPIC_STATUS_DLQ,
    changelog_topic,
    reader_group,
    reporter_group,
    state_reader_group,
    worker_app_id,
)
from storemon.state import layout
from storemon.state.layout import NEWEST_POLL_TABLE

REPO = Path(__file__).resolve().parents[3]
KUBERNETES = REPO / "deploy" / "kubernetes"
LAYERS = {"base": Path("base"), "production": Path("overlays") / "production"}
#: The Kubernetes version whose schemas every built-in resource must satisfy.
KUBERNETES_VERSION = "1.32.0"
CUSTOM_KINDS = {
    "KafkaTopic": "kafka.strimzi.io/v1beta2",
    "KafkaUser": "kafka.strimzi.io/v1beta2",
    "ServiceMonitor": "monitoring.coreos.com/v1",
}
CLUSTER_SCOPED_KINDS = frozenset({"Namespace"})
STRIMZI_CLUSTER_LABEL = "strimzi.io/cluster"
SERVICES = ("api", "worker", "reporter")
#: The Kafka security settings the services read (besides KAFKA_BOOTSTRAP_SERVERS).
KAFKA_VARIABLES = frozenset({
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD_FILE",
    "KAFKA_SSL_CA_FILE",
    "KAFKA_SSL_CERT_FILE",
    "KAFKA_SSL_KEY_FILE",
})
OTHER_VARIABLES = frozenset({"DATABASE_URL"})
#: Variables the pod's own fields fill (the downward API), for others to refer to as
#: $(NAME): the worker's address, in STOREMON_WORKER_URL.
POD_FIELD_VARIABLES = {"POD_IP": "status.podIP"}
#: Where each service serves /healthz (the setting naming its port) and the source
#: file that declares its HTTP routes, with the pattern of a route there.
PORT_SETTINGS = {
    "api": "STOREMON_API_PORT",
    "worker": "STOREMON_WORKER_METRICS_PORT",
    "reporter": "STOREMON_REPORTER_METRICS_PORT",
}
ROUTE_SOURCES = {
    "api": (REPO / "services" / "api" / "health.py", r'add_get\("(/[^"]*)"'),
    "reporter": (REPO / "services" / "reporter" / "metrics.py", r'add_get\("(/[^"]*)"'),
    "worker": (REPO / "services" / "ingest" / "worker.py", r'@app\.page\("(/[^"]*)"\)'),
}
#: The source files of what each service does with Kafka (its own modules, and the
#: shared readers it runs), for the topics they name.
KAFKA_SOURCES = {
    "api": sorted((REPO / "services" / "api").glob("*.py")),
    "worker": [REPO / "services" / "ingest" / name for name in ("worker.py", "parts.py")],
    "reporter": [
        *sorted((REPO / "services" / "reporter").glob("*.py")),
        REPO / "storemon" / "state" / "newest.py",
    ],
}
STRIMZI_OPERATIONS = frozenset({
    "Read", "Write", "Create", "Delete", "Alter", "Describe", "ClusterAction",
    "AlterConfigs", "DescribeConfigs", "IdempotentWrite", "All",
})
#: What every user may do with every topic: each service checks them all as it starts.
TOPIC_CHECK_OPERATIONS = frozenset({"Describe", "DescribeConfigs"})

Resource = dict[str, Any]


# ---------------------------------------------------------------------------------------
# the renderer: only the kustomize features the manifests use
# ---------------------------------------------------------------------------------------

KUSTOMIZATION_KEYS = frozenset({
    "apiVersion", "kind", "resources", "namespace", "images", "generatorOptions",
    "secretGenerator", "patches",
})


def render(directory: Path) -> list[Resource]:
    """The resources `kubectl kustomize directory` gives, for the features used here."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - KUSTOMIZATION_KEYS
    assert not unsupported, f"{directory}: the test's renderer lacks {sorted(unsupported)}"
    resources: list[Resource] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            resources += render(path)
        else:
            resources += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    generators = kustomization.get("secretGenerator", [])
    if generators:
        # Names stay as written, so references need no rewriting.
        assert kustomization.get("generatorOptions", {}).get("disableNameSuffixHash") is True
    for generator in generators:
        generate_secret(resources, directory, generator)
    for patch in kustomization.get("patches", []):
        apply_patch(resources, directory, patch)
    namespace = kustomization.get("namespace")
    if namespace:
        for resource in resources:
            if resource["kind"] not in CLUSTER_SCOPED_KINDS:
                resource["metadata"]["namespace"] = namespace
    for image in kustomization.get("images", []):
        set_image(resources, image)
    return resources


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def generate_secret(resources: list[Resource], directory: Path, generator: dict) -> None:
    unsupported = set(generator) - {"name", "behavior", "literals", "files", "type"}
    assert not unsupported, f"secretGenerator: the test's renderer lacks {sorted(unsupported)}"
    data: dict[str, str] = {}
    for literal in generator.get("literals", []):
        key, _, value = literal.partition("=")
        data[key] = b64(value.encode())
    for entry in generator.get("files", []):
        key, named, path = entry.partition("=")
        if not named:
            key, path = Path(entry).name, entry
        data[key] = b64((directory / path).read_bytes())
    name = generator["name"]
    existing = [r for r in resources if r["kind"] == "Secret" and r["metadata"]["name"] == name]
    behavior = generator.get("behavior", "create")
    if behavior == "create":
        assert not existing, f"Secret {name} generated twice"
        resources.append({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "type": generator.get("type", "Opaque"),
            "data": data,
        })
    else:
        assert len(existing) == 1, f"secretGenerator {behavior}: no Secret {name} to change"
        assert behavior in ("replace", "merge"), behavior
        if behavior == "replace":
            existing[0]["data"] = data
        else:
            existing[0].setdefault("data", {}).update(data)


def matches(resource: Resource, target: dict) -> bool:
    unsupported = set(target) - {"group", "version", "kind", "name", "labelSelector"}
    assert not unsupported, f"patch target: the test's renderer lacks {sorted(unsupported)}"
    group, _, version = resource["apiVersion"].rpartition("/")
    labels = resource["metadata"].get("labels", {})
    selector = dict(
        term.split("=", 1) for term in target.get("labelSelector", "").split(",") if term
    )
    return (
        target.get("group", group) == group
        and target.get("version", version) == version
        and target.get("kind", resource["kind"]) == resource["kind"]
        and target.get("name", resource["metadata"]["name"]) == resource["metadata"]["name"]
        and all(labels.get(key) == value for key, value in selector.items())
    )


def apply_patch(resources: list[Resource], directory: Path, entry: dict) -> None:
    text = (directory / entry["path"]).read_text() if "path" in entry else entry["patch"]
    body = yaml.safe_load(text)
    if isinstance(body, list):  # a JSON 6902 patch
        targets = [r for r in resources if matches(r, entry["target"])]
        assert targets, f"patch matches nothing: {entry['target']}"
        for resource in targets:
            for operation in body:
                json6902(resource, operation)
        return
    target = entry.get("target") or {"kind": body["kind"], "name": body["metadata"]["name"]}
    targets = [r for r in resources if matches(r, target)]
    assert targets, f"patch matches nothing: {target}"
    for resource in targets:
        resource.update(strategic_merge(resource, body))


def strategic_merge(base: Any, patch: Any) -> Any:
    """A strategic merge patch as far as used: maps merged key by key, lists of named
    items (containers, env, volumes) merged by name, anything else replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = strategic_merge(base[key], value) if key in base else value
        return merged
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(item, dict) and "name" in item for item in [*base, *patch])
    ):
        merged_items = [copy.deepcopy(item) for item in base]
        by_name = {item["name"]: index for index, item in enumerate(merged_items)}
        for item in patch:
            if item["name"] in by_name:
                index = by_name[item["name"]]
                merged_items[index] = strategic_merge(merged_items[index], item)
            else:
                merged_items.append(item)
        return merged_items
    return copy.deepcopy(patch)


def json6902(resource: Resource, operation: dict) -> None:
    *parents, last = [
        part.replace("~1", "/").replace("~0", "~") for part in operation["path"].split("/")[1:]
    ]
    node: Any = resource
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    op = operation["op"]
    assert op in ("add", "replace", "remove"), f"JSON patch op {op}: not in the renderer"
    if isinstance(node, list):
        index = len(node) if last == "-" else int(last)
        if op == "remove":
            del node[index]
        elif op == "replace":
            node[index] = operation["value"]
        else:
            node.insert(index, operation["value"])
    elif op == "remove":
        del node[last]
    else:
        assert op == "add" or last in node, f"replace of a missing {operation['path']}"
        node[last] = operation["value"]


def set_image(resources: list[Resource], image: dict) -> None:
    for _, _, container in all_containers(resources):
        name, tag = split_image(container["image"])
        if name == image["name"]:
            new_name = image.get("newName", name)
            new_tag = (
                f"@{image['digest']}" if "digest" in image
                else f":{image['newTag']}" if "newTag" in image else tag
            )
            container["image"] = f"{new_name}{new_tag}"


def split_image(image: str) -> tuple[str, str]:
    """`name` and its `:tag` or `@digest` (empty when it has neither)."""
    if "@" in image:
        name, _, digest = image.partition("@")
        return name, f"@{digest}"
    name, colon, tag = image.rpartition(":")
    if colon and "/" not in tag:
        return name, f":{tag}"
    return image, ""


# ---------------------------------------------------------------------------------------
# rendered layers and what they hold
# ---------------------------------------------------------------------------------------


def production_secret_files() -> list[Path]:
    """The overlay's secret files its secretGenerator reads (gitignored), by path."""
    overlay = KUBERNETES / LAYERS["production"]
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    return [
        overlay / entry.partition("=")[2]
        for generator in kustomization.get("secretGenerator", [])
        for entry in generator.get("files", [])
    ]


@pytest.fixture(scope="module")
def source_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/kubernetes, with every secret file of the overlay its committed example:
    whatever real secrets this checkout has never reach the tests."""
    tree = tmp_path_factory.mktemp("kubernetes") / "kubernetes"
    real = {path.relative_to(KUBERNETES) for path in production_secret_files()}
    shutil.copytree(
        KUBERNETES,
        tree,
        ignore=lambda folder, names: [
            name for name in names
            if (Path(folder) / name).relative_to(KUBERNETES) in real
        ],
    )
    for relative in real:
        example = KUBERNETES / relative.with_name(f"{relative.name}.example")
        shutil.copyfile(example, tree / relative)
    return tree


@dataclass
class Layer:
    name: str
    resources: list[Resource]

    def of_kind(self, kind: str) -> list[Resource]:
        return [r for r in self.resources if r["kind"] == kind]

    def named(self, kind: str, name: str) -> Resource:
        found = [r for r in self.of_kind(kind) if r["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.name}: {len(found)} {kind} named {name}"
        return found[0]

    def deployment(self, service: str) -> Resource:
        found = [d for d in self.of_kind("Deployment") if service_of(d) == service]
        assert len(found) == 1, f"{self.name}: {len(found)} Deployments run `storemon {service}`"
        return found[0]

    def environment(self, container: dict) -> dict[str, str]:
        """The container's variables: its ConfigMaps' (envFrom), then its own env."""
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            assert set(source) == {"configMapRef"}, "only ConfigMaps feed envFrom"
            env.update(self.named("ConfigMap", source["configMapRef"]["name"])["data"])
        for variable in container.get("env", []):
            name = variable["name"]
            if name in POD_FIELD_VARIABLES:
                field = variable["valueFrom"]["fieldRef"]["fieldPath"]
                assert field == POD_FIELD_VARIABLES[name], name
                continue
            assert "value" in variable, f"{name}: a plain value (secrets are files)"
            env[name] = variable["value"]
        return env

    def secret_file(self, pod: dict, container: dict, path: str) -> tuple[str, bytes]:
        """The Secret behind a file the container reads, and the file's content."""
        volume = mounted_volume(pod, container, path)
        assert "secret" in volume, f"{path} is not on a Secret volume"
        name = volume["secret"]["secretName"]
        key = path.rsplit("/", 1)[1]
        data = self.named("Secret", name).get("data", {})
        assert key in data, f"{path}: Secret {name} has no key {key}"
        return name, base64.b64decode(data[key])

    def topic_partitions(self) -> dict[str, int]:
        return {t["spec"]["topicName"]: t["spec"]["partitions"] for t in self.of_kind("KafkaTopic")}


def service_of(deployment: Resource) -> str:
    """The storemon subcommand a Deployment's main container runs."""
    (container,) = pod_spec(deployment)["containers"]
    return str(container["command"][1])


def pod_spec(deployment: Resource) -> dict:
    return deployment["spec"]["template"]["spec"]


def all_containers(resources: list[Resource]) -> Iterator[tuple[Resource, dict, dict]]:
    """(workload, pod spec, container) of every container and init container."""
    for resource in resources:
        if resource["kind"] == "Deployment":
            pod = pod_spec(resource)
            for container in [*pod.get("initContainers", []), *pod["containers"]]:
                yield resource, pod, container


def mounted_volume(pod: dict, container: dict, path: str) -> dict:
    """The volume a path of the container lies on (the longest mount path wins)."""
    mounts = [
        mount for mount in container.get("volumeMounts", [])
        if path.startswith(mount["mountPath"].rstrip("/") + "/")
    ]
    assert mounts, f"{container['name']}: nothing mounted at {path}"
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    (volume,) = [v for v in pod.get("volumes", []) if v["name"] == mount["name"]]
    return {**volume, "readOnly": mount.get("readOnly", False)}


@pytest.fixture(scope="module", params=sorted(LAYERS))
def layer(request: pytest.FixtureRequest, source_tree: Path) -> Layer:
    return Layer(request.param, render(source_tree / LAYERS[request.param]))


@pytest.fixture(scope="module")
def base(source_tree: Path) -> Layer:
    return Layer("base", render(source_tree / LAYERS["base"]))


@pytest.fixture(scope="module")
def production(source_tree: Path) -> Layer:
    return Layer("production", render(source_tree / LAYERS["production"]))


def default_settings() -> Settings:
    """Settings with the default (empty) topic prefix: the deployment's names."""
    return Settings(
        kafka_bootstrap_servers="kafka:9092",
        database_url="postgresql://storemon@db/storemon",
        api_port=8080,
        topic_prefix="",
        topic_partitions=4,
        topic_replication_factor=1,
        state_dir=Path("/var/lib/storemon"),
        ingest_token=None,
    )


# ---------------------------------------------------------------------------------------
# rendering and schemas
# ---------------------------------------------------------------------------------------


def comparable(resources: list[Resource]) -> dict[tuple[str, str, str], Resource]:
    """Resources by kind, namespace and name, Secret data decoded (kustomize wraps it)."""
    out = {}
    for resource in copy.deepcopy(resources):
        if resource["kind"] == "Secret":
            resource["data"] = {
                key: base64.b64decode(value) for key, value in resource.get("data", {}).items()
            }
        metadata = resource["metadata"]
        out[(resource["kind"], metadata.get("namespace", ""), metadata["name"])] = resource
    return out


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_kubectl_kustomize_renders_what_the_tests_render(source_tree: Path, name: str) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("no kubectl here: the tests' own renderer stands alone")
    result = subprocess.run(
        [kubectl, "kustomize", str(source_tree / LAYERS[name])],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    theirs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert comparable(theirs) == comparable(render(source_tree / LAYERS[name]))


def test_every_builtin_resource_is_valid_for_the_kubernetes_version(layer: Layer) -> None:
    for resource in layer.resources:
        where = f"{layer.name}: {resource['kind']} {resource['metadata']['name']}"
        try:
            kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        except SchemaNotFoundError:
            assert CUSTOM_KINDS.get(resource["kind"]) == resource["apiVersion"], (
                f"{where}: no schema for {resource['apiVersion']}"
            )
        except ValidationError as exc:
            pytest.fail(f"{where}: {exc.message}")


def test_the_layers_hold_every_kind_the_deployment_needs(layer: Layer) -> None:
    kinds = {resource["kind"] for resource in layer.resources}
    assert kinds >= {
        "ConfigMap", "Secret", "Deployment", "Service", "PodDisruptionBudget",
        "ServiceMonitor", "KafkaTopic", "KafkaUser",
    }
    assert not kinds & {"Ingress", "StatefulSet", "DaemonSet"}
    assert {service_of(d) for d in layer.of_kind("Deployment")} == set(SERVICES)
    names = [(r["kind"], r["metadata"]["name"]) for r in layer.resources]
    assert len(names) == len(set(names)), "a resource is given twice"


def test_custom_resources_have_their_kinds_required_fields(layer: Layer) -> None:
    dns_name = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
    clusters = set()
    for resource in layer.resources:
        kind = resource["kind"]
        if kind not in CUSTOM_KINDS:
            continue
        where = f"{kind} {resource['metadata']['name']}"
        assert resource["apiVersion"] == CUSTOM_KINDS[kind], where
        assert dns_name.fullmatch(resource["metadata"]["name"]), where
        spec = resource["spec"]
        if kind == "KafkaTopic":
            clusters.add(resource["metadata"]["labels"][STRIMZI_CLUSTER_LABEL])
            assert set(spec) <= {"topicName", "partitions", "replicas", "config"}, where
            assert isinstance(spec["partitions"], int) and spec["partitions"] >= 1, where
            assert isinstance(spec["replicas"], int) and spec["replicas"] >= 1, where
            assert all(isinstance(v, str) for v in spec["config"].values()), where
        elif kind == "KafkaUser":
            clusters.add(resource["metadata"]["labels"][STRIMZI_CLUSTER_LABEL])
            assert set(spec) <= {"authentication", "authorization", "quotas", "template"}, where
            assert spec["authentication"]["type"] == "scram-sha-512", where
            reference = spec["authentication"]["password"]["valueFrom"]["secretKeyRef"]
            assert set(reference) == {"name", "key"}, where
            assert spec["authorization"]["type"] == "simple", where
            for acl in spec["authorization"]["acls"]:
                assert set(acl) <= {"resource", "operations", "host", "type"}, where
                assert acl["resource"]["type"] in ("topic", "group", "cluster", "transactionalId")
                assert acl["resource"].get("patternType", "literal") in ("literal", "prefix")
                assert acl["operations"] and set(acl["operations"]) <= STRIMZI_OPERATIONS, where
        else:
            assert spec["selector"]["matchLabels"], where
            for endpoint in spec["endpoints"]:
                assert isinstance(endpoint["port"], str) and endpoint["path"].startswith("/")
    assert len(clusters) == 1, f"topics and users name several Strimzi clusters: {clusters}"


# ---------------------------------------------------------------------------------------
# topics and ACLs
# ---------------------------------------------------------------------------------------


def test_kafka_topics_are_storemons_topic_specs(layer: Layer) -> None:
    settings = default_settings()
    wanted = {settings.topic(spec.name): spec.configs for spec in TOPIC_SPECS}
    topics = {t["spec"]["topicName"]: t for t in layer.of_kind("KafkaTopic")}
    assert set(topics) == set(wanted)
    assert set(CHANGELOG_TOPICS) <= set(topics), "the worker's tables need their changelogs"
    for name, topic in topics.items():
        assert topic["spec"]["config"] == wanted[name], name
        assert topic["metadata"]["name"] == name.replace("_", "-")
    config = layer.named("ConfigMap", "storemon-config")["data"]
    assert config["STOREMON_TOPIC_PREFIX"] == ""
    partitions = layer.topic_partitions()
    copartitioned = {partitions[settings.topic(name)] for name in COPARTITIONED_TOPICS}
    assert copartitioned == {int(config["STOREMON_TOPIC_PARTITIONS"])}, (
        "the co-partitioned topics must share one count, STOREMON_TOPIC_PARTITIONS"
    )
    assert set(partitions.values()) == copartitioned
    replicas = {t["spec"]["replicas"] for t in topics.values()}
    assert replicas == {int(config["STOREMON_TOPIC_REPLICATION"])}


def expected_access() -> dict[str, tuple[dict[str, set[str]], dict[str, set[str]]]]:
    """Per service: topic -> Read/Write, group -> operations, as the code uses them."""
    s = default_settings()
    newest_poll = changelog_topic(s, NEWEST_POLL_TABLE)
    return {
        # reports.py produces requests; events.py polls and their rejects; /metrics reads
        # both groups' offsets with a watermark reader (storemon/kafka/lag.py).
        "api": (
            {s.topic(TOPIC_REPORT_REQUESTS): {"Write"}, s.topic(TOPIC_STATUS): {"Write"},
             s.topic(TOPIC_STATUS_DLQ): {"Write"}},
            {worker_app_id(s): {"Describe"}, reporter_group(s): {"Describe"},
             reader_group(s): {"Describe"}},
        ),
        # Faust: the inputs (and records sent on to their key's partition), the tasks,
        # the tables' changelogs, the dead letters; its group is the app id.
        "worker": (
            {**{s.topic(t): {"Read", "Write"} for t in INPUT_TOPICS},
             s.topic(TOPIC_REPORT_TASKS): {"Read"}, s.topic(TOPIC_STATUS_DLQ): {"Write"},
             **{s.topic(c): {"Read", "Write"} for c in CHANGELOG_TOPICS}},
            {worker_app_id(s): {"Read"}},
        ),
        # Consumes requests in its group, sends tasks, publishes the ended reports
        # (services/reporter/announcer.py), reads the newest poll of each changelog and
        # store-status partition, and the worker group's lag.
        "reporter": (
            {s.topic(TOPIC_REPORT_REQUESTS): {"Read"}, s.topic(TOPIC_REPORT_TASKS): {"Write"},
             s.topic(TOPIC_REPORT_EVENTS): {"Write"},
             s.topic(TOPIC_STATUS): {"Read"}, newest_poll: {"Read"}},
            {reporter_group(s): {"Read"}, worker_app_id(s): {"Describe"},
             state_reader_group(s): {"Describe"}, reader_group(s): {"Describe"}},
        ),
    }


def kafka_user(layer: Layer, service: str) -> Resource:
    """The KafkaUser whose name the service's Deployment gives as KAFKA_SASL_USERNAME."""
    (container,) = pod_spec(layer.deployment(service))["containers"]
    return layer.named("KafkaUser", layer.environment(container)["KAFKA_SASL_USERNAME"])


def acls(user: Resource, resource_type: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for acl in user["spec"]["authorization"]["acls"]:
        if acl["resource"]["type"] == resource_type:
            assert acl["resource"].get("patternType", "literal") == "literal"
            assert acl["resource"]["name"] not in found, "one rule per resource"
            found[acl["resource"]["name"]] = set(acl["operations"])
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_user_may_do_exactly_what_its_code_does(layer: Layer, service: str) -> None:
    user = kafka_user(layer, service)
    topic_access, group_access = expected_access()[service]
    topics = acls(user, "topic")
    all_topics = {t["spec"]["topicName"] for t in layer.of_kind("KafkaTopic")}
    assert set(topics) == all_topics, "every topic is checked as the service starts"
    for name, operations in topics.items():
        assert operations >= TOPIC_CHECK_OPERATIONS, name
    beyond_checks = {name: ops - TOPIC_CHECK_OPERATIONS for name, ops in topics.items()}
    assert {name: ops for name, ops in beyond_checks.items() if ops} == topic_access
    assert acls(user, "group") == group_access
    assert not acls(user, "cluster") and not acls(user, "transactionalId")


def topics_named_in_code(service: str) -> set[str]:
    """The topics the service's source names: TOPIC_* constants, the worker's tables
    (their changelogs) and the changelogs the reporter reads."""
    s = default_settings()
    names: set[str] = set()
    for path in KAFKA_SOURCES[service]:
        text = path.read_text()
        constants = re.findall(r"\bTOPIC_[A-Z_]+\b", text)
        names |= {s.topic(getattr(topics_module, constant)) for constant in constants}
        tables = re.findall(r"app\.Table\(\s*([A-Z_]+_TABLE)", text)
        tables += re.findall(r"changelog_topic\(\s*settings,\s*([A-Z_]+_TABLE)\)", text)
        names |= {changelog_topic(s, getattr(layout, table)) for table in tables}
    return names


@pytest.mark.parametrize("service", SERVICES)
def test_the_topics_a_service_reads_or_writes_are_those_its_code_names(
    base: Layer, service: str
) -> None:
    topics = acls(kafka_user(base, service), "topic")
    used = {name for name, ops in topics.items() if ops & {"Read", "Write"}}
    assert used == topics_named_in_code(service)


# ---------------------------------------------------------------------------------------
# Deployments: commands, probes, resources, settings, secrets, security
# ---------------------------------------------------------------------------------------


def test_every_container_runs_the_one_image_and_a_real_storemon_command(layer: Layer) -> None:
    parser = build_parser()
    images = {container["image"] for _, _, container in all_containers(layer.resources)}
    assert len(images) == 1, images
    if layer.name == "production":
        assert split_image(images.pop())[1] not in ("", ":dev", ":latest")
    for deployment in layer.of_kind("Deployment"):
        (container,) = pod_spec(deployment)["containers"]
        assert container["command"][0] == "storemon"
        parser.parse_args(container["command"][1:])  # SystemExit on an unknown subcommand


def served_routes(service: str) -> set[str]:
    path, pattern = ROUTE_SOURCES[service]
    return set(re.findall(pattern, path.read_text()))


@pytest.mark.parametrize("service", SERVICES)
def test_probes_ask_routes_the_service_serves_on_the_port_it_listens_on(
    layer: Layer, service: str
) -> None:
    pod = pod_spec(layer.deployment(service))
    (container,) = pod["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    listening = int(layer.environment(container)[PORT_SETTINGS[service]])
    routes = served_routes(service)
    assert "/healthz" in routes and "/metrics" in routes
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = container[kind]["httpGet"]
        port = ports[probe["port"]] if isinstance(probe["port"], str) else probe["port"]
        assert port == listening, f"{kind} asks port {port}, {service} listens on {listening}"
        assert probe["path"] in routes, f"{service} serves no {probe['path']}"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    readiness = "/readyz" if "/readyz" in routes else "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == readiness
    assert layer.environment(container)["STOREMON_API_HOST"] == "0.0.0.0", (
        "probes come from outside the pod"
    )


def mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity) / 2**20


def millicores(quantity: str) -> float:
    return float(quantity[:-1]) if quantity.endswith("m") else float(quantity) * 1000


def measured_rss() -> dict[str, tuple[int, int]]:
    """BENCHMARKS.md ("Scatter/gather reports"): per service, the peak RSS at Loop scale
    and the largest measured (4x Loop scale), MiB."""
    text = (REPO / "BENCHMARKS.md").read_text()
    loop = re.search(r"1x, up to 4 workers \+ 2 reporters \+ API: peak RSS of each \| (.*)", text)
    assert loop, "BENCHMARKS.md lost its Loop-scale RSS row"
    row = loop.group(1)
    worker_4x = re.search(r"4x, \*\*1 owner\*\* \(8 partitions\): peak RSS \| \*\*(\d+) MiB", text)
    reporter_4x = re.search(
        r"reporter peak RSS \(4x, any owner count\) \| \*\*\d+\u2013(\d+) MiB", text
    )
    assert worker_4x and reporter_4x, "BENCHMARKS.md lost its 4x RSS figures"
    workers = re.search(r"workers (\d+)", row)
    reporters = re.search(r"reporters (\d+)", row)
    api = re.search(r"API (\d+) MiB", row)
    assert workers and reporters and api
    return {
        "worker": (int(workers.group(1)), int(worker_4x.group(1))),
        "reporter": (int(reporters.group(1)), int(reporter_4x.group(1))),
        # The API holds no state: its Loop-scale figure is its largest.
        "api": (int(api.group(1)), int(api.group(1))),
    }


def test_every_container_has_requests_and_limits(layer: Layer) -> None:
    for _, _, container in all_containers(layer.resources):
        resources = container["resources"]
        for resource in ("cpu", "memory"):
            request = resources["requests"][resource]
            limit = resources["limits"][resource]
            measure = millicores if resource == "cpu" else mebibytes
            assert 0 < measure(request) <= measure(limit), f"{container['name']} {resource}"


@pytest.mark.parametrize("service", SERVICES)
def test_memory_covers_the_rss_measured_in_benchmarks(layer: Layer, service: str) -> None:
    (container,) = pod_spec(layer.deployment(service))["containers"]
    loop_scale, largest = measured_rss()[service]
    assert mebibytes(container["resources"]["requests"]["memory"]) >= loop_scale
    assert mebibytes(container["resources"]["limits"]["memory"]) >= largest * 1.2


def test_production_gives_no_service_less_than_the_base(base: Layer, production: Layer) -> None:
    for service in SERVICES:
        (small,) = pod_spec(base.deployment(service))["containers"]
        (large,) = pod_spec(production.deployment(service))["containers"]
        for bound in ("requests", "limits"):
            assert mebibytes(large["resources"][bound]["memory"]) >= mebibytes(
                small["resources"][bound]["memory"]
            )
            assert millicores(large["resources"][bound]["cpu"]) >= millicores(
                small["resources"][bound]["cpu"]
            )
        assert production.deployment(service)["spec"]["replicas"] >= base.deployment(service)[
            "spec"
        ]["replicas"]


def test_workers_never_outnumber_the_input_partitions(layer: Layer) -> None:
    worker = layer.deployment("worker")
    settings = default_settings()
    partitions = {layer.topic_partitions()[settings.topic(t)] for t in INPUT_TOPICS}
    assert len(partitions) == 1
    assert 1 <= worker["spec"]["replicas"] <= partitions.pop()
    # Nor during a rollout.
    assert worker["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0


def test_every_variable_is_a_real_setting(layer: Layer) -> None:
    config_source = (REPO / "storemon" / "config.py").read_text()
    names = set(layer.named("ConfigMap", "storemon-config")["data"])
    for _, _, container in all_containers(layer.resources):
        names |= {variable["name"] for variable in container.get("env", [])}
    for name in names:
        if name.startswith("STOREMON_"):
            assert f'"{name}"' in config_source, f"{name} is no setting of storemon/config.py"
        else:
            assert name in KAFKA_VARIABLES | OTHER_VARIABLES | POD_FIELD_VARIABLES.keys(), (
                f"{name} is read by nothing"
            )


def test_every_service_leaves_topics_to_strimzi(layer: Layer) -> None:
    for deployment in layer.of_kind("Deployment"):
        (container,) = pod_spec(deployment)["containers"]
        assert layer.environment(container)["STOREMON_CREATE_TOPICS"] == "false"


def test_every_secret_and_config_map_referenced_exists(layer: Layer) -> None:
    def exists(kind: str, name: str, key: str | None = None) -> None:
        resource = layer.named(kind, name)
        if key is not None:
            assert key in resource.get("data", {}), f"{kind} {name} has no key {key}"

    for _, pod, container in all_containers(layer.resources):
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                exists("Secret", volume["secret"]["secretName"])
            if "configMap" in volume:
                exists("ConfigMap", volume["configMap"]["name"])
        for source in container.get("envFrom", []):
            exists("ConfigMap", source["configMapRef"]["name"])
    for user in layer.of_kind("KafkaUser"):
        reference = user["spec"]["authentication"]["password"]["valueFrom"]["secretKeyRef"]
        exists("Secret", reference["name"], reference["key"])


@pytest.mark.parametrize("service", SERVICES)
def test_kafka_credentials_are_the_services_own_user_mounted_as_files(
    layer: Layer, service: str
) -> None:
    pod = pod_spec(layer.deployment(service))
    (container,) = pod["containers"]
    env = layer.environment(container)
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", "SCRAM over the TLS listener"
    user = kafka_user(layer, service)
    assert env["KAFKA_SASL_MECHANISM"] == user["spec"]["authentication"]["type"].upper()
    secret, password = layer.secret_file(pod, container, env["KAFKA_SASL_PASSWORD_FILE"])
    reference = user["spec"]["authentication"]["password"]["valueFrom"]["secretKeyRef"]
    assert (secret, env["KAFKA_SASL_PASSWORD_FILE"].rsplit("/", 1)[1]) == (
        reference["name"], reference["key"]
    ), "the service logs in with the password its KafkaUser was given"
    assert password and not password.endswith(b"\n"), "Strimzi takes every byte"
    layer.secret_file(pod, container, env["KAFKA_SSL_CA_FILE"])
    others = {kafka_user(layer, s)["metadata"]["name"] for s in SERVICES if s != service}
    mounted = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    other_passwords = {
        u["spec"]["authentication"]["password"]["valueFrom"]["secretKeyRef"]["name"]
        for u in layer.of_kind("KafkaUser") if u["metadata"]["name"] in others
    }
    assert not mounted & other_passwords, "a service mounts another service's password"


@pytest.mark.parametrize("service", SERVICES)
def test_postgres_is_verified_and_its_password_comes_from_a_pgpass_file(
    layer: Layer, service: str
) -> None:
    pod = pod_spec(layer.deployment(service))
    (container,) = pod["containers"]
    url = urlsplit(layer.environment(container)["DATABASE_URL"])
    assert url.password is None
    query = {key: values[0] for key, values in parse_qs(url.query).items()}
    assert query["sslmode"] == "verify-full"
    layer.secret_file(pod, container, query["sslrootcert"])
    # asyncpg and libpq ignore a group-readable pgpass file, as Secret volumes' are: an
    # init container copies it, mode 0600, to an emptyDir the service reads.
    passfile = query["passfile"]
    assert "emptyDir" in mounted_volume(pod, container, passfile)
    copies = [
        c for c in pod["initContainers"]
        if c["command"][:3] == ["install", "-m", "0600"] and c["command"][4] == passfile
    ]
    assert len(copies) == 1, f"nothing copies {passfile}"
    (copier,) = copies
    _, content = layer.secret_file(pod, copier, copier["command"][3])
    target = mounted_volume(pod, copier, passfile)
    assert "emptyDir" in target and not target["readOnly"]
    if layer.name == "production":  # the base's is a placeholder
        lines = [line for line in content.decode().splitlines() if not line.startswith("#")]
        assert [line for line in lines if line.count(":") >= 4], "no pgpass line"


def test_production_settings_pass_storemons_own_validation(
    production: Layer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    default_settings_environment: None,
) -> None:
    for deployment in production.of_kind("Deployment"):
        pod = pod_spec(deployment)
        (container,) = pod["containers"]
        for name, value in production.environment(container).items():
            if name.endswith("_FILE"):
                _, content = production.secret_file(pod, container, value)
                copy_of = tmp_path / f"{service_of(deployment)}-{name}"
                copy_of.write_bytes(content)
                value = str(copy_of)
            monkeypatch.setenv(name, value)
        settings = Settings.from_env()
        assert not settings.create_topics
        if service_of(deployment) == "api":
            assert settings.tokens(), "the API must not run open"


def test_the_base_placeholder_tokens_stop_the_api(
    base: Layer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    default_settings_environment: None,
) -> None:
    """Deployed by mistake, the base's API refuses to start rather than run open."""
    pod = pod_spec(base.deployment("api"))
    (container,) = pod["containers"]
    env = base.environment(container)
    _, content = base.secret_file(pod, container, env["STOREMON_TOKENS_FILE"])
    (tmp_path / "tokens").write_bytes(content)
    monkeypatch.setenv("STOREMON_TOKENS_FILE", str(tmp_path / "tokens"))
    with pytest.raises(SettingsError):
        Settings.from_env()


def dockerfile_uid() -> int:
    found = re.search(r"--uid (\d+)", (REPO / "Dockerfile").read_text())
    assert found, "the Dockerfile names no uid"
    return int(found.group(1))


def test_pods_run_unprivileged_on_a_read_only_root(layer: Layer) -> None:
    uid = dockerfile_uid()
    for deployment in layer.of_kind("Deployment"):
        pod = pod_spec(deployment)
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] == uid
        assert pod["automountServiceAccountToken"] is False
        assert not pod.get("hostNetwork") and not pod.get("hostPID")
        for container in [*pod["initContainers"], *pod["containers"]]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["readOnlyRootFilesystem"] is True
            assert security["capabilities"]["drop"] == ["ALL"]
            assert not security.get("privileged")
            assert all("hostPort" not in port for port in container.get("ports", []))
            for mount in container.get("volumeMounts", []):
                volume = mounted_volume(pod, container, mount["mountPath"] + "/x")
                assert mount.get("readOnly") or "emptyDir" in volume, mount


@pytest.mark.parametrize("service", SERVICES)
def test_what_a_service_writes_is_on_a_writable_volume(layer: Layer, service: str) -> None:
    pod = pod_spec(layer.deployment(service))
    (container,) = pod["containers"]
    env = layer.environment(container)
    writes = [env["STOREMON_STATE_DIR"] + "/x", "/tmp/x"]
    if service == "worker":
        writes.append(env["STOREMON_WORKER_DATA_DIR"] + "/x")
    for path in writes:
        volume = mounted_volume(pod, container, path)
        assert "emptyDir" in volume and not volume["readOnly"], path


# ---------------------------------------------------------------------------------------
# Services, Prometheus, disruption budgets
# ---------------------------------------------------------------------------------------


def test_services_are_cluster_internal(layer: Layer) -> None:
    for service in layer.of_kind("Service"):
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
        assert all("nodePort" not in port for port in service["spec"]["ports"])


def test_prometheus_scrapes_every_services_metrics_route(layer: Layer) -> None:
    (monitor,) = layer.of_kind("ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    job_label = monitor["spec"]["jobLabel"]
    jobs = {
        job["job_name"]
        for job in yaml.safe_load(
            (REPO / "deploy" / "monitoring" / "prometheus.yml").read_text()
        )["scrape_configs"]
    }
    endpoints = {e["port"]: e["path"] for e in monitor["spec"]["endpoints"]}
    scraped = set()
    for name in SERVICES:
        deployment = layer.deployment(name)
        pod = pod_spec(deployment)
        (container,) = pod["containers"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        (service,) = [
            s for s in layer.of_kind("Service")
            if all(labels.get(k) == v for k, v in s["spec"]["selector"].items())
        ]
        assert all(service["metadata"]["labels"].get(k) == v for k, v in selector.items())
        assert service["metadata"]["labels"][job_label] in jobs, "jobs as prometheus.yml names them"
        (port,) = [p for p in service["spec"]["ports"] if p["name"] in endpoints]
        assert endpoints[port["name"]] == "/metrics" and "/metrics" in served_routes(name)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        metrics_port = ports[port["targetPort"]]
        assert metrics_port == int(layer.environment(container)[PORT_SETTINGS[name]])
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(metrics_port)
        assert annotations["prometheus.io/path"] == "/metrics"
        scraped.add(service["metadata"]["labels"][job_label])
    assert scraped == jobs


@pytest.mark.parametrize("service", ["worker", "api", "reporter"])
def test_disruption_budgets_cover_the_services(layer: Layer, service: str) -> None:
    labels = layer.deployment(service)["spec"]["template"]["metadata"]["labels"]
    budgets = [
        b for b in layer.of_kind("PodDisruptionBudget")
        if all(labels.get(k) == v for k, v in b["spec"]["selector"]["matchLabels"].items())
    ]
    assert len(budgets) == 1
    assert budgets[0]["spec"]["maxUnavailable"] == 1


# ---------------------------------------------------------------------------------------
# secrets stay out of git
# ---------------------------------------------------------------------------------------


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False
    )


def test_the_overlays_secret_files_are_gitignored_and_their_examples_are_not() -> None:
    if git("rev-parse", "--is-inside-work-tree").returncode != 0:
        pytest.skip("not a git checkout")
    for path in production_secret_files():
        assert git("check-ignore", "-q", str(path)).returncode == 0, f"{path} is not ignored"
        example = path.with_name(f"{path.name}.example")
        assert example.is_file(), f"{example} is missing"
        assert git("check-ignore", "-q", str(example)).returncode == 1, f"{example} is ignored"
    tracked = git("ls-files", str(KUBERNETES)).stdout.split()
    assert not {str(p.relative_to(REPO)) for p in production_secret_files()} & set(tracked)
