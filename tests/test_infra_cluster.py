"""Multi-node on one machine: infra/local/cluster.sh starts a head and a worker node on loopback,
`genflow train` runs a 2-worker DDP job placed with STRICT_SPREAD (one worker per node), and
`cluster.sh stop` ends exactly the processes it started."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from conftest import PYTHON, REPO, tiny_params_dict

pytestmark = pytest.mark.slow

SCRIPT = REPO / "infra" / "local" / "cluster.sh"
STEPS = 6


def _env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    return {**env, "PATH": f"{PYTHON.parent}{os.pathsep}{env.get('PATH', '')}", "RAY_USAGE_STATS_ENABLED": "0",
            "OMP_NUM_THREADS": "1", **extra}


def _live_pids_in_groups(groups: set[int]) -> set[int]:
    """Processes (not zombies) whose process group is one of ``groups``."""
    out = subprocess.run(["ps", "-eo", "pid=,pgid=,stat="], capture_output=True, text=True, check=True).stdout
    rows = (line.split() for line in out.splitlines())
    return {int(pid) for pid, pgid, stat in rows if int(pgid) in groups and not stat.startswith("Z")}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("cluster") / "state"
    started = subprocess.run(["bash", str(SCRIPT), "start", "--workers", "1", "--cpus", "1", "--state", str(state)],
                             env=_env(), capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stdout + started.stderr
    address = f"127.0.0.1:{(state / 'port').read_text().strip()}"
    assert f"export RAY_ADDRESS={address}" in started.stdout
    groups = {int((state / f"{node}.pid").read_text()) for node in ("head", "worker-1")}
    token = state / "auth_token"  # made by start: a fresh machine has no ~/.ray/auth_token
    assert f"RAY_AUTH_TOKEN_PATH={token}" in started.stdout and token.stat().st_mode & 0o077 == 0
    yield {"address": address, "state": state, "groups": groups, "token": str(token)}
    subprocess.run(["bash", str(SCRIPT), "stop", "--state", str(state)], env=_env(), timeout=120)


@pytest.fixture(scope="module")
def spread_run(cluster, prepared_dir, tmp_path_factory):
    """`genflow train` as the train stage runs it, attached to the cluster through RAY_ADDRESS.

    The driver imports a copy of genflow that differs from the one the nodes' Python finds (one
    comment line): the run only passes the workers' code check if Ray ships the driver's code."""
    root = tmp_path_factory.mktemp("spread")
    shutil.copytree(REPO / "genflow", root / "code" / "genflow", ignore=shutil.ignore_patterns("__pycache__"))
    with open(root / "code" / "genflow" / "__init__.py", "a") as handle:
        handle.write("# the driver's revision\n")
    raw = tiny_params_dict()
    gan = raw["models"]["gan_ring8"]
    gan["train"].update(steps=STEPS, log_every=2, checkpoint_every=3)
    raw["models"] = {"gan_ring8": gan}
    raw["ray"].update(num_workers=2, cpus_per_worker=1.0, placement_strategy="STRICT_SPREAD",
                      storage_path=str(root / "storage"))
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    proc = subprocess.run([str(PYTHON), "-m", "genflow.cli", "train", "--model", "gan_ring8",
                           "--data-root", str(prepared_dir), "--out", str(root / "out")],
                          cwd=root, env=_env(RAY_ADDRESS=cluster["address"], RAY_AUTH_MODE="token",
                                             RAY_AUTH_TOKEN_PATH=cluster["token"], PYTHONPATH=str(root / "code")),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    return root, proc.stdout + proc.stderr


def test_cluster_has_two_nodes(cluster):
    status = subprocess.run(["bash", str(SCRIPT), "status", "--state", str(cluster["state"])],
                            env=_env(RAY_AUTH_MODE="token"), capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    nodes = [line.split() for line in status.stdout.splitlines() if line.startswith("node ")]
    assert sorted(n[2] for n in nodes) == ["head", "worker"] and {n[4] for n in nodes} == {"CPU=1"}, status.stdout


def test_no_node_answers_http_beyond_loopback_without_the_token(cluster):
    """The nodes register under the host's address, so their servers listen on every interface: the
    gRPC ones (token-protected, no HTTP), the agents' HTTP (401 without the token), and no Prometheus
    endpoint (cluster.sh turns them off: they answered /metrics to anyone). Measured: the agents'
    /api/healthz stays public (Ray's own choice; it answers a fixed "success")."""
    import psutil

    from test_ray_leftovers import unauthenticated_http_beyond_loopback

    nodes = [p for p in psutil.process_iter() if _pgid(p.pid) in cluster["groups"]]
    assert any("raylet" in p.name() for p in nodes)
    assert unauthenticated_http_beyond_loopback(nodes) == []


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def test_strict_spread_run_trains_and_checkpoints(spread_run):
    from genflow.io import sha256_file
    from genflow.train import checkpoint

    root, output = spread_run
    out = root / "out" / "seed_0"
    meta = json.loads((out / "meta.json").read_text())
    assert meta["world_size"] == 2 and meta["step"] == STEPS and meta["name"] == "gan_ring8"
    assert meta["state_sha256"] == sha256_file(out / "state.pt")
    state, log, _ = checkpoint.load(out)
    assert state["step"] == STEPS and [row["step"] for row in log] == [2, 4, 6]
    # the worker nodes' output reaches the driver once (one log monitor for the shared session)
    assert output.count("[gan_ring8 seed 0] step 2/6 ") == 1, output[-3000:]


def test_worker_refuses_other_code_or_unreachable_data(tmp_path):
    from genflow.errors import DataError
    from genflow.io import package_digest
    from genflow.train.worker_config import check_worker_environment

    def config(code_digest, data_dir):  # the two fields of a WorkerConfig the check reads
        return SimpleNamespace(code_digest=code_digest, data_dir=str(data_dir))

    check_worker_environment(config(package_digest(), tmp_path))
    with pytest.raises(RuntimeError, match="not the driver's code"):
        check_worker_environment(config("0" * 16, tmp_path))
    with pytest.raises(DataError, match="not visible on node .*storage every node mounts"):
        check_worker_environment(config(package_digest(), tmp_path / "absent"))


def test_workers_ran_on_different_nodes(cluster, spread_run):
    listed = subprocess.run(["ray", "list", "actors", "--address", cluster["address"], "--filter",
                             "class_name=RayTrainWorker", "--detail", "--format", "json"],
                            env=_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=cluster["token"]), capture_output=True,
                            text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    workers = json.loads(listed.stdout)
    assert len(workers) == 2 and len({w["node_id"] for w in workers}) == 2, workers


def _ray_daemons() -> set[int]:
    out = subprocess.run(["ps", "-eo", "pid=,stat=,comm="], capture_output=True, text=True, check=True).stdout
    return {int(pid) for pid, stat, comm in (line.split(None, 2) for line in out.splitlines())
            if comm.strip() in ("raylet", "gcs_server") and not stat.startswith("Z")}


def test_stop_ends_only_the_cluster_processes(cluster, spread_run):
    """Runs last in this module: it stops the cluster. Every other process survives: Ray
    daemons this script did not start (the test session's own Ray, when it is up) and a
    stand-in in a process group of its own."""
    bystander = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        ours = _live_pids_in_groups(cluster["groups"])
        others = _ray_daemons() - ours
        assert ours and (_ray_daemons() & ours)
        stopped = subprocess.run(["bash", str(SCRIPT), "stop", "--state", str(cluster["state"])],
                                 env=_env(), capture_output=True, text=True, timeout=120)
        assert stopped.returncode == 0 and "stopped 2 nodes" in stopped.stdout, stopped.stdout + stopped.stderr
        assert not _live_pids_in_groups(cluster["groups"])
        assert not Path(cluster["state"]).exists()
        assert bystander.poll() is None and others <= _ray_daemons()
    finally:
        bystander.kill()
