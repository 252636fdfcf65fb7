"""Fixed Ray cost of one train stage: ray.init, a no-op TorchTrainer.fit, ray.shutdown.

Runs each measurement in a fresh process (so ray.init is cold) with the Train controller's
health-check interval at Ray's default (2 s) and at genflow's setting (0.5 s), and the whole
train stage for one step: standalone, attached to a running head, and in-process.
Writes bench/results/ray_overhead.json.

    .venv/bin/python bench/ray_overhead.py
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = r"""
import json, os, sys, time
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
t0 = time.perf_counter(); import ray; from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
t1 = time.perf_counter(); ray.init(num_cpus=2, object_store_memory=256 << 20, include_dashboard=True)
t2 = time.perf_counter()
def noop(config):
    import ray.train
    ray.train.report({"done": 1})
TorchTrainer(noop, scaling_config=ScalingConfig(num_workers=1),
             run_config=RunConfig(name="noop", storage_path=sys.argv[1])).fit()
t3 = time.perf_counter(); ray.shutdown(); t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "ray_init_s": t2 - t1, "noop_fit_s": t3 - t2, "shutdown_s": t4 - t3}))
"""


def probe(health_check: str, storage: Path) -> dict:
    env = {**os.environ, "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": health_check}
    out = subprocess.run([sys.executable, "-c", PROBE, str(storage)], env=env, capture_output=True, text=True,
                         check=True).stdout
    return {k: round(v, 2) for k, v in json.loads(out.strip().splitlines()[-1]).items()}


def stage_seconds(*prefix: str, extra: list[str]) -> float:
    cmd = [*prefix, sys.executable, "stages/train.py", "--model", "gan_ring8", "--out", "/tmp/genflow-bench-model",
           "--set", "models.gan_ring8.train.steps=1", *extra]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    return round(time.perf_counter() - start, 2)


def main() -> None:
    storage = Path("/tmp/genflow-bench-ray")
    results = {"ray_default_health_check_2s": probe("2.0", storage), "genflow_health_check_0.5s": probe("0.5", storage)}
    results["train_stage_1_step_s"] = {
        "own_ray_instance": stage_seconds(extra=[]),
        "in_process_num_workers_0": stage_seconds(extra=["--set", "ray.num_workers=0"]),
    }
    # attached: both runs share one head; the first pays worker-process warm-up
    attached = subprocess.run(["infra/local/with-ray.sh", sys.executable, "-c",
                               "import subprocess,sys,time\n"
                               "ts=[]\n"
                               "for _ in range(2):\n"
                               "    t=time.perf_counter()\n"
                               "    subprocess.run([sys.executable,'stages/train.py','--model','gan_ring8','--out',"
                               "'/tmp/genflow-bench-model','--set','models.gan_ring8.train.steps=1'],check=True,"
                               "capture_output=True)\n"
                               "    ts.append(round(time.perf_counter()-t,2))\n"
                               "print(ts)"], cwd=ROOT, check=True, capture_output=True, text=True,
                              env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    results["train_stage_1_step_s"]["attached_to_local_head"] = json.loads(attached.stdout.strip().splitlines()[-1])
    results["date"] = time.strftime("%Y-%m-%d")
    results["machine"] = f"{os.cpu_count()} cores"
    out = ROOT / "bench" / "results" / "ray_overhead.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
