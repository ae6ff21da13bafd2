"""The Kubernetes manifests (deploy/k8s/), checked without a cluster or a kubectl binary.

The overlays are rendered by a small kustomize (the subset they use: resources and strategic
merge patches; anything else fails the test instead of rendering differently), then checked
against the Kubernetes schemas of every version from 1.30 (kubernetes-validate, offline), and
against what they run: every image is one a Dockerfile builds, every port the one it exposes,
every probe path a route of the app, every mount path a path setting that the image uses,
every variable a service setting or one the image sets, and the sizes and timeouts against the
settings and the memory benchmark. What stays unchecked is listed in docs/deploy.md.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import kubernetes_validate
import pytest
from kubernetes_validate.utils import all_versions
from packaging.version import Version
from ruamel.yaml import YAML

from service.app import create_app
from service.metrics import Metrics
from service.settings import Settings
from tests.deploy.test_deploy import COMPOSE, DOCKERFILES, load_compose, read_dockerfile
from tests.paths import REPO

K8S = REPO / "deploy" / "k8s"
OVERLAYS = {"gpu": K8S / "overlays" / "gpu", "cpu": K8S / "overlays" / "cpu"}
SEED_JOB = K8S / "jobs" / "seed-model-repo.yaml"
PODMONITOR = K8S / "monitoring" / "podmonitor.yaml"
ADAPTER_VALUES = K8S / "monitoring" / "prometheus-adapter-values.yaml"
MEMORY_BENCH = REPO / "docs" / "benchmarks" / "memory.json"
# The preStop hook's sleep action is on by default from 1.30 (GA in 1.34).
OLDEST_KUBERNETES = Version("1.30")
KUBERNETES_VERSIONS = sorted({v for v in all_versions() if Version(v) >= OLDEST_KUBERNETES}, key=Version)
PREFIX = Settings.model_config["env_prefix"]

Resource = dict[str, Any]


# -- a small kustomize ------------------------------------------------------------------------
# Strategic merge: these lists merge item by item on a key (Kubernetes' patchMergeKey); any
# other list is replaced, as Kubernetes does for lists without one.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
}
KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "patches"}


def load_documents(path: Path) -> list[Resource]:
    return [document for document in YAML(typ="safe").load_all(path.read_text()) if document]


def strategic_merge(base: Any, patch: Any, field: str | None = None) -> Any:
    """``patch`` merged into ``base`` as kustomize's strategic merge does for these manifests."""
    if isinstance(base, dict) and isinstance(patch, dict):
        if any(key.startswith("$") for key in patch):
            raise NotImplementedError(f"patch directives ({sorted(patch)}) are not rendered here")
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = strategic_merge(merged[key], value, key) if key in merged else copy.deepcopy(value)
        return merged
    if isinstance(patch, list) and field in MERGE_KEYS:
        key = MERGE_KEYS[field]
        merged = copy.deepcopy(base)
        for item in patch:
            at = next((i for i, old in enumerate(merged) if old[key] == item[key]), None)
            if at is None:
                merged.append(copy.deepcopy(item))
            else:
                merged[at] = strategic_merge(merged[at], item)
        return merged
    if field == "ports":
        raise NotImplementedError("ports merge on a key that depends on the resource: not rendered here")
    return copy.deepcopy(patch)


def render(folder: Path) -> list[Resource]:
    """The resources ``kubectl kustomize folder`` prints (for the features listed above)."""
    kustomization = load_documents(folder / "kustomization.yaml")[0]
    unknown = set(kustomization) - KUSTOMIZATION_KEYS
    if unknown:
        raise NotImplementedError(f"{folder}: kustomize features {sorted(unknown)} are not rendered here")
    resources: list[Resource] = []
    for entry in kustomization.get("resources", []):
        path = folder / entry
        resources += render(path) if path.is_dir() else load_documents(path)
    for patch_entry in kustomization.get("patches", []):
        if set(patch_entry) != {"path"}:
            raise NotImplementedError(f"{folder}: only patches by path are rendered here, not {patch_entry}")
        for patch in load_documents(folder / patch_entry["path"]):
            at = [i for i, r in enumerate(resources) if identity(r) == identity(patch)]
            assert len(at) == 1, f"{patch_entry['path']} patches {identity(patch)}, found {len(at)} times"
            resources[at[0]] = strategic_merge(resources[at[0]], patch)
    identities = [identity(r) for r in resources]
    assert len(identities) == len(set(identities)), f"{folder}: a resource appears twice"
    return resources


def identity(resource: Resource) -> tuple[str, str, str]:
    return resource["apiVersion"], resource["kind"], resource["metadata"]["name"]


def the(resources: list[Resource], kind: str) -> Resource:
    found = [r for r in resources if r["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind}s"
    return found[0]


def container(workload: Resource) -> Resource:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def environment(spec: Resource) -> dict[str, str]:
    """A container's variables with a value (``valueFrom`` ones are named with an empty value)."""
    return {variable["name"]: variable.get("value", "") for variable in spec.get("env", [])}


@pytest.fixture(scope="module", params=sorted(OVERLAYS))
def variant(request) -> tuple[str, list[Resource]]:
    return request.param, render(OVERLAYS[request.param])


# -- what the images and the service define ---------------------------------------------------
def built_images() -> dict[str, Path]:
    """Image name -> the Dockerfile that builds it: the ``docker build -f X -t NAME`` of each
    Dockerfile's header, and the image of each compose service built from one."""
    images: dict[str, Path] = {}
    for path in DOCKERFILES.values():
        for dockerfile, name in re.findall(r"docker build -f (\S+) -t (\S+)", path.read_text()):
            images[name] = REPO / dockerfile
    for service in load_compose()["services"].values():
        image = re.sub(r"\$\{\w+:-(.*)\}", r"\1", service["image"])  # the default of ${VAR:-default}
        images[image] = REPO / service["build"]["context"] / service["build"]["dockerfile"]
    return images


def image_environment(dockerfile: Path) -> dict[str, str]:
    """The variables the final stage of a Dockerfile sets (``ENV A=1 B='x y'``)."""
    found: dict[str, str] = {}
    for arguments in read_dockerfile(dockerfile)[-1].all("ENV"):
        found |= dict(word.split("=", 1) for word in shlex.split(arguments))
    return found


def image_paths(dockerfile: Path) -> set[str]:
    """The absolute paths the final stage creates: COPY destinations and ``mkdir -p`` folders."""
    final = read_dockerfile(dockerfile)[-1]
    paths = {arguments.split()[-1] for arguments in final.all("COPY")}
    for command in final.all("RUN"):
        for folders in re.findall(r"mkdir -p ([^&;|]+)", command):
            paths |= set(folders.split())
    return {path.rstrip("/") for path in paths if path.startswith("/")}


def settings_from(variables: dict[str, str]) -> Settings:
    """The settings a process sees with exactly these ``ADAFOCUS_*`` variables."""
    with pytest.MonkeyPatch.context() as patch:
        for name in os.environ:
            if name.startswith(PREFIX):
                patch.delenv(name)
        for name, value in variables.items():
            if name.startswith(PREFIX):
                patch.setenv(name, value)
        return Settings()


def pod_settings(workload: Resource) -> Settings:
    """The service's settings in the pod: the image's variables, then the manifest's."""
    spec = container(workload)
    return settings_from(image_environment(built_images()[spec["image"]]) | environment(spec))


def setting_variables() -> set[str]:
    return {PREFIX + name.upper() for name in Settings.model_fields}


def path_settings() -> list[str]:
    return [n for n, f in Settings.model_fields.items() if Path in (f.annotation, *get_args(f.annotation))]


@functools.cache
def app_routes() -> set[str]:
    """The paths the service answers, as its OpenAPI document lists them."""
    return set(create_app(Settings()).openapi()["paths"])


def exported_series() -> set[str]:
    """The names of the series the service's /metrics exposes."""
    suffixes = {"histogram": ("_bucket", "_count", "_sum"), "counter": ("_total",), "gauge": ("",)}
    return {
        family.name + suffix for family in Metrics().registry.collect() for suffix in suffixes.get(family.type, ("",))
    }


def seconds(quantity: str) -> float:
    return float(quantity.removesuffix("s"))


def mebibytes(quantity: str) -> float:
    units = {"Ki": 2**-10, "Mi": 1, "Gi": 2**10, "Ti": 2**20}
    number, unit = re.fullmatch(r"([\d.]+)(\w*)", quantity).groups()
    return float(number) * units[unit] if unit else float(number) / 2**20


# -- the schemas ------------------------------------------------------------------------------
def schema_errors(resource: Resource) -> list[str]:
    errors = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{version} {resource['kind']}: {error.message} at {list(error.absolute_path)}")
    return errors


def test_the_schemas_cover_supported_kubernetes_versions():
    assert len(KUBERNETES_VERSIONS) >= 4 and KUBERNETES_VERSIONS[0] == f"{OLDEST_KUBERNETES}.0"


def test_the_overlays_follow_the_kubernetes_schemas(variant):
    name, resources = variant
    kinds = sorted(r["kind"] for r in resources)
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "PersistentVolumeClaim"} <= set(
        kinds
    )
    assert [error for resource in resources for error in schema_errors(resource)] == []


def test_the_seed_job_follows_the_kubernetes_schemas():
    assert schema_errors(load_documents(SEED_JOB)[0]) == []


def test_the_schema_check_rejects_mistakes():
    deployment = the(render(OVERLAYS["gpu"]), "Deployment")
    typo = copy.deepcopy(deployment)
    container(typo)["readinessProbe"]["failureTreshold"] = 2  # strict: unknown fields fail
    assert schema_errors(typo)
    wrong_type = copy.deepcopy(deployment)
    container(wrong_type)["ports"][0]["containerPort"] = "8000"
    assert schema_errors(wrong_type)


def test_the_renderer_merges_as_kustomize_does_and_refuses_what_it_cannot():
    base = {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}]}
    patch = {"containers": [{"name": "a", "env": [{"name": "Y", "value": "3"}, {"name": "Z", "value": "4"}]}]}
    merged = strategic_merge(base, patch)
    assert merged["containers"][0]["env"] == [
        {"name": "X", "value": "1"},
        {"name": "Y", "value": "3"},
        {"name": "Z", "value": "4"},
    ]
    assert strategic_merge({"tolerations": [1, 2]}, {"tolerations": [3]}) == {"tolerations": [3]}
    assert strategic_merge({"a": 1, "b": 2}, {"b": None}) == {"a": 1}
    with pytest.raises(NotImplementedError):
        strategic_merge({"ports": [{"port": 1}]}, {"ports": [{"port": 2}]})


# -- what the manifests name exists -----------------------------------------------------------
def test_every_image_is_one_a_dockerfile_builds_for_its_variant(variant):
    name, resources = variant
    dockerfile = built_images()[container(the(resources, "Deployment"))["image"]]
    assert dockerfile == DOCKERFILES["Dockerfile" if name == "gpu" else "Dockerfile.cpu"]
    assert built_images()[container(load_documents(SEED_JOB)[0])["image"]] in (
        DOCKERFILES["Dockerfile"],
        DOCKERFILES["Dockerfile.cpu"],
    )


def test_every_variable_is_a_setting_or_one_the_image_sets(variant):
    _, resources = variant
    deployment = the(resources, "Deployment")
    spec = container(deployment)
    known = setting_variables() | set(image_environment(built_images()[spec["image"]]))
    assert set(environment(spec)) <= known
    pod_settings(deployment)  # every value parses as the service reads it


def test_the_manifests_agree_with_the_image_and_compose_where_both_set_a_setting(variant):
    name, resources = variant
    spec = container(the(resources, "Deployment"))
    image = image_environment(built_images()[spec["image"]])
    sources = [image]
    if name == "gpu":  # compose runs the GPU image
        compose = load_compose()["services"]["service"]["environment"]
        sources.append({k: re.sub(r"^\$\{\w+:-(.*)\}$", r"\1", str(v)) for k, v in compose.items()})
    ours = settings_from(environment(spec))
    for source in sources:
        theirs = settings_from(source)
        shared = {PREFIX + n.upper() for n in Settings.model_fields} & set(source) & set(environment(spec))
        for variable in shared - {PREFIX + "API_KEY"}:
            field = variable.removeprefix(PREFIX).lower()
            assert getattr(ours, field) == getattr(theirs, field), variable


def test_ports_and_probe_paths_are_the_service_s(variant):
    _, resources = variant
    deployment, service = the(resources, "Deployment"), the(resources, "Service")
    spec = container(deployment)
    final = read_dockerfile(built_images()[spec["image"]])[-1]
    ports = {port["name"]: port["containerPort"] for port in spec["ports"]}
    settings = pod_settings(deployment)
    assert set(ports.values()) == {settings.port} == {int(p) for p in final.all("EXPOSE")}
    assert settings.host == "0.0.0.0"  # reachable from the kubelet and the Service
    probes = {kind: spec[kind]["httpGet"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["path"] == "/readyz" and probes["livenessProbe"]["path"] == "/healthz"
    for probe in probes.values():
        assert probe["path"] in app_routes() and probe["port"] in ports
    assert all(port["targetPort"] in ports for port in service["spec"]["ports"])
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) in ports.values()
    assert annotations["prometheus.io/path"] in app_routes()
    endpoint = load_documents(PODMONITOR)[0]["spec"]["podMetricsEndpoints"][0]
    assert endpoint["port"] in ports and endpoint["path"] in app_routes()


def test_mount_paths_are_the_path_settings_the_image_and_compose_use(variant):
    name, resources = variant
    deployment = the(resources, "Deployment")
    spec = container(deployment)
    settings = pod_settings(deployment)
    dockerfile = built_images()[spec["image"]]
    configured = {str(getattr(settings, field)): field for field in path_settings() if getattr(settings, field)}
    compose_targets = {volume.split(":")[1] for volume in load_compose()["services"]["service"]["volumes"]}
    for mount in spec["volumeMounts"]:
        assert mount["mountPath"] in configured, f"{mount['mountPath']} is no path setting's value"
        assert mount["mountPath"] in image_paths(dockerfile), f"{dockerfile.name} does not create {mount['mountPath']}"
        assert mount["mountPath"] in compose_targets
    mounts = {mount["mountPath"]: mount for mount in spec["volumeMounts"]}
    assert mounts[str(settings.model_repo)]["readOnly"] is True
    # Every path setting that is set is mounted (nothing written into the container's layer).
    assert set(configured) == set(mounts)
    claims = {r["metadata"]["name"] for r in resources if r["kind"] == "PersistentVolumeClaim"}
    for volume in deployment["spec"]["template"]["spec"]["volumes"]:
        assert volume["persistentVolumeClaim"]["claimName"] in claims


def test_the_pods_run_as_the_images_user(variant):
    _, resources = variant
    deployment = the(resources, "Deployment")
    user = read_dockerfile(built_images()[container(deployment)["image"]])[-1].all("USER")[-1]
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(user)
    job = load_documents(SEED_JOB)[0]
    assert job["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(user)


def test_service_links_cannot_set_the_service_s_settings(variant):
    """Kubernetes gives every container ``<SERVICE>_PORT=tcp://...`` and more for each Service
    of the namespace; for a Service named adafocus that is a setting of the service."""
    _, resources = variant
    injected = set()
    for service in (r for r in resources if r["kind"] == "Service"):
        stem = service["metadata"]["name"].upper().replace("-", "_")
        injected |= {f"{stem}_PORT", f"{stem}_SERVICE_HOST", f"{stem}_SERVICE_PORT"}
    if injected & setting_variables():
        assert the(resources, "Deployment")["spec"]["template"]["spec"]["enableServiceLinks"] is False


# -- the variants -----------------------------------------------------------------------------
def test_the_gpu_variant_has_a_gpu_tensorrt_and_its_engine_cache():
    resources = render(OVERLAYS["gpu"])
    deployment = the(resources, "Deployment")
    spec, settings = container(deployment), pod_settings(deployment)
    assert spec["resources"]["limits"]["nvidia.com/gpu"] == spec["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert settings.providers[0] == "TensorrtExecutionProvider"
    assert settings.trt_cache_dir is not None
    assert str(settings.trt_cache_dir) in {mount["mountPath"] for mount in spec["volumeMounts"]}
    tolerations = deployment["spec"]["template"]["spec"]["tolerations"]
    assert any(t["key"] == "nvidia.com/gpu" for t in tolerations)


def test_the_cpu_variant_has_no_gpu_and_the_cpu_provider():
    deployment = the(render(OVERLAYS["cpu"]), "Deployment")
    spec, settings = container(deployment), pod_settings(deployment)
    assert not any("nvidia.com" in key for part in spec["resources"].values() for key in part)
    assert "tolerations" not in deployment["spec"]["template"]["spec"]
    cpu_image = settings_from(image_environment(DOCKERFILES["Dockerfile.cpu"]))
    assert settings.providers == cpu_image.providers == ["CPUExecutionProvider"]
    assert settings.trt_cache_dir is None


# -- sizes and timeouts -----------------------------------------------------------------------
def memory_budget_mib(settings: Settings) -> float:
    """docs/benchmarks/memory.md's budget: the measured base + decode_workers x
    decoder_max_rss_mb + 2 x upload_memory_mb (the server's copy of the uploads and the decoders')."""
    base = json.loads(MEMORY_BENCH.read_text())["base_mib"]
    return base + settings.decode_workers * settings.decoder_max_rss_mb + 2 * settings.upload_memory_mb * 1e6 / 2**20


def test_resources_cover_the_memory_budget_and_a_core_per_decoder(variant):
    _, resources = variant
    deployment = the(resources, "Deployment")
    spec, settings = container(deployment), pod_settings(deployment)
    requests, limits = spec["resources"]["requests"], spec["resources"]["limits"]
    assert mebibytes(limits["memory"]) >= memory_budget_mib(settings)
    assert requests["memory"] == limits["memory"]  # the scheduler reserves what the pod may use
    assert "cpu" not in limits  # no throttling of the decoders
    assert float(requests["cpu"]) >= max(settings.decode_workers, settings.threads)


def test_graceful_shutdown_fits_in_the_termination_grace_period(variant):
    _, resources = variant
    deployment = the(resources, "Deployment")
    pod, spec, settings = deployment["spec"]["template"]["spec"], container(deployment), pod_settings(deployment)
    pre_stop = spec["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop >= 5  # endpoint removal reaches the load balancers first
    assert pod["terminationGracePeriodSeconds"] > pre_stop + settings.graceful_shutdown_s
    assert settings.graceful_shutdown_s > settings.decode_timeout_s  # a decode in flight finishes


def test_the_startup_probe_waits_as_long_as_the_image_s_health_check(variant):
    _, resources = variant
    deployment = the(resources, "Deployment")
    spec = container(deployment)
    health = read_dockerfile(built_images()[spec["image"]])[-1].all("HEALTHCHECK")[-1]
    start_period = seconds(re.search(r"--start-period=(\S+)", health)[1])
    probe = spec["startupProbe"]
    budget = probe["periodSeconds"] * probe["failureThreshold"]
    assert budget >= start_period
    assert deployment["spec"]["progressDeadlineSeconds"] > budget


# -- scaling and disruptions ------------------------------------------------------------------
def test_the_autoscaler_the_budget_and_the_service_select_the_deployment_s_pods(variant):
    _, resources = variant
    deployment = the(resources, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert "replicas" not in deployment["spec"]  # the autoscaler owns the count
    hpa, pdb = the(resources, "HorizontalPodAutoscaler"), the(resources, "PodDisruptionBudget")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == identity(deployment)
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert the(resources, "Service")["spec"]["selector"].items() <= labels.items()
    assert load_documents(PODMONITOR)[0]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # A drain keeps one pod serving.
    assert hpa["spec"]["minReplicas"] > pdb["spec"]["maxUnavailable"]
    # A first apply can leave the autoscaler out (docs/deploy.md): its component differs.
    component = "app.kubernetes.io/component"
    others = [r for r in resources if r["kind"] != "HorizontalPodAutoscaler"]
    assert all(r["metadata"]["labels"][component] == labels[component] for r in others)
    assert hpa["metadata"]["labels"][component] != labels[component]


def test_the_autoscaler_s_metric_comes_from_the_service_through_the_adapter(variant):
    _, resources = variant
    hpa = the(resources, "HorizontalPodAutoscaler")
    settings = pod_settings(the(resources, "Deployment"))
    rules = load_documents(ADAPTER_VALUES)[0]["rules"]["custom"]
    served = {rule["name"]["as"]: rule for rule in rules}
    for rule in rules:
        series = re.match(r"\w+", rule["seriesQuery"])[0]
        assert series in exported_series(), f"the service exports no {series}"
        assert re.fullmatch(rule["name"]["matches"], series)
    pods = [metric["pods"] for metric in hpa["spec"]["metrics"] if metric["type"] == "Pods"]
    assert pods, "no custom metric"
    for metric in pods:
        assert metric["metric"]["name"] in served
        if metric["metric"]["name"] == "adafocus_requests_in_flight":
            # Scale out before the pods refuse work (503 past max_in_flight).
            assert 0 < float(metric["target"]["averageValue"]) < settings.max_in_flight


# -- the seed job ------------------------------------------------------------------------------
def test_the_seed_job_copies_the_image_s_model_into_an_empty_volume_only(tmp_path):
    job = load_documents(SEED_JOB)[0]
    spec = container(job)
    python, flag, script, source, target = spec["command"]
    assert (python, flag) == ("python", "-c")
    dockerfile = built_images()[spec["image"]]
    assert source in image_paths(dockerfile)
    assert image_environment(dockerfile)[PREFIX + "MODEL_REPO"] == source  # where the image keeps its model
    mounts = {mount["mountPath"]: mount["name"] for mount in spec["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in job["spec"]["template"]["spec"]["volumes"]}
    claim = volumes[mounts[target]]["persistentVolumeClaim"]["claimName"]
    base = render(K8S / "base")
    model_volumes = [
        v for v in the(base, "Deployment")["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v
    ]
    assert claim in {v["persistentVolumeClaim"]["claimName"] for v in model_volumes}
    # The script itself, on a copy of the shipped model: copies once, then leaves the volume alone.
    volume = tmp_path / "volume"
    (volume / "lost+found").mkdir(parents=True)
    run = [sys.executable, "-c", script, str(REPO / "model_repo"), str(volume)]
    assert "copied" in subprocess.run(run, check=True, capture_output=True, text=True).stdout
    assert (volume / "adafocus_v2.v2.json").read_bytes() == (REPO / "model_repo" / "adafocus_v2.v2.json").read_bytes()
    (volume / "adafocus_v2.v2.json").write_text("{}")
    assert "nothing copied" in subprocess.run(run, check=True, capture_output=True, text=True).stdout
    assert (volume / "adafocus_v2.v2.json").read_text() == "{}"


# -- the documentation ------------------------------------------------------------------------
def test_docs_explain_how_to_deploy_and_what_is_unchecked():
    deploy = (REPO / "docs" / "deploy.md").read_text()
    for overlay in OVERLAYS.values():
        assert f"kubectl apply -k {overlay.relative_to(REPO)}" in deploy
    for path in (SEED_JOB, PODMONITOR, ADAPTER_VALUES, MEMORY_BENCH.with_suffix(".md")):
        assert str(path.relative_to(REPO)) in deploy
    assert "ADAFOCUS_GRACEFUL_SHUTDOWN_S" in deploy and "prometheus-adapter" in deploy
    assert "Unchecked without a cluster" in deploy
    assert str(COMPOSE.relative_to(REPO)) in deploy
