"""Steady-state training rate and fixed cost: in-process vs one Ray Train worker.

For each mode, the train stage's own code path (``train_model``) runs the default
``gan_digits`` for a short and a long budget in fresh processes; the difference gives
the steady-state rate (steps/s) free of start-up cost, and the short run's wall time
minus its steps at that rate gives the fixed cost per stage. In-process and Ray runs
alternate so machine noise hits both alike. Writes bench/results/ray_throughput.json.

    .venv/bin/python bench/ray_throughput.py [--short 200] [--long 1200] [--repeat 2]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genflow.io import code_revision  # noqa: E402

MODEL = "gan_digits"


def run_stage(steps: int, workers: int, work: Path) -> float:
    """Wall seconds of one `python stages/train.py` (prepared digits must exist in data/prepared)."""
    out = work / f"out-{workers}-{steps}-{time.monotonic_ns()}"
    cmd = [sys.executable, "stages/train.py", "--model", MODEL, "--out", str(out),
           "--set", f"models.{MODEL}.train.steps={steps}", "--set", f"ray.num_workers={workers}",
           "--set", f"ray.storage_path={work / 'storage'}",
           "--set", f"models.{MODEL}.train.checkpoint_every={steps}"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=200)
    parser.add_argument("--long", type=int, default=1200)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    if not (ROOT / "data" / "prepared" / "digits" / "manifest.json").exists():
        subprocess.run([sys.executable, "stages/prepare.py", "--dataset", "digits"], cwd=ROOT, check=True)
    times: dict[str, dict[int, list[float]]] = {"in_process": {args.short: [], args.long: []},
                                                "ray_1_worker": {args.short: [], args.long: []}}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            for steps in (args.short, args.long):
                for mode, workers in (("in_process", 0), ("ray_1_worker", 1)):
                    seconds = run_stage(steps, workers, Path(tmp))
                    times[mode][steps].append(seconds)
                    print(f"{mode} {steps} steps: {seconds:.2f} s", flush=True)
    result: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d"),
                    "code_revision": code_revision(ROOT), "model": MODEL, "steps": [args.short, args.long]}
    for mode, by_steps in times.items():
        short, long = min(by_steps[args.short]), min(by_steps[args.long])
        rate = (args.long - args.short) / (long - short)
        result[mode] = {"wall_s": {str(k): [round(v, 2) for v in vs] for k, vs in by_steps.items()},
                        "steady_steps_per_s": round(rate, 1),
                        "fixed_cost_s": round(short - args.short / rate, 2)}
    result["ray_rate_vs_in_process"] = round(result["ray_1_worker"]["steady_steps_per_s"]
                                             / result["in_process"]["steady_steps_per_s"], 3)
    result["ray_extra_fixed_cost_s"] = round(result["ray_1_worker"]["fixed_cost_s"]
                                             - result["in_process"]["fixed_cost_s"], 2)
    out = ROOT / "bench" / "results" / "ray_throughput.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
