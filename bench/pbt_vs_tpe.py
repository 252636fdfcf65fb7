"""Population Based Training against TPE + ASHA at equal compute, on the digits GAN.

    PYTHONPATH=. .venv/bin/python bench/pbt_vs_tpe.py [--seeds 0 1] [--population 6] [--steps 400]

For each seed of the search itself it runs two sweeps of ``gan_digits`` (params.yaml's model,
the ``narrow`` preset: lr_g, lr_d, beta1, beta2) through the real ``genflow sweep`` command, each
with its own local Ray instance and the same CPUs (``--cpus-per-trial`` each: 4 trials at once
on 2 cores; PBT rotates a larger population through them at each round, TPE + ASHA runs
``--concurrent`` at once):

* PBT: ``--population`` trials of ``--steps`` steps, exploit/explore every ``--interval`` steps
  (synchronous, seeded), the population drawn by the seeded random sampler;
* TPE + ASHA: ``--tpe-trials`` trials of at most ``--steps`` steps (grace and probe every
  ``--interval`` steps, reduction factor 3), seeded TPE.

Compute is training steps summed over trials. The figure for each method is the best val FID
any probe had reached against the compute spent (PBT: after each synchronous round; TPE + ASHA:
each trial's probes counted when it finished, in finishing order), compared at the smaller of
the two totals. Writes bench/results/pbt_vs_tpe.json and docs/results/pbt_vs_tpe.png and prints
the Markdown rows of docs/results/pbt_vs_tpe.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parents[1]
MODEL, DATASET = "gan_digits", "digits"


def genflow(work: Path, *args: str, log: Path) -> float:
    """Run one genflow stage in ``work`` with its own local Ray; return its wall time."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(REPO), "GENFLOW_PROGRESS": "lines"}
    env.pop("RAY_ADDRESS", None)  # its own local Ray: the same start-up cost for every sweep
    started = time.perf_counter()
    with open(log, "w") as handle:
        subprocess.run([sys.executable, "-m", "genflow.cli", *args, "--params", str(work / "params.yaml")], cwd=work,
                       env=env, check=True, stdout=handle, stderr=subprocess.STDOUT)
    return time.perf_counter() - started


def sweeps(args, seed: int) -> dict[str, dict]:
    common = {"model": MODEL, "dataset": DATASET, "metric": "fid", "preset": "narrow", "steps": args.steps,
              "report_every": args.interval, "seed": seed, "cpus_per_trial": args.cpus_per_trial}
    return {
        "pbt": {**common, "search": "random", "scheduler": "pbt", "trials": args.population,
                "perturbation_interval": args.interval, "quantile_fraction": 0.25, "resample_probability": 0.25},
        "tpe_asha": {**common, "search": "tpe", "scheduler": "asha", "trials": args.tpe_trials,
                     "grace_steps": args.interval, "reduction_factor": 3, "max_concurrent": args.concurrent},
    }


def pbt_curve(rows: list[dict], interval: int) -> list[tuple[int, float]]:
    """(compute, best FID any probe reached) after each synchronous round: every member trains
    the round's ``interval`` steps before any of them is probed past it."""
    rounds = sorted({step for row in rows for step in row["history_step"]})
    points = []
    for step in rounds:
        seen = [v for row in rows for s, v in zip(row["history_step"], row["history_fid"]) if s <= step]
        points.append((len(rows) * step, min(seen)))
    return points


def tpe_curve(rows: list[dict]) -> list[tuple[int, float]]:
    """(compute, best FID any probe reached) as trials finished, in finishing order."""
    best, spent, points = float("inf"), 0, []
    for row in sorted(rows, key=lambda r: r["finished_order"]):
        spent += row["steps"]
        best = min([best, *[v for v in row["history_fid"] if v is not None]])
        points.append((spent, best))
    return points


def at(points: list[tuple[int, float]], budget: int) -> float:
    """The best reached with at most ``budget`` steps spent."""
    return min((best for spent, best in points if spent <= budget), default=float("nan"))


def run_seed(args, work: Path, seed: int) -> dict:
    entry = {}
    for method, sweep in sweeps(args, seed).items():
        name = f"{method}_{seed}"
        params = yaml.safe_load((work / "params.yaml").read_text())
        params["sweeps"] = {name: sweep}
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        out, load = work / "sweeps" / name, round(os.getloadavg()[0], 1)
        wall = genflow(work, "sweep", "--sweep", name, "--out", str(out), "--set",
                       f"ray.storage_path={work / 'storage'}", log=work / f"{name}.log")
        rows = pq.read_table(out / "trials.parquet").to_pylist()
        summary = json.loads((out / "summary.json").read_text())
        curve = pbt_curve(rows, args.interval) if method == "pbt" else tpe_curve(rows)
        entry[method] = {"wall_s": round(wall, 1), "total_steps": sum(r["steps"] for r in rows), "trials": len(rows),
                         "statuses": {s: summary[s] for s in ("complete", "stopped", "failed")},
                         "best_final_fid": summary["best_value"], "best_trial": summary["best_trial"],
                         "best_overrides": summary["best_overrides"], "curve": curve, "load_avg_before": load,
                         "rows": [[r["trial_id"], r["status"], r["steps"], r["fid"]] for r in rows],
                         **({"exploits": summary["pbt"]["exploits"], "best_history": summary["pbt"]["best_history"]}
                            if method == "pbt" else {})}
        print(f"seed {seed} {method}: {wall:.1f} s, {entry[method]['total_steps']} steps, best final FID "
              f"{summary['best_value']:.4g}", flush=True)
    budget = min(entry["pbt"]["total_steps"], entry["tpe_asha"]["total_steps"])
    entry["equal_compute_steps"] = budget
    for method in ("pbt", "tpe_asha"):
        entry[method]["best_probe_fid_at_equal_compute"] = round(at(entry[method]["curve"], budget), 5)
    return entry


def plot(results: dict, path: Path) -> None:
    sys.path.insert(0, str(REPO))
    from genflow.evaluate.pictures import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=100)
    styles = {"pbt": ("tab:red", "PBT"), "tpe_asha": ("tab:blue", "TPE + ASHA")}
    for index, (seed, entry) in enumerate(results["seeds"].items()):
        for method, (colour, label) in styles.items():
            xs, ys = zip(*entry[method]["curve"])
            ax.step(xs, ys, where="post", color=colour, linestyle=("-", "--", ":")[index % 3],
                    label=f"{label}, search seed {seed}")
    ax.set_xlabel("compute: training steps summed over trials")
    ax.set_ylabel("best val FID reached (lower is better)")
    ax.set_yscale("log")  # the first probes score 400-800, the good ones 40-70
    ax.set_title(f"{MODEL}: PBT vs TPE + ASHA, same CPUs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)


def prepare(work: Path) -> None:
    """The digits data and feature network, as the pipeline's stages make them (kept when the
    work directory already holds them: they are deterministic)."""
    shutil.copyfile(REPO / "params.yaml", work / "params.yaml")
    if (work / "models" / "featurenet" / DATASET / "featurenet.json").exists():
        return
    genflow(work, "prepare", "--dataset", DATASET, "--out", str(work / "data" / "prepared" / DATASET),
            log=work / "prepare.log")
    genflow(work, "featurenet", "--dataset", DATASET, "--out", str(work / "models" / "featurenet" / DATASET),
            log=work / "featurenet.log")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--population", type=int, default=6)
    parser.add_argument("--tpe-trials", type=int, default=14)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--interval", type=int, default=100)
    parser.add_argument("--cpus-per-trial", type=float, default=0.5)
    parser.add_argument("--concurrent", type=int, default=4)
    parser.add_argument("--work", type=Path, default=None, help="work directory (default: a new temporary one)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "pbt_vs_tpe.json")
    parser.add_argument("--figure", type=Path, default=REPO / "docs" / "results" / "pbt_vs_tpe.png")
    parser.add_argument("--replot", action="store_true", help="only redraw the figure from --out's JSON")
    args = parser.parse_args()
    if args.replot:
        plot(json.loads(args.out.read_text()), args.figure)
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="genflow-pbt-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    prepare(work)
    results = {"model": MODEL, "settings": {k: v for k, v in vars(args).items() if k not in ("work", "out", "figure")},
               "seeds": {}}
    for seed in args.seeds:  # written after each seed: a run cut short keeps the seeds it finished
        results["seeds"][str(seed)] = run_seed(args, work, seed)
        results.update(total_wall_s=round(time.perf_counter() - started, 1), date=time.strftime(
                       "%Y-%m-%d %H:%M UTC", time.gmtime()), machine=f"{os.uname().machine}, {os.cpu_count()} "
                       f"cores, load avg (1 min) {os.getloadavg()[0]:.1f}", python=sys.version.split()[0])
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        plot(results, args.figure)
    for seed, entry in results["seeds"].items():
        p, t = entry["pbt"], entry["tpe_asha"]
        print(f"| {seed} | {entry['equal_compute_steps']} | {p['best_probe_fid_at_equal_compute']:.4g} | "
              f"{t['best_probe_fid_at_equal_compute']:.4g} | {p['best_final_fid']:.4g} | {t['best_final_fid']:.4g} | "
              f"{p['total_steps']} / {t['total_steps']} | {p['wall_s']} / {t['wall_s']} s | {p['exploits']} |")


if __name__ == "__main__":
    main()
