"""The local Ray instances genflow starts (a stage's own, infra/local/with-ray.sh's head) listen on
loopback only, and leave no process behind however the stage or the script ends, `kill -9`
included (docs/reliability.md, "Leftovers and exposure"; issue #32).

Measured before the fix on Ray 2.60: the dashboard agent served an unauthenticated Prometheus
/metrics on 0.0.0.0, and after a `kill -9` of a stage its dashboard and runtime-env agents
(about 210 MB) lived on for about a minute."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
import yaml

from conftest import PYTHON, REPO, tiny_params_dict

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")]

WITH_RAY = REPO / "infra" / "local" / "with-ray.sh"
# After a SIGKILL the watchdog ends what is left within a second or two; Ray's agents on their own
# lived about 60 s, so this bound tells the two apart with room for a loaded machine.
GONE_WITHIN_S = 40.0
LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


def listening_beyond_loopback(processes: list[psutil.Process]) -> list[str]:
    """The sockets of ``processes`` that listen on an address other than loopback."""
    pids = {p.pid for p in processes}
    return [f"{c.laddr.ip}:{c.laddr.port} ({psutil.Process(c.pid).name()})" for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.pid in pids and c.laddr.ip not in LOOPBACK]


def unauthenticated_http_beyond_loopback(processes: list[psutil.Process]) -> list[str]:
    """Those sockets that answer an HTTP GET of / or /metrics without Ray's token (any status but
    401 / 403). Ray's gRPC servers answer no HTTP at all."""
    host = _primary_address()
    exposed = []
    for where in listening_beyond_loopback(processes):
        port = int(where.split(" ")[0].rsplit(":", 1)[1])
        exposed += [f"{where}: GET {path} -> {status}" for path in ("/", "/metrics")
                    if (status := _http_status(host, port, path)) not in (None, 401, 403)]
    return exposed


def _primary_address() -> str:
    addresses = [a.address for nic in psutil.net_if_addrs().values() for a in nic
                 if a.family == socket.AF_INET and not a.address.startswith("127.")]
    return addresses[0] if addresses else "127.0.0.1"


def _http_status(host: str, port: int, path: str) -> int | None:
    """The HTTP status a GET gets; None when what answers is not HTTP (gRPC) or nothing answers."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=2) as reply:
            return reply.status
    except urllib.error.HTTPError as err:
        return err.code
    except Exception:  # noqa: BLE001
        return None


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    return alive


def _wait_until_gone(processes: list[psutil.Process]) -> list[str]:
    deadline = time.monotonic() + GONE_WITHIN_S
    while (left := _alive(processes)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return [f"{p.pid} {p.name()}" for p in _alive(processes)]


def _wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 240.0) -> str:
    """Read the process's output until a line holding ``needle``; fail with what it printed."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        seen.append(line)
        if needle in line:
            return line
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"no line with {needle!r} (exit {proc.poll()}):\n{''.join(seen)[-4000:]}")


def test_genflow_local_ray_listens_on_loopback_only(ray_session):
    """The session's Ray was started by genflow's init_ray, as a stage starts its own: none of its
    processes (GCS, raylet, agents, dashboard, workers) listens beyond loopback, so nothing there
    answers an unauthenticated request (/metrics of the agent, the dashboard and the autoscaler
    did, on 0.0.0.0)."""
    ray_session.get(ray_session.remote(lambda: 1).remote())  # a worker is up too
    processes = psutil.Process().children(recursive=True)
    assert any("raylet" in p.name() for p in processes)
    assert listening_beyond_loopback(processes) == []


def test_a_killed_stage_leaves_no_ray_process(tmp_path, prepared_dir):
    """`kill -9` of a train stage's python process (what a user's `kill -9 <pid>` does), while it
    trains on the local Ray it started: every process of that Ray ends too."""
    raw = tiny_params_dict()
    gan = raw["models"]["gan_ring8"]
    gan["train"].update(steps=10_000_000, log_every=200, checkpoint_every=1_000_000)
    raw["models"] = {"gan_ring8": gan}
    raw["ray"].update(num_workers=1, storage_path=str(tmp_path / "storage"))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    stage = subprocess.Popen([str(PYTHON), str(REPO / "stages" / "train.py"), "--model", "gan_ring8",
                              "--params", str(tmp_path / "params.yaml"), "--data-root", str(prepared_dir),
                              "--out", str(tmp_path / "out")], cwd=tmp_path, env={**env, "PYTHONUNBUFFERED": "1"},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        _wait_for_line(stage, "step 200/")  # its Ray is fully up: agents, a worker training
        ray_processes = psutil.Process(stage.pid).children(recursive=True)
        assert len(ray_processes) > 5 and listening_beyond_loopback(ray_processes) == []
        os.kill(stage.pid, signal.SIGKILL)
        stage.wait(timeout=60)
        assert _wait_until_gone(ray_processes) == []
    finally:
        if stage.poll() is None:
            os.killpg(stage.pid, signal.SIGKILL)
        stage.stdout.close()


def _head_processes(head_pid: int) -> list[psutil.Process]:
    """The processes of with-ray.sh's head: its session (it starts the head with setsid)."""
    processes = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == head_pid:
                processes.append(process)
        except OSError:
            pass
    return processes


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL-process-group"])
def test_with_ray_sh_head_is_local_and_ends_with_its_command(tmp_path, how):
    """with-ray.sh's head listens on loopback only, and is gone, its temp dir too, once the script
    is killed: by SIGTERM to its PID (the command runs in its place, so the command gets it), or by
    SIGKILL to its whole process group (the head's watchdog lives in a session of its own)."""
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    env["PATH"] = f"{PYTHON.parent}{os.pathsep}{env.get('PATH', '')}"
    script = subprocess.Popen([str(WITH_RAY), "bash", "-c", 'echo "temp dir ${RAY_AUTH_TOKEN_PATH%/*}"; exec sleep 600'],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    try:
        head_pid = int(_wait_for_line(script, "[with-ray] local Ray head").split("(pid ")[1].split(",")[0])
        workdir = Path(_wait_for_line(script, "temp dir ").split("temp dir ", 1)[1].strip())
        head = _head_processes(head_pid)
        assert any("raylet" in p.name() for p in head) and listening_beyond_loopback(head) == []
        if how == "SIGTERM":
            os.kill(script.pid, signal.SIGTERM)
        else:
            os.killpg(script.pid, signal.SIGKILL)
        script.wait(timeout=60)
        assert _wait_until_gone(head) == []
        deadline = time.monotonic() + GONE_WITHIN_S
        while workdir.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not workdir.exists()
    finally:
        if script.poll() is None:
            os.killpg(script.pid, signal.SIGKILL)
        script.stdout.close()
