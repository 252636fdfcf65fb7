"""TPE + ASHA versus random search at equal compute, on the default sweep's task.

    .venv/bin/python bench/sweep_compare.py [--seeds 0 1] [--trials 64]

For each sampler seed it runs params.yaml's ``sweeps.gan_ring8`` twice through the real
``genflow sweep`` command (one local Ray instance, 2 CPUs, 2 trials at a time), once as
random search with every trial trained to the end (``search: random, scheduler: fifo``)
and once as seeded TPE with ASHA, ``--trials`` trials each. The target is the best FID of
the random sweep's trials; the figure is the compute (training steps summed over trials,
in the order they finished) each method spent before its best-so-far first reached that
target. It also records the default 16-trial sweep's wall time. Writes
bench/results/sweep_compare.json and prints the Markdown rows of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
PYTHON = REPO / ".venv" / "bin" / "python"


def run_sweep(out: Path, storage: Path, overrides: list[str]) -> float:
    cmd = [str(PYTHON), "-m", "genflow.cli", "sweep", "--sweep", "gan_ring8", "--out", str(out),
           "--set", f"ray.storage_path={storage}", *[f"--set=sweeps.gan_ring8.{o}" for o in overrides]]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)  # its own local Ray: the same start-up cost for every run
    started = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def curve(rows: list[dict]) -> list[tuple[int, float]]:
    """(compute so far, best FID so far) in finishing order."""
    best, spent, points = float("inf"), 0, []
    for row in sorted(rows, key=lambda r: r["finished_order"]):
        spent += row["steps"]
        if row["status"] != "failed" and row["fid"] is not None:
            best = min(best, row["fid"])
        points.append((spent, best))
    return points


def compute_to_reach(points: list[tuple[int, float]], target: float) -> int | None:
    return next((spent for spent, best in points if best <= target), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--trials", type=int, default=64)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="genflow-sweep-bench-"))
    results = {"seeds": {}, "trials": args.trials}
    wall = run_sweep(work / "default", work / "storage", [])
    results["default_16_trials_wall_s"] = round(wall, 1)
    print(f"default sweep (16 trials, own Ray start): {wall:.1f} s", flush=True)
    for seed in args.seeds:
        runs = {}
        for method, overrides in (("random", ["search=random", "scheduler=fifo"]),
                                  ("tpe_asha", ["search=tpe", "scheduler=asha"])):
            out = work / f"{method}-{seed}"
            wall = run_sweep(out, work / "storage", [*overrides, f"trials={args.trials}", f"seed={seed}"])
            rows = pq.read_table(out / "trials.parquet").to_pylist()
            runs[method] = {"wall_s": round(wall, 1), "rows": rows, "curve": curve(rows)}
            print(f"seed {seed} {method}: {wall:.1f} s, {sum(r['steps'] for r in rows)} steps", flush=True)
        target = min(r["fid"] for r in runs["random"]["rows"] if r["fid"] is not None)
        entry = {"target_fid": round(target, 5)}
        for method, run in runs.items():
            entry[method] = {
                "wall_s": run["wall_s"], "total_steps": run["curve"][-1][0],
                "best_fid": round(run["curve"][-1][1], 5),
                "steps_to_target": compute_to_reach(run["curve"], target),
                "statuses": {s: sum(r["status"] == s for r in run["rows"]) for s in ("complete", "stopped", "failed")},
            }
        results["seeds"][str(seed)] = entry
        print(json.dumps(entry), flush=True)
    results.update(date=time.strftime("%Y-%m-%d"), machine=f"{os.uname().machine}, {os.cpu_count()} cores",
                   python=sys.version.split()[0])
    out = REPO / "bench" / "results" / "sweep_compare.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    for seed, entry in results["seeds"].items():
        r, t = entry["random"], entry["tpe_asha"]
        print(f"| {seed} | {entry['target_fid']} | {r['total_steps']} ({r['wall_s']} s) | {t['total_steps']} "
              f"({t['wall_s']} s) | {t['best_fid']} | {t['steps_to_target'] or 'not reached'} |")


if __name__ == "__main__":
    main()
