"""Training throughput of the DCGAN-style GAN: a plain PyTorch loop beside genflow, one run.

Modes, each a fresh process per measurement, interleaved so that machine noise hits all alike:

  reference     a hand-written loop in the style of the official PyTorch DCGAN example
                (bench/reference_dcgan.py): the same G and D, batch, Adam and loss
  in_process    the train stage (`stages/train.py`), ray.num_workers 0
  ray_task      the train stage, 1 Ray worker, ray.launcher auto (a plain Ray task)
  ray_trainer   the train stage, 1 Ray worker, ray.launcher trainer (a Ray Train TorchTrainer)
  ray_ddp2      the train stage, 2 Ray Train workers (DDP), the same global batch

Every mode uses the machine's 2 cores (2 torch threads; DDP: 1 thread per worker). The steady
rate comes from inside the run: every loop prints `step N ... steps/s=R` (R averaged since the
loop began), so step N was reached N/R seconds in, and the rate between step 200 and the last
step excludes start-up and warm-up; images/s = steps/s x batch. The fixed cost of a stage is
its wall time minus its steps at that rate. Medians over the repeats, with their spread: on
this shared VM one mode's rate varies by up to 20 % from run to run. Peak RSS of the driver and of each Ray
worker is sampled with psutil while each mode runs, and while the evaluate stage scores the
trained default model in-process and in 2 Ray tasks (after `make repro`). The Ray modes attach to one local head
(as `make repro` does); the script starts it itself through infra/local/with-ray.sh.

    .venv/bin/python bench/train_throughput.py [--steps 1200] [--repeat 3]

Writes bench/results/train_throughput.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from genflow.io import code_revision  # noqa: E402
from rss_sampler import RssSampler  # noqa: E402

MODEL = "gan_digits"
BATCH = 64
MODES = {  # mode -> train stage overrides (None: the reference loop)
    "reference": None,
    "in_process": {"ray.num_workers": 0, "ray.threads_per_worker": 2},
    "ray_task": {"ray.num_workers": 1, "ray.cpus_per_worker": 2.0, "ray.threads_per_worker": 2,
                 "ray.launcher": "auto"},
    "ray_trainer": {"ray.num_workers": 1, "ray.cpus_per_worker": 2.0, "ray.threads_per_worker": 2,
                    "ray.launcher": "trainer"},
    "ray_ddp2": {"ray.num_workers": 2, "ray.cpus_per_worker": 1.0, "ray.threads_per_worker": 1},
}


def command(mode: str, steps: int, work: Path) -> list[str]:
    if MODES[mode] is None:
        return [sys.executable, str(ROOT / "bench" / "reference_dcgan.py"), "--steps", str(steps), "--threads", "2"]
    out = work / f"out-{mode}-{steps}-{time.monotonic_ns()}"
    sets = {f"models.{MODEL}.train.steps": steps, f"models.{MODEL}.train.checkpoint_every": steps,
            f"models.{MODEL}.train.log_every": WARM_UP,
            f"models.{MODEL}.seeds": "[0]", "ray.storage_path": str(work / "storage"), **MODES[mode]}
    return [sys.executable, "stages/train.py", "--model", MODEL, "--out", str(out),
            *[arg for key, value in sets.items() for arg in ("--set", f"{key}={value}")]]


PROGRESS = re.compile(r"step (\d+) .*steps/s=([0-9.e+-]+)")
WARM_UP = 200


def steady_rate(output: str, steps: int) -> float:
    """Steps/s between step WARM_UP and the last step, from the loop's own progress lines."""
    seen = {int(m.group(1)): int(m.group(1)) / float(m.group(2)) for m in PROGRESS.finditer(output)}
    if WARM_UP not in seen or steps not in seen:
        raise SystemExit(f"no progress lines for steps {WARM_UP} and {steps} in:\n{output[-3000:]}")
    return (steps - WARM_UP) / (seen[steps] - seen[WARM_UP])


def run(mode: str, steps: int, work: Path, sampler: RssSampler) -> tuple[float, float]:
    """(wall seconds, steady steps/s) of one fresh run."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "2", "RAY_DEDUP_LOGS": "0"}
    start = time.perf_counter()
    with sampler.watch(mode):
        proc = subprocess.run(command(mode, steps, work), cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{mode} {steps} steps failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return seconds, steady_rate(proc.stdout + proc.stderr, steps)


def evaluate_rss(sampler: RssSampler, work: Path) -> dict[str, float]:
    """The evaluate stage of the trained default model, in-process and in 2 Ray tasks (wall s).

    Runs in a scratch copy of the workspace (params, and links to data/ and models/), so the
    repository's metrics/ and samples/ are left alone."""
    if not (ROOT / "models" / MODEL / "seed_0").is_dir():
        print(f"(no models/{MODEL}: run `make repro` first for the evaluation figures)")
        return {}
    scratch = work / "eval"
    scratch.mkdir()
    (scratch / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    for name in ("data", "models"):
        (scratch / name).symlink_to(ROOT / name)
    wall = {}
    for label, workers in (("evaluate_in_process", 0), ("evaluate_2_ray_tasks", 2)):
        start = time.perf_counter()
        with sampler.watch(label):
            subprocess.run([sys.executable, str(ROOT / "stages" / "evaluate.py"), "--model", MODEL,
                            "--set", f"evaluate.num_workers={workers}"], cwd=scratch, check=True,
                           capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        wall[label] = round(time.perf_counter() - start, 2)
    return wall


def summarise(runs: dict[str, list[tuple[float, float]]], steps: int) -> dict:
    result = {}
    for mode, pairs in runs.items():
        rates = [rate for _, rate in pairs]
        fixed = [wall - steps / rate for wall, rate in pairs]
        rate = statistics.median(rates)
        result[mode] = {"wall_s": [round(wall, 2) for wall, _ in pairs], "steps_per_s": [round(r, 1) for r in rates],
                        "steady_steps_per_s": round(rate, 1), "images_per_s": round(rate * BATCH),
                        "fixed_cost_s": round(statistics.median(fixed), 2),
                        "fixed_cost_range_s": [round(min(fixed), 2), round(max(fixed), 2)]}
    base = result["in_process"]
    ratios = {f"{mode}_vs_in_process": round(r["steady_steps_per_s"] / base["steady_steps_per_s"], 3)
              for mode, r in result.items() if mode != "in_process"}
    extra = {f"{mode}_extra_fixed_cost_s": round(r["fixed_cost_s"] - base["fixed_cost_s"], 2)
             for mode, r in result.items() if mode.startswith("ray_")}
    return {"modes": result, "rate_ratios": ratios, "extra_fixed_cost": extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = parser.parse_args()
    if not os.environ.get("RAY_ADDRESS"):  # one local head for every Ray mode, like `make repro`
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        os.execve("/bin/bash", ["bash", str(ROOT / "infra" / "local" / "with-ray.sh"), sys.executable, *sys.argv], env)
    if not (ROOT / "data" / "prepared" / "digits" / "manifest.json").exists():
        subprocess.run([sys.executable, "stages/prepare.py", "--dataset", "digits"], cwd=ROOT, check=True)
    if args.steps <= WARM_UP or args.steps % WARM_UP:
        parser.error(f"--steps must be a multiple of {WARM_UP} above it")
    runs: dict[str, list[tuple[float, float]]] = {mode: [] for mode in args.modes}
    sampler = RssSampler()
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            for mode in args.modes:
                runs[mode].append(run(mode, args.steps, Path(tmp), sampler))
                print(f"{mode:12s} {args.steps} steps: {runs[mode][-1][0]:6.2f} s, "
                      f"{runs[mode][-1][1]:6.1f} steps/s after step {WARM_UP}", flush=True)
        evaluate_wall_s = evaluate_rss(sampler, Path(tmp))
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d"),
              "code_revision": code_revision(ROOT), "model": MODEL, "batch": BATCH,
              "steps": args.steps, "warm_up_steps": WARM_UP, "repeat": args.repeat,
              **summarise(runs, args.steps), "evaluate_wall_s": evaluate_wall_s,
              "peak_rss_mb": sampler.peaks()}
    out = ROOT / "bench" / "results" / "train_throughput.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("rate_ratios", "extra_fixed_cost", "peak_rss_mb")}, indent=2))


if __name__ == "__main__":
    main()
