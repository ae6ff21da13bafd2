"""The deployment files, checked without a Docker engine (none runs here).

What is checked: the compose file against the Compose specification's schema, what the
deployment needs from it (GPU reservation, model repository mount, engine-cache volume,
health check, the training profile), the Dockerfiles (multi-stage, non-root, exec-form CMD,
health check, every copied path present, no torch in the service images, hadolint), the
variables of ``.env.example``, and that the images run the commands the README documents.
What stays unchecked is listed in docs/deploy.md.
"""

from __future__ import annotations

import http.server
import json
import re
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from service.healthcheck import main as healthcheck
from service.settings import Settings
from tests.paths import REPO

BIN = Path(sys.executable).parent
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILES = {name: REPO / "docker" / name for name in ("Dockerfile", "Dockerfile.cpu", "Dockerfile.train")}
SERVICE_IMAGES = ("Dockerfile", "Dockerfile.cpu")


# -- a small Dockerfile reader ----------------------------------------------------------------
@dataclass
class Stage:
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (keyword, arguments)

    def all(self, keyword: str) -> list[str]:
        return [arguments for name, arguments in self.instructions if name == keyword]


def read_dockerfile(path: Path) -> list[Stage]:
    """The stages of a Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines() if not line.startswith("#")))
    stages: list[Stage] = []
    for line in filter(None, (line.strip() for line in text.splitlines())):
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stages.append(Stage(arguments.strip()))
        elif stages:
            stages[-1].instructions.append((keyword, arguments.strip()))
    return stages


def copied_sources(stage: Stage) -> list[str]:
    sources = []
    for arguments in stage.all("COPY"):
        if "--from=" in arguments:
            continue
        sources += arguments.split()[:-1]
    return sources


def requirement_lines(path: Path) -> list[str]:
    """Every requirement of a requirements file, following ``-r`` includes."""
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.split("#")[0].strip()
        if line.startswith("-r "):
            lines += requirement_lines(path.parent / line[3:].strip())
        elif line:
            lines.append(line)
    return lines


def installed_requirements(stages: list[Stage]) -> list[str]:
    """The requirements files a Dockerfile installs with ``pip install -r``."""
    files = []
    for stage in stages:
        for command in stage.all("RUN"):
            files += [Path(name).name for name in re.findall(r"pip install -r (\S+)", command)]
    assert files, "no pip install -r found"
    return [line for name in files for line in requirement_lines(REPO / "requirements" / name)]


def exec_form(arguments: str) -> list[str]:
    words = json.loads(arguments)  # shell form is not JSON: this fails for it
    assert isinstance(words, list) and all(isinstance(word, str) for word in words)
    return words


# -- compose ----------------------------------------------------------------------------------
def load_compose() -> dict:
    return YAML(typ="safe").load(COMPOSE.read_text())


def check_compose_schema(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
    )


def test_compose_file_follows_the_compose_specification(tmp_path):
    result = check_compose_schema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr
    # The same check rejects a mistake a person could make (capabilities must be a list).
    broken = tmp_path / "compose.yml"
    broken.write_text(COMPOSE.read_text().replace("capabilities: [gpu]", "capabilities: gpu", 1))
    assert check_compose_schema(broken).returncode != 0


def test_compose_service_has_the_gpu_the_models_the_engine_cache_and_a_health_check():
    compose = load_compose()
    service = compose["services"]["service"]
    assert (REPO / service["build"]["context"] / service["build"]["dockerfile"]) == DOCKERFILES["Dockerfile"]
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    environment = service["environment"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in service["volumes"]}  # target -> source
    assert mounts[environment["ADAFOCUS_MODEL_REPO"]] == "./model_repo"
    cache = mounts[environment["ADAFOCUS_TRT_CACHE_DIR"]]
    assert cache in compose["volumes"]  # a named volume: engines survive the container
    assert service["healthcheck"]["test"] == ["CMD", "python", "-m", "service.healthcheck"]
    assert "8000" in service["ports"][0]
    # Every ADAFOCUS_* variable the compose file sets is a setting of the service.
    assert {name.removeprefix("ADAFOCUS_").lower() for name in environment} <= set(Settings.model_fields)


def test_compose_train_profile_writes_into_the_same_model_repository():
    services = load_compose()["services"]
    train = services["train"]
    assert train["profiles"] == ["train"]
    assert (REPO / train["build"]["context"] / train["build"]["dockerfile"]) == DOCKERFILES["Dockerfile.train"]
    assert "./model_repo:/models" in train["volumes"]  # read-write, where the service reads it
    assert "./model_repo:/models:ro" in services["service"]["volumes"]
    command = " ".join(train["command"])
    assert "python training/train.py" in command and "python training/export.py" in command
    assert "--out /models" in command


def test_env_example_lists_every_variable_the_compose_file_reads():
    used = set(re.findall(r"(?<!\$)\$\{(\w+)", COMPOSE.read_text()))
    example = {
        line.split("=", 1)[0]
        for line in (REPO / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert used == example
    deployment_only = {"ADAFOCUS_PUBLISHED_PORT", "ADAFOCUS_IMAGE", "ADAFOCUS_TRAIN_IMAGE"}
    settings = {name.removeprefix("ADAFOCUS_").lower() for name in example if name.startswith("ADAFOCUS_")}
    assert settings - {n.removeprefix("ADAFOCUS_").lower() for n in deployment_only} <= set(Settings.model_fields)


# -- Dockerfiles ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_is_multi_stage_non_root_and_copies_what_exists(name):
    stages = read_dockerfile(DOCKERFILES[name])
    assert len(stages) >= 2, "multi-stage: build tools stay out of the image"
    final = stages[-1]
    users = final.all("USER")
    assert users and users[-1] not in ("0", "root"), "the final stage runs as a non-root user"
    assert exec_form(final.all("CMD")[-1])[0] == "python"
    ignored = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    for stage in stages:
        for source in copied_sources(stage):
            assert (REPO / source).exists(), f"{name} copies {source}, which does not exist"
            assert source.rstrip("/").split("/")[0] not in ignored, f"{source} is excluded by .dockerignore"


@pytest.mark.parametrize("name", SERVICE_IMAGES)
def test_service_images_run_the_service_without_torch(name):
    stages = read_dockerfile(DOCKERFILES[name])
    final = stages[-1]
    assert exec_form(final.all("CMD")[-1]) == ["python", "-m", "service"]
    health = final.all("HEALTHCHECK")[-1]
    assert exec_form(health[health.index("CMD") + 3 :]) == ["python", "-m", "service.healthcheck"]
    requirements = installed_requirements(stages)
    assert not any(re.match(r"torch\b", line) for line in requirements)
    assert "training/" not in copied_sources(final)
    copied = " ".join(copied_sources(final))
    for package in ("pipeline/", "service/", "model_repo/"):
        assert package in copied
    runtime = "onnxruntime-gpu" if name == "Dockerfile" else "onnxruntime=="
    assert any(line.startswith(runtime) for line in requirements)


def test_gpu_image_has_tensorrt_and_cuda_and_the_cpu_image_does_not():
    gpu, cpu = (read_dockerfile(DOCKERFILES[name]) for name in SERVICE_IMAGES)
    assert "cuda" in gpu[0].base.lower() or any("nvidia/cuda" in a for a in gpu[0].all("ARG"))
    assert any(line.startswith("tensorrt") for line in installed_requirements(gpu))
    assert not any("onnxruntime-gpu" in line or "tensorrt" in line for line in installed_requirements(cpu))
    environment = " ".join(gpu[-1].all("ENV"))
    assert "TensorrtExecutionProvider" in environment and "ADAFOCUS_TRT_CACHE_DIR=/cache/trt" in environment


def test_training_image_has_torch_and_the_training_code():
    stages = read_dockerfile(DOCKERFILES["Dockerfile.train"])
    assert any(line.startswith("torch==") for line in installed_requirements(stages))
    assert "training/" in copied_sources(stages[-1])
    assert "pipeline/" in copied_sources(stages[-1])


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_images_import_the_code_from_where_they_copy_it(name):
    """The images copy the packages to /app instead of installing the project: /app must be on the path."""
    final = read_dockerfile(DOCKERFILES[name])[-1]
    assert final.all("WORKDIR")[-1] == "/app"
    assert "PYTHONPATH=/app" in " ".join(final.all("ENV"))


def test_dockerfiles_pass_hadolint():
    result = subprocess.run(
        [str(BIN / "hadolint"), "--config", str(REPO / ".hadolint.yaml"), *map(str, DOCKERFILES.values())],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_images_run_the_commands_the_readme_documents():
    readme = (REPO / "README.md").read_text()
    deploy = (REPO / "docs" / "deploy.md").read_text()
    for name in SERVICE_IMAGES:
        assert " ".join(exec_form(read_dockerfile(DOCKERFILES[name])[-1].all("CMD")[-1])) in readme
    train_command = " ".join(exec_form(read_dockerfile(DOCKERFILES["Dockerfile.train"])[-1].all("CMD")[-1])[:2])
    assert train_command in readme  # python training/train.py
    assert "python training/export.py" in readme
    for step in ("docker compose up", "curl -f http://localhost:8000/readyz", "--profile train"):
        assert step in deploy


# -- the health check itself ------------------------------------------------------------------
class _Status(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 (the standard library's name)
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_healthcheck_exit_code_follows_readyz():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/readyz"
    try:
        assert healthcheck([url]) == 0
        _Status.status = 503  # loading
        assert healthcheck([url]) == 1
    finally:
        server.shutdown()
        server.server_close()
    assert healthcheck([url]) == 1  # nothing listening
