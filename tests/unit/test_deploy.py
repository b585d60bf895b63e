"""Deployment files: Kubernetes manifests validated against the Kubernetes schemas (the
ServiceMonitor, a CRD, against a schema of its required fields), the configs they carry
loaded by Hugind's loader, and the Dockerfiles read for what images cannot show here."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from hugind.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).parents[2]
K8S = ROOT / "deploy" / "kubernetes"
K8S_VERSION = "1.30.0"
# The fields of monitoring.coreos.com/v1 ServiceMonitor that the Prometheus Operator needs
# and that this manifest uses (its CRD is not in the Kubernetes schemas).
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object", "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {"type": "object", "required": ["matchLabels"]},
                "endpoints": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["port", "path"],
                    "additionalProperties": False,
                    "properties": {
                        "port": {"type": "string"}, "path": {"type": "string"},
                        "interval": {"type": "string", "pattern": r"^\d+[smh]$"},
                        "scrapeTimeout": {"type": "string", "pattern": r"^\d+[smh]$"},
                        "authorization": {
                            "type": "object", "required": ["type", "credentials"],
                            "properties": {
                                "type": {"const": "Bearer"},
                                "credentials": {"type": "object", "required": ["name", "key"]},
                            }}}}},
            }},
    },
}


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def manifests() -> dict[str, dict[str, Any]]:
    """Every resource the kustomization lists, by kind."""
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    return {d["kind"]: d for name in listed for d in docs(K8S / name)}


def merge(base: Any, patch: Any) -> Any:
    """A strategic-merge patch as kubectl applies it to these fields: maps merge, lists of
    named items (containers, env) merge by name, other lists are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = merge(base[key], value) if key in base else value
        return out
    if isinstance(base, list) and isinstance(patch, list) and all(
            isinstance(i, dict) and "name" in i for i in base + patch):
        named = {i["name"]: i for i in base}
        for item in patch:
            named[item["name"]] = merge(named.get(item["name"], {}), item)
        return list(named.values())
    return patch


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    [c] = deployment["spec"]["template"]["spec"]["containers"]
    return c


def cuda_deployment() -> dict[str, Any]:
    patch = docs(K8S / "cuda" / "gpu-patch.yaml")[0]
    return merge(copy.deepcopy(manifests()["Deployment"]), patch)


def test_kustomization_lists_every_manifest() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    cuda = yaml.safe_load((K8S / "cuda" / "kustomization.yaml").read_text())
    assert cuda["resources"] == [".."] and cuda["patches"] == [{"path": "gpu-patch.yaml"}]


@pytest.mark.parametrize("kind", ["Namespace", "ConfigMap", "Secret", "PersistentVolumeClaim",
                                  "Deployment", "Service"])
def test_manifest_matches_the_kubernetes_schema(kind: str) -> None:
    kubernetes_validate.validate(manifests()[kind], K8S_VERSION, strict=True)


def test_cuda_patch_gives_a_valid_deployment_with_a_gpu() -> None:
    deployment = cuda_deployment()
    kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    c = container(deployment)
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1 and c["image"].endswith(":cuda")
    assert {e["name"] for e in c["env"]} == {"HF_HOME", "NVIDIA_VISIBLE_DEVICES"}
    assert c["readinessProbe"] == container(manifests()["Deployment"])["readinessProbe"]


def test_service_monitor_scrapes_metrics_with_the_admin_key() -> None:
    m = manifests()
    monitor = m["ServiceMonitor"]
    jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
    assert monitor["spec"]["selector"]["matchLabels"].items() <= \
        m["Service"]["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in m["Service"]["spec"]["ports"]}
    credentials = endpoint["authorization"]["credentials"]
    assert credentials["name"] == m["Secret"]["metadata"]["name"]
    token = m["Secret"]["stringData"][credentials["key"]]
    assert token.strip() == token and "\n" not in token  # sent verbatim as the bearer token


def test_probes_hit_the_health_endpoints() -> None:
    c = container(manifests()["Deployment"])
    assert c["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert c["startupProbe"]["httpGet"]["path"] == "/health/live"
    assert c["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    ports = {p["name"] for p in c["ports"]}
    assert {c[p]["httpGet"]["port"] for p in ("livenessProbe", "readinessProbe",
                                              "startupProbe")} <= ports


def test_deployment_mounts_what_the_config_reads(tmp_path: Path) -> None:
    m = manifests()
    pod = m["Deployment"]["spec"]["template"]["spec"]
    mounts = {v["mountPath"]: v["name"] for v in container(m["Deployment"])["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == m["ConfigMap"]["metadata"]["name"]
    assert volumes["keys"]["secret"]["secretName"] == m["Secret"]["metadata"]["name"]
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == \
        m["PersistentVolumeClaim"]["metadata"]["name"]
    args = container(m["Deployment"])["args"]
    config_path = Path(args[-1])
    assert args[:2] == ["hugind", "serve"] and mounts[str(config_path.parent)] == "config"
    text = m["ConfigMap"]["data"][config_path.name]
    config = parse_config(yaml.safe_load(text))
    server = config.server
    key_files = [*server.api_key_files, *server.admin_key_files]
    assert key_files and {str(Path(f).parent) for f in key_files} == \
        {k for k, v in mounts.items() if v == "keys"}
    assert {Path(f).name for f in key_files} == set(m["Secret"]["stringData"])
    assert server.host == "0.0.0.0" and not server.api_keys
    assert Path(config.models_dir).is_relative_to("/var/lib/hugind")
    assert Path(config.sessions.dir).is_relative_to("/var/lib/hugind")
    assert mounts["/var/lib/hugind"] == "data"
    assert pod["terminationGracePeriodSeconds"] > server.shutdown_grace_s
    assert pod["securityContext"]["runAsNonRoot"] is True
    # The config loads as the pod would read it, key files included.
    for name, value in m["Secret"]["stringData"].items():
        (tmp_path / name).write_text(value)
    mounted = text.replace("/etc/hugind/keys", str(tmp_path))
    (tmp_path / "config.yaml").write_text(mounted)
    loaded = load_config(tmp_path / "config.yaml")
    assert len(loaded.server.client_keys()) == 2 and len(loaded.server.all_admin_keys()) == 1


# -- Docker ----------------------------------------------------------------------------------

def stages(dockerfile: Path) -> list[list[tuple[str, str]]]:
    """(instruction, arguments) per build stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            out.append([])
        if out:
            out[-1].append((word.upper(), rest.strip()))
    return out


def last(stage: list[tuple[str, str]], instruction: str) -> str:
    return [a for i, a in stage if i == instruction][-1]


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.cuda"])
def test_dockerfile_builds_in_one_stage_and_runs_slim_as_a_user(name: str) -> None:
    build, runtime = stages(ROOT / name)
    assert re.fullmatch(r"\S+ AS build", last(build, "FROM"))
    assert re.fullmatch(r"\S+ AS runtime", last(runtime, "FROM"))
    assert "pip install" in " ".join(a for i, a in build if i == "RUN")
    runtime_runs = " ".join(a for i, a in runtime if i == "RUN")
    assert "build-essential" not in runtime_runs and "cmake" not in runtime_runs
    assert any(i == "COPY" and a.startswith("--from=build ") for i, a in runtime)
    user = last(runtime, "USER").split(":")[0]
    assert user not in ("root", "0") and user
    health = last(runtime, "HEALTHCHECK")
    assert "/health/live" in health and "CMD" in health
    volumes = set(re.findall(r'"([^"]+)"', last(runtime, "VOLUME")))
    assert volumes == {"/var/lib/hugind/models", "/var/lib/hugind/sessions"}
    cmd = re.findall(r'"([^"]+)"', last(runtime, "CMD"))
    assert cmd[:2] == ["hugind", "serve"] and cmd[2] == "/etc/hugind/docker.yaml"


def test_cuda_image_compiles_for_cuda_on_cuda_images() -> None:
    build, runtime = stages(ROOT / "Dockerfile.cuda")
    assert "-DGGML_CUDA=on" in last(build, "ENV")
    assert "nvidia/cuda:" in last(build, "FROM") and "devel" in last(build, "FROM")
    assert "nvidia/cuda:" in last(runtime, "FROM") and "runtime" in last(runtime, "FROM")
    cpu_build, _ = stages(ROOT / "Dockerfile.cpu")
    assert "-DGGML_NATIVE=OFF" in last(cpu_build, "ENV")  # the image runs on other CPUs


def test_docker_env_config_needs_the_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUGIND_API_KEY", raising=False)
    monkeypatch.setenv("HUGIND_ADMIN_KEY", "admin-1")
    with pytest.raises(ConfigError, match=r"server\.api_keys\[0\]: .*HUGIND_API_KEY"):
        load_config(ROOT / "config" / "docker.yaml")
    monkeypatch.setenv("HUGIND_API_KEY", "client-1")
    server = load_config(ROOT / "config" / "docker.yaml").server
    assert server.host == "0.0.0.0" and server.client_keys() == [("client-1", None)]
    assert server.all_admin_keys() == ["admin-1"]


def test_docker_secrets_config_reads_key_files(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    (tmp_path / "api").write_text("# clients\nk1\nk2\n")
    (tmp_path / "admin").write_text("a1\n")
    monkeypatch.setenv("HUGIND_API_KEY_FILE", str(tmp_path / "api"))
    monkeypatch.setenv("HUGIND_ADMIN_KEY_FILE", str(tmp_path / "admin"))
    server = load_config(ROOT / "config" / "docker-secrets.yaml").server
    assert [k for k, _ in server.client_keys()] == ["k1", "k2"]
    assert server.all_admin_keys() == ["a1"] and server.host == "0.0.0.0"
    monkeypatch.delenv("HUGIND_API_KEY_FILE")  # the default: /run/secrets/hugind_api_keys
    with pytest.raises(ConfigError, match="hugind_api_keys"):
        load_config(ROOT / "config" / "docker-secrets.yaml")


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "models", "sessions"} <= set(ignored)
