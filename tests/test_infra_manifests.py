"""infra/: every YAML manifest parses and carries the keys the cluster launcher / KubeRay need,
and every image tag, Ray version and package pin agrees with infra/versions.env."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from conftest import REPO

INFRA = REPO / "infra"
K8S = sorted((INFRA / "k8s").glob("*.yaml"))
LAUNCHER = sorted((INFRA / "ray").glob("*.yaml"))
SCRIPTS = [INFRA / "local" / "cluster.sh", INFRA / "local" / "with-ray.sh", INFRA / "docker" / "build.sh",
           INFRA / "remote" / "dvc-repro.sh"]


def _versions() -> dict[str, str]:
    lines = (INFRA / "versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


V = _versions()
TAGS = {f"{V['IMAGE']}:{V['GENFLOW_VERSION']}-ray{V['RAY_VERSION']}-{V[index]}"
        for index in ("CPU_TORCH_INDEX", "GPU_TORCH_INDEX")}


def _docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _walk(node):
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        yield from _walk(child)


def _cluster_specs() -> list[tuple[str, dict]]:
    """Every RayCluster spec: standalone ones and those embedded in RayJobs."""
    specs = []
    for path in K8S:
        for doc in _docs(path):
            if doc["kind"] == "RayCluster":
                specs.append((path.name, doc["spec"]))
            elif doc["kind"] == "RayJob":
                specs.append((path.name, doc["spec"]["rayClusterSpec"]))
    return specs


def _pods(spec: dict) -> list[dict]:
    return [spec["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in spec["workerGroupSpecs"]]


def test_versions_match_the_project_pins():
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", (REPO / "constraints.txt").read_text(), re.M))
    assert pins["ray"] == V["RAY_VERSION"] and pins["torch"] == V["TORCH_VERSION"]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["version"] == V["GENFLOW_VERSION"]
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == V["PYTHON_VERSION"]
    import ray
    assert ray.__version__ == V["RAY_VERSION"]


def test_dockerfile_builds_the_pinned_variants():
    text = (INFRA / "docker" / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
    assert args["PYTHON_VERSION"] == V["PYTHON_VERSION"] and args["RAY_VERSION"] == V["RAY_VERSION"]
    assert args["TORCH_VERSION"] == V["TORCH_VERSION"] and args["TORCH_INDEX"] == V["CPU_TORCH_INDEX"]
    assert re.search(r"^FROM python:\$\{PYTHON_VERSION\}-slim-\w+$", text, re.M)
    assert "-c constraints.txt" in text and "ray.__version__ == '${RAY_VERSION}'" in text
    for source in re.findall(r"^COPY (.+) \S+$", text, re.M):  # everything it copies exists
        for path in source.split():
            assert (REPO / path.rstrip("/")).exists(), path
    build = (INFRA / "docker" / "build.sh").read_text()
    assert "source infra/versions.env" in build and "GPU_TORCH_INDEX" in build


def test_cluster_launcher_yaml_has_what_ray_up_needs():
    assert LAUNCHER
    for path in LAUNCHER:
        (cfg,) = _docs(path)
        for key in ("cluster_name", "max_workers", "provider", "auth", "available_node_types", "head_node_type",
                    "head_start_ray_commands", "worker_start_ray_commands"):
            assert key in cfg, f"{path.name}: {key}"
        assert cfg["provider"]["type"] in {"aws", "gcp", "azure"} and cfg["provider"]["region"]
        types = cfg["available_node_types"]
        assert cfg["head_node_type"] in types
        for name, node in types.items():
            assert {"node_config", "resources", "max_workers"} <= set(node), name
            assert node.get("min_workers", 0) <= node["max_workers"] <= cfg["max_workers"]
        assert any(node["resources"].get("GPU", 0) >= 1 and node["max_workers"] > 0 for node in types.values())
        assert cfg["docker"]["image"] in TAGS
        assert any(opt.startswith("--shm-size=") for opt in cfg["docker"]["run_options"])
        setup = " ".join(cfg["setup_commands"])
        assert "pip install" in setup and "-e ." in setup and f"'{V['RAY_VERSION']}'" in setup
        head = " ".join(cfg["head_start_ray_commands"])
        assert "--head" in head and "--dashboard-host=127.0.0.1" in head


def test_kuberay_clusters_are_pinned_authenticated_and_private():
    specs = _cluster_specs()
    assert {name for name, _ in specs} == {"raycluster.yaml", "rayjob-train.yaml", "rayjob-sweep.yaml"}
    workspace = {d["kind"]: d for d in _docs(INFRA / "k8s" / "workspace.yaml")}
    claim = workspace["PersistentVolumeClaim"]["metadata"]["name"]
    account = workspace["ServiceAccount"]["metadata"]["name"]
    assert workspace["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]
    policy_labels = workspace["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"]
    for name, spec in specs:
        assert spec["rayVersion"] == V["RAY_VERSION"], name
        assert spec["authOptions"]["mode"] == "token", name
        assert spec["headGroupSpec"].get("serviceType", "ClusterIP") == "ClusterIP", name
        assert spec["headGroupSpec"]["template"]["metadata"]["labels"].items() >= policy_labels.items()
        for pod in _pods(spec):
            assert pod["serviceAccountName"] == account
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert any(v.get("persistentVolumeClaim", {}).get("claimName") == claim for v in volumes.values())
            assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
            for container in pod["containers"]:
                assert container["image"] in TAGS, (name, container["image"])
                assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/workspace", "/dev/shm"}
        gpu_groups = [g for g in spec["workerGroupSpecs"]
                      if g["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu")]
        assert gpu_groups, name
        for group in spec["workerGroupSpecs"]:
            assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    # one cluster definition, three copies: they must not drift apart
    assert all(spec == specs[0][1] for _, spec in specs)
    # no Ingress, LoadBalancer or NodePort anywhere
    for path in K8S:
        for doc in _docs(path):
            assert doc["kind"] != "Ingress" and not {"LoadBalancer", "NodePort"} & set(map(str, _walk(doc)))


def test_rayjobs_run_real_stages_through_the_entrypoint():
    stages = set(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])
    for path in (INFRA / "k8s" / "rayjob-train.yaml", INFRA / "k8s" / "rayjob-sweep.yaml"):
        (job,) = _docs(path)
        spec = job["spec"]
        script, *targets = spec["entrypoint"].removeprefix("bash ").split()
        assert script == "/opt/genflow/infra/remote/dvc-repro.sh" and targets and set(targets) <= stages
        assert spec["shutdownAfterJobFinishes"] is True and spec["activeDeadlineSeconds"] > 0
        env = yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]
        assert {"GENFLOW_GIT_URL", "GENFLOW_GIT_REV", "GENFLOW_WORKDIR", "GENFLOW_DVC_REMOTE"} <= set(env)
        submitter = spec["submitterPodTemplate"]["spec"]["containers"][0]
        assert submitter["image"] in TAGS
        token = {e["name"]: e for e in submitter["env"]}["RAY_AUTH_TOKEN"]
        assert token["valueFrom"]["secretKeyRef"]["key"] == "auth_token"  # from the Secret, never inline


def test_no_credentials_in_any_manifest():
    texts = [p.read_text() for p in [*K8S, *LAUNCHER, INFRA / "docker" / "Dockerfile"]]
    for text in texts:
        assert not re.search(r"AKIA[0-9A-Z]{16}|aws_secret_access_key|auth_token:\s*\S", text, re.I)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_parse_and_explain_themselves(script):
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    shown = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0 and len(shown.stdout.splitlines()) >= 2, shown.stderr
