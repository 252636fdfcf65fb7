"""The one Ray session of a stage: connect to a cluster, or start a local instance.

Kept apart from ``ray_train`` so that the modules Ray workers import for plain tasks
(training seeds, evaluation shards, image decoding) do not pull in Ray Train: a worker
process imports the module of the function it runs, and ``ray.train.torch`` costs about
a second of CPU per worker on the 2-core machine.
"""
from __future__ import annotations

import inspect
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import ray
from ray._private import ray_constants

import genflow
from genflow.errors import ConfigError, GenflowError

# Ray must not wait on a phone-home connection that this network refuses.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# The Train controller polls its workers every 2 s by default, so every run (and every
# seed) idled up to 2 s after its last report; 0.5 s cuts ~4 s off a stage (docs/benchmarks.md).
RAY_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")}


def init_ray(ray_spec) -> None:
    """Connect to ``ray.address`` / RAY_ADDRESS, or start a local instance sized for the run;
    first refuse what would make Ray wait forever (check_before_ray)."""
    if ray.is_initialized():
        return
    address = ray_spec.address or os.environ.get("RAY_ADDRESS")
    check_before_ray(ray_spec, address)
    if address:
        # The cluster's workers run this driver's genflow, not whatever their image holds:
        # Ray uploads the package (content-addressed, so once per code revision) and puts it
        # first on the workers' path. check_worker_environment verifies it on every worker.
        context = ray.init(address=address, log_to_driver=True,
                           runtime_env={"env_vars": RAY_ENV, "py_modules": [str(Path(genflow.__file__).parent)]})
        _announce(f"attached to the Ray cluster at {address}", context)
        return
    os.environ.update(RAY_ENV)  # a local instance's processes inherit the driver's environment
    listen_on_loopback_only()
    cpus = max(os.cpu_count() or 1, int(ray_spec.num_workers * ray_spec.cpus_per_worker) + 1)
    context = ray.init(num_cpus=cpus, object_store_memory=256 << 20, include_dashboard=True,
                       dashboard_host=ray_spec.dashboard_host, log_to_driver=True, _temp_dir=private_temp_dir())
    _announce(f"started a local Ray instance ({cpus} CPUs) for this stage", context)


# Ray registers a node started on 127.0.0.1 under the host's primary address anyway, and then binds
# its gRPC servers and its Prometheus endpoints (unauthenticated /metrics of the dashboard agent, the
# dashboard and the autoscaler) on every interface. With "clusters" off (Ray's switch for Windows and
# macOS, where it runs single-node instances), the node's address is 127.0.0.1 and every one of them
# listens on loopback only. Measured with psutil on Ray 2.60 (tests/test_ray_leftovers.py).
LOOPBACK_NODE = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def listen_on_loopback_only() -> None:
    """Make the local instance this process starts a loopback-only, single-node one.

    The variable stays set: a client this process starts (a stage attached through RAY_ADDRESS,
    ``ray status``) must also resolve 127.0.0.1 as this node, not as the host's primary address.
    Ray read it when it was imported here, hence its constant is set as well. Clusters of several
    nodes (infra/local/cluster.sh, a real cluster) are started elsewhere and are not affected."""
    os.environ.update(LOOPBACK_NODE)
    ray_constants.ENABLE_RAY_CLUSTER = False


def private_temp_dir() -> str:
    """A temp dir of this instance's own for Ray's sessions, sockets and logs (not the shared
    /tmp/ray), and a watchdog that ends every process using it once this process has ended,
    however it ended (``kill -9`` included).

    Ray kills its GCS and raylet when the driver dies, but its dashboard and runtime-env agents
    then wait about a minute on the dead GCS (about 210 MB between them). Every Ray process of
    the instance names this directory on its command line or holds a log file open in it (the
    agents rename their process, so their command line does not tell). The watchdog is a bare
    interpreter in a session of its own (a Ctrl-C or a kill of the stage's process group misses
    it), reading a pipe whose write end only this process holds: the read returns when this
    process ends, and the watchdog SIGKILLs what is left. The logs stay, as Ray's own do.
    Linux only (it reads /proc); elsewhere Ray's own clean-up is all there is."""
    temp_dir = tempfile.mkdtemp(prefix="genflow-ray-", dir=os.environ.get("RAY_TMPDIR"))  # where Ray's would go
    if sys.platform.startswith("linux"):
        _start_watchdog(temp_dir)
    return temp_dir


_WATCHDOG_PIPES: list[int] = []  # the write ends, open for the whole life of this process


def _start_watchdog(temp_dir: str) -> None:
    read_end, write_end = os.pipe()  # not inheritable: no program this process starts holds the write end
    source = f"{inspect.getsource(_kill_what_uses_the_dir_at_eof)}\n_kill_what_uses_the_dir_at_eof()\n"
    subprocess.Popen([sys.executable, "-I", "-S", "-c", source, temp_dir], stdin=read_end,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    os.close(read_end)
    _WATCHDOG_PIPES.append(write_end)


def _kill_what_uses_the_dir_at_eof() -> None:
    """The watchdog's program (``python -c``, the directory as its argument; standard library
    only): wait for EOF on stdin, then SIGKILL every process whose command line names the
    directory or that holds a file open in it, until none is left (a dying raylet may still
    start one)."""
    import os
    import signal
    import sys
    import time

    root = os.path.realpath(sys.argv[1]).rstrip("/") + "/"

    def uses_the_dir(pid: str) -> bool:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if root.encode() in handle.read():
                    return True
            return any(os.readlink(f"/proc/{pid}/fd/{fd}").startswith(root) for fd in os.listdir(f"/proc/{pid}/fd"))
        except OSError:  # gone, or another user's
            return False

    sys.stdin.buffer.read()
    for _ in range(100):
        using = [int(pid) for pid in os.listdir("/proc") if pid.isdigit() and int(pid) != os.getpid()
                 and uses_the_dir(pid)]
        for pid in using:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if not using:
            return
        time.sleep(0.1)


CONNECT_TIMEOUT_S = 10.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_before_ray(ray_spec, address: str | None) -> None:
    """Settings that Ray accepts and then waits on forever, refused with the key named:

    - ``ray.use_gpu`` on this machine without CUDA, or with fewer GPUs than a run's
      ``ray.num_workers`` (one GPU each), when the cluster is a local one (started here, by
      infra/local/with-ray.sh or cluster.sh): it cannot gain a GPU the machine lacks, and Ray
      would keep the run pending. A remote cluster may autoscale GPU nodes (infra/ray/aws-gpu.yaml
      starts them at 0), so there the request is left to Ray;
    - an address nobody answers: ``ray.init`` retries for more than 10 minutes."""
    host, port = _host_port(address)
    if ray_spec.use_gpu and (address is None or address == "auto" or host in LOOPBACK):
        _check_local_gpus(ray_spec)
    if port is not None:
        try:
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
        except OSError as exc:
            raise ConfigError(f"ray.address / RAY_ADDRESS: no Ray cluster answers at {address} within "
                              f"{CONNECT_TIMEOUT_S:g} s ({exc.strerror or type(exc).__name__}); start one "
                              "(infra/local/cluster.sh start) or unset it to run on a local instance") from None


def _check_local_gpus(ray_spec) -> None:
    import torch

    if not torch.cuda.is_available():
        raise ConfigError("ray.use_gpu: true, but this machine has no CUDA GPU (torch.cuda.is_available() is "
                          "False) and the Ray cluster runs on it; set ray.use_gpu: false, or point "
                          "ray.address / RAY_ADDRESS at a cluster with GPU nodes")
    gpus, workers = torch.cuda.device_count(), ray_spec.num_workers
    if workers > gpus:  # a data-parallel run needs all its workers at once, one GPU each
        raise ConfigError(f"ray.num_workers: {workers} workers with ray.use_gpu take one GPU each, but this machine "
                          f"has {gpus} and the Ray cluster runs on it; set ray.num_workers: {gpus} or fewer (keep "
                          "the global batch: batch_size x num_workers), or point ray.address / RAY_ADDRESS at a "
                          "cluster with more GPUs")


def _host_port(address: str | None) -> tuple[str | None, int | None]:
    """``host:port`` or ``ray://host:port`` -> (host, port); (None, None) for none or "auto"."""
    if not address or address == "auto":
        return None, None
    host, _, port = address.removeprefix("ray://").rpartition(":")
    return (host.strip("[]"), int(port)) if host and port.isdigit() else (address, None)


def _announce(what: str, context) -> None:
    """One line a person can act on: where the stage runs and where to watch it."""
    url = getattr(context, "dashboard_url", None)
    if url and "://" not in url:
        url = f"http://{url}"
    print(f"[ray] {what}; dashboard {url or 'not running'}", flush=True)


def worker_bar(config):
    """Live bars on a Ray worker when the driver is in a terminal (``config.progress``, a
    WorkerConfig's): Ray's tqdm_ray, which the driver draws, one bar per run; otherwise None."""
    if config.progress != "bar":
        return None
    from ray.experimental.tqdm_ray import tqdm

    return lambda desc, total: tqdm(desc=desc, total=total, unit="step")


class WorkerLostError(GenflowError):
    """A Ray worker process died (SIGKILL, the OOM killer, a lost node) more often than
    ``ray.max_failures`` let Ray restart it. Exit 2 like every GenflowError: the run's own state is
    intact (every checkpoint passed its checks), and the remedy is a setting or a rerun."""


def worker_lost(label: str, max_failures: int, last_checkpoint: str) -> WorkerLostError:
    """One line instead of Ray's traceback: what happened, the key that makes a run survive it,
    and where a rerun resumes."""
    how_often = ("and ray.max_failures is 0, so Ray did not restart it" if max_failures == 0 else
                 f"{max_failures + 1} times, more than ray.max_failures ({max_failures}) lets Ray restart it")
    return WorkerLostError(f"{label}: a Ray worker process died (killed, out of memory, or its node was lost) "
                           f"{how_often}; raise ray.max_failures to have Ray restart the run from its last "
                           f"checkpoint, or rerun the stage to resume from it: {last_checkpoint}")


def storage_path(ray_spec) -> str:
    path = ray_spec.storage_path
    return path if "://" in path else str(Path(path).resolve())
