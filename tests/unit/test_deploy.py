"""Deployment files: Kubernetes manifests, and the overlays built from them, validated against
the Kubernetes schemas (the ServiceMonitor, a CRD, against a schema of its required fields),
the configs they carry loaded by Hugind's loader, the nginx example checked by ``nginx -t``,
and the Dockerfiles read for what images cannot show here."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from hugind.config import ConfigError, SessionsConfig, load_config, parse_config

ROOT = Path(__file__).parents[2]
K8S = ROOT / "deploy" / "kubernetes"
BASE = K8S / "base"
NGINX_CONF = ROOT / "deploy" / "nginx" / "hugind.conf"
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


def kustomization(folder: Path) -> dict[str, Any]:
    return yaml.safe_load((folder / "kustomization.yaml").read_text())


def manifests() -> dict[str, dict[str, Any]]:
    """Every resource the base kustomization lists, by kind."""
    listed = kustomization(BASE)["resources"]
    return {d["kind"]: d for name in listed for d in docs(BASE / name)}


def merge(base: Any, patch: Any) -> Any:
    """A strategic-merge patch as kubectl applies it to these fields: maps merge, lists of
    named items (containers, env, volumes, volumeMounts) merge by name and drop an item
    marked ``$patch: delete``, other lists are replaced. (kubectl merges volumeMounts by
    mountPath; every mount here has its own name and a deleted one names both.)"""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = merge(base[key], value) if key in base else value
        return out
    if isinstance(base, list) and isinstance(patch, list) and all(
            isinstance(i, dict) and "name" in i for i in base + patch):
        named = {i["name"]: i for i in base}
        for item in patch:
            if item.get("$patch") == "delete":
                del named[item["name"]]
            else:
                named[item["name"]] = merge(named.get(item["name"], {}), item)
        return list(named.values())
    return patch


def render(folder: Path) -> list[dict[str, Any]]:
    """The resources ``kubectl kustomize folder`` builds, as these kustomizations use it: the
    resources (files, or folders built in turn), the strategic-merge patches (a resource
    marked ``$patch: delete`` is dropped), then the namespace on every namespaced one."""
    k = kustomization(folder)
    out: list[dict[str, Any]] = []
    for name in k.get("resources", []):
        path = folder / name
        out += render(path) if path.is_dir() else docs(path)
    for entry in k.get("patches", []):
        for patch in docs(folder / entry["path"]):
            [i] = [i for i, r in enumerate(out) if (r["kind"], r["metadata"]["name"]) ==
                   (patch["kind"], patch["metadata"]["name"])]
            if patch.get("$patch") == "delete":
                del out[i]
            else:
                out[i] = merge(out[i], patch)
    if "namespace" in k:
        out = [r if r["kind"] == "Namespace" else
               merge(r, {"metadata": {"namespace": k["namespace"]}}) for r in out]
    return out


def by_kind(resources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    kinds = [r["kind"] for r in resources]
    assert len(set(kinds)) == len(kinds), kinds
    return {r["kind"]: r for r in resources}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    [c] = deployment["spec"]["template"]["spec"]["containers"]
    return c


def cuda_deployment() -> dict[str, Any]:
    return by_kind(render(K8S / "cuda"))["Deployment"]


def replicas() -> dict[str, dict[str, Any]]:
    return by_kind(render(K8S / "replicas"))


def test_kustomization_lists_every_manifest() -> None:
    listed = set(kustomization(BASE)["resources"])
    assert listed == {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert kustomization(K8S)["resources"] == ["base"]
    cuda = kustomization(K8S / "cuda")
    assert cuda["resources"] == ["../base"] and cuda["patches"] == [{"path": "gpu-patch.yaml"}]
    overlay = kustomization(K8S / "replicas")
    used = {*overlay["resources"], *(p["path"] for p in overlay["patches"])}
    assert used == {"../base"} | {p.name for p in (K8S / "replicas").glob("*.yaml")} - \
        {"kustomization.yaml"}


@pytest.mark.parametrize("folder", ["", "cuda", "replicas"])
def test_no_kustomization_uses_a_folder_that_holds_it(folder: str) -> None:
    # kustomize refuses it ("cycle detected: candidate root ... contains visited root").
    here = (K8S / folder).resolve()
    for name in kustomization(here)["resources"]:
        if (here / name).is_dir():
            assert not here.is_relative_to((here / name).resolve()), name


def identity(resource: dict[str, Any]) -> tuple[str, str]:
    return resource["kind"], resource["metadata"]["name"]


def normalized(node: Any) -> Any:
    """Lists of named items in name order (kustomize puts a patch's new items first)."""
    if isinstance(node, dict):
        return {k: normalized(v) for k, v in node.items()}
    if isinstance(node, list):
        items = [normalized(i) for i in node]
        if all(isinstance(i, dict) and "name" in i for i in items):
            items.sort(key=lambda i: i["name"])
        return items
    return node


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("folder", ["", "cuda", "replicas"])
def test_kustomize_builds_what_these_tests_check(folder: str) -> None:
    built = subprocess.run(["kubectl", "kustomize", str(K8S / folder)], capture_output=True,
                           text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    assert sorted((normalized(d) for d in yaml.safe_load_all(built.stdout) if d), key=identity) \
        == sorted((normalized(r) for r in render(K8S / folder)), key=identity)


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


def test_replicas_overlay_matches_the_kubernetes_schema() -> None:
    for resource in render(K8S / "replicas"):
        if resource["kind"] == "ServiceMonitor":
            jsonschema.validate(resource, SERVICE_MONITOR_SCHEMA)
        else:
            kubernetes_validate.validate(resource, K8S_VERSION, strict=True)


def test_replicas_roll_three_pods_on_a_shared_sessions_volume() -> None:
    m = replicas()
    deployment = m["Deployment"]
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    # The base's one ReadWriteOnce claim is gone: every claim left is ReadWriteMany.
    claim = m["PersistentVolumeClaim"]
    assert claim["metadata"]["name"] == "hugind-sessions"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
              if "persistentVolumeClaim" in v}
    assert claims == {"hugind-sessions"}
    assert "emptyDir" in volumes["models"]  # each pod assembles its own model file
    # The base's pod and container security, probes and grace period are kept.
    base = manifests()["Deployment"]
    base_pod = base["spec"]["template"]["spec"]
    for key in ("securityContext", "terminationGracePeriodSeconds"):
        assert pod[key] == base_pod[key]
    for key in ("securityContext", "startupProbe", "livenessProbe", "readinessProbe",
                "image", "args", "resources"):
        assert container(deployment)[key] == container(base)[key]


def test_replicas_config_shares_sessions_named_after_the_pod(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    m = replicas()
    c = container(m["Deployment"])
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    mounts = {v["mountPath"]: v["name"] for v in c["volumeMounts"]}
    volumes = {v["name"]: v for v in m["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    config_path = Path(c["args"][-1])
    assert mounts[str(config_path.parent)] == "config"
    assert volumes["config"]["configMap"]["name"] == m["ConfigMap"]["metadata"]["name"]
    text = m["ConfigMap"]["data"][config_path.name]
    monkeypatch.delenv("POD_NAME", raising=False)
    with pytest.raises(ConfigError, match=r"sessions\.replica_id: .*POD_NAME"):
        parse_config(yaml.safe_load(text))
    monkeypatch.setenv("POD_NAME", "hugind-6d9f7c-x2x4q")
    for name, value in m["Secret"]["stringData"].items():
        (tmp_path / name).write_text(value)
    (tmp_path / "config.yaml").write_text(text.replace("/etc/hugind/keys", str(tmp_path)))
    config = load_config(tmp_path / "config.yaml")
    sessions = config.sessions
    assert sessions.shared and sessions.flush_s > 0
    assert sessions.replica_id == "hugind-6d9f7c-x2x4q"
    assert mounts[sessions.dir] == "sessions" and mounts[config.models_dir] == "models"
    assert volumes["sessions"]["persistentVolumeClaim"]["claimName"] == \
        m["PersistentVolumeClaim"]["metadata"]["name"]
    # The rest is the base's config, so the two stay alike.
    base = yaml.safe_load(manifests()["ConfigMap"]["data"][config_path.name])
    shared = yaml.safe_load(text)
    assert base["sessions"].items() <= shared["sessions"].items()
    assert {k: v for k, v in shared.items() if k != "sessions"} == \
        {k: v for k, v in base.items() if k != "sessions"}


def test_replicas_ingress_hashes_on_the_session_header_and_streams() -> None:
    m = replicas()
    ingress = m["Ingress"]
    notes = ingress["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    assert notes[prefix + "upstream-hash-by"] == "$http_x_session_id"
    assert notes[prefix + "proxy-buffering"] == "off"
    assert notes[prefix + "proxy-request-buffering"] == "off"
    assert int(notes[prefix + "proxy-read-timeout"]) >= 600
    size = re.fullmatch(r"(\d+)([mg])", notes[prefix + "proxy-body-size"])
    assert size
    config = yaml.safe_load(m["ConfigMap"]["data"]["config.yaml"])
    max_import_mb = config["sessions"].get("max_import_mb", SessionsConfig().max_import_mb)
    assert int(size[1]) * (1024 if size[2] == "g" else 1) >= max_import_mb
    [rule] = ingress["spec"]["rules"]
    [path] = rule["http"]["paths"]
    backend = path["backend"]["service"]
    assert backend["name"] == m["Service"]["metadata"]["name"]
    assert backend["port"]["name"] in {p["name"] for p in m["Service"]["spec"]["ports"]}


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


# -- nginx -----------------------------------------------------------------------------------

def nginx_directives() -> str:
    """The example without its comments, one space between words."""
    text = re.sub(r"#[^\n]*", "", NGINX_CONF.read_text())
    return re.sub(r"\s+", " ", text)


def test_nginx_example_passes_nginx_t(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if nginx is None:
        pytest.skip("nginx is not installed")
    (tmp_path / "logs").mkdir()  # the example's pid file, logs and temp folders are under -p
    done = subprocess.run([nginx, "-t", "-c", str(NGINX_CONF), "-p", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


def test_nginx_example_hashes_on_the_session_header() -> None:
    conf = nginx_directives()
    assert 'map $http_x_session_id $affinity { "" $remote_addr; default $http_x_session_id; }' \
        in conf
    upstream = re.search(r"upstream hugind \{([^}]*)\}", conf)
    assert upstream
    body = upstream[1]
    assert body.strip().startswith("hash $affinity consistent;")
    servers = re.findall(r"server (\S+) ([^;]*);", body)
    assert len(servers) == 3
    assert all(options == "max_fails=1 fail_timeout=10s" for _, options in servers)
    assert "keepalive" in body
    for directive in ("proxy_pass http://hugind;", "proxy_http_version 1.1;",
                      'proxy_set_header Connection "";', "proxy_buffering off;",
                      "proxy_request_buffering off;", "proxy_read_timeout 600s;",
                      "client_max_body_size 1g;",
                      "proxy_next_upstream error timeout http_502 http_503;"):
        assert directive in conf, directive


def test_nginx_example_logs_no_credentials_or_bodies() -> None:
    conf = nginx_directives()
    [log_format] = re.findall(r"log_format hugind ([^;]*);", conf)
    for variable in ("$http_authorization", "$http_x_api_key", "$http_cookie", "$request_body",
                     "$request ", '$request"', "$request_uri", "$args", "$query_string"):
        assert variable not in log_format, variable
    assert re.findall(r"access_log (\S+) (\S+);", conf) == [("logs/access.log", "hugind")]


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
