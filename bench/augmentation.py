"""CAS and augmentation gain of trained conditional models, per seed, with 95 % CIs (issue 29).

Reads a pipeline's outputs (read only): ``<roster>/models/<model>/seed_*`` (trained by the
train stage), ``<roster>/data/prepared/<dataset>``, ``<roster>/models/featurenet/<dataset>`` and,
when present, ``<roster>/metrics/<model>.details.json`` (the evaluate stage's FID and class
accuracy, quoted beside). For every ``--epochs`` value it runs the evaluate stage's code
(genflow.evaluate.augmentation) on each seed and reports mean ± 95 % CI (Student t over seeds)
and the real-data floors. ``--timing`` also runs the whole evaluate stage of each model twice,
with augmentation_epochs 0 and the first ``--epochs`` value, into a temporary folder: the
seconds the metrics add to ``dvc repro``.

    python bench/augmentation.py --roster /tmp/roster --timing
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from genflow import config  # noqa: E402
from genflow.evaluate.augmentation import Augmentation  # noqa: E402
from genflow.evaluate.protocol import evaluate_model  # noqa: E402
from genflow.io import code_revision  # noqa: E402
from genflow.report.stats import summarize  # noqa: E402
from genflow.train.worker import load_trained, trained_seeds  # noqa: E402

QUOTED = ("fid", "class_accuracy", "cfid")  # the evaluate stage's own numbers, quoted beside CAS


def interval(values: list[float]) -> dict:
    summary = summarize(values)
    return {"mean": round(summary.mean, 4), "ci95": None if summary.ci is None else round(summary.ci, 4),
            "values": [round(v, 4) for v in values]}


def measure(model_dir: Path, data_dir: Path, featurenet_dir: Path, epochs: int, seed: int) -> dict:
    """CAS and gain of every seed of one model, and the floors, at ``epochs`` classifier epochs."""
    per_seed, augment, started, cpu = {}, None, time.perf_counter(), time.process_time()
    for directory in trained_seeds(model_dir):
        model, meta, _ = load_trained(directory)
        augment = augment or Augmentation.for_model(model, data_dir, featurenet_dir, epochs, seed)
        per_seed[str(meta["seed"])] = augment.seed_metrics(model)
        print(f"  {meta['name']} seed {meta['seed']}: {per_seed[str(meta['seed'])]}", flush=True)
    out = {key: interval([m[key] for m in per_seed.values()]) for key in ("cas", "augmentation_gain")}
    out.update({key: round(value, 4) for key, value in augment.floors().items()})
    out["protocol"] = augment.protocol()
    out["seconds"] = round(time.perf_counter() - started, 1)
    out["cpu_seconds"] = round(time.process_time() - cpu, 1)
    return out


def quoted(roster: Path, name: str) -> dict:
    """The evaluate stage's FID, class FID and class accuracy of the same seeds, with their CIs."""
    path = roster / "metrics" / f"{name}.details.json"
    if not path.exists():
        return {}
    details = json.loads(path.read_text())
    return {key: interval([seed[key] for seed in details["per_seed"].values()]) for key in QUOTED
            if all(key in seed for seed in details["per_seed"].values())}


def run_stage(name: str, roster: Path, params, dataset: str, epochs: int) -> tuple[dict, dict]:
    """Wall and CPU seconds, and the metrics, of the whole evaluate stage of ``name`` at
    ``augmentation_epochs = epochs`` (written to a temporary folder, never into the roster)."""
    spec = params.evaluate.model_copy(update={"augmentation_epochs": epochs})
    with tempfile.TemporaryDirectory() as tmp:
        started, cpu = time.perf_counter(), time.process_time()
        metrics = evaluate_model(roster / "models" / name, roster / "data" / "prepared" / dataset,
                                 roster / "models" / "featurenet" / dataset, spec, Path(tmp) / f"{name}.json",
                                 Path(tmp) / f"{name}.png", log=lambda *_: None)
        seconds = {"wall": round(time.perf_counter() - started, 1), "cpu": round(time.process_time() - cpu, 1)}
        return seconds, metrics


def timing(name: str, roster: Path, params, dataset: str, epochs: int, entry: dict) -> None:
    """The evaluate stage without and with the augmentation metrics; its FID, class FID and class
    accuracy quoted beside CAS; its CAS must be the bench's own (the same code, deterministic)."""
    entry["evaluate_seconds"] = {"0": run_stage(name, roster, params, dataset, 0)[0]}
    entry["evaluate_seconds"][str(epochs)], metrics = run_stage(name, roster, params, dataset, epochs)
    entry["quoted"] = {key: interval([seed[key] for seed in metrics["per_seed"].values()]) for key in QUOTED}
    entry["quoted"]["source"] = "the evaluate stage run by this bench (--timing)"
    stage_cas = [round(seed["cas"], 4) for seed in metrics["per_seed"].values()]
    assert stage_cas == entry["by_epochs"][str(epochs)]["cas"]["values"], (stage_cas, entry["by_epochs"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roster", type=Path, default=ROOT, help="a pipeline's root folder (read only)")
    parser.add_argument("--models", nargs="+", default=["cgan_digits", "cvae_digits"])
    parser.add_argument("--epochs", type=int, nargs="+", default=[5, 20],
                        help="classifier epochs to measure (5: the evaluate stage's default; 20: the featurenet's)")
    parser.add_argument("--timing", action="store_true", help="also time the evaluate stage with and without")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "augmentation.json")
    args = parser.parse_args()
    torch.set_num_threads(1)  # like the pipeline's workers (the classifiers use one thread anyway)
    params = config.load(args.roster / "params.yaml")
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "code_revision": code_revision(ROOT),
                     "roster": str(args.roster), "roster_code_revision": code_revision(args.roster),
                     "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread, "
                                f"{platform.processor() or platform.platform()}, {os.cpu_count()} cores",
               "load_average_at_start": [round(v, 1) for v in os.getloadavg()], "models": {}}
    for name in args.models:
        dataset = params.models[name].dataset
        data_dir = args.roster / "data" / "prepared" / dataset
        featurenet_dir = args.roster / "models" / "featurenet" / dataset
        entry = {"dataset": dataset, "by_epochs": {}}
        for epochs in args.epochs:
            print(f"[augmentation] {name}, classifiers at {epochs} epochs", flush=True)
            entry["by_epochs"][str(epochs)] = measure(args.roster / "models" / name, data_dir, featurenet_dir, epochs,
                                                      params.evaluate.seed)
        if args.timing:
            timing(name, args.roster, params, dataset, args.epochs[0], entry)
        else:  # the roster's own evaluate stage, when it has run
            entry["quoted"] = quoted(args.roster, name)
        results["models"][name] = entry
    results["load_average_at_end"] = [round(v, 1) for v in os.getloadavg()]  # other jobs slow the wall times
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({n: {e: {k: v for k, v in m.items() if k != "protocol"} for e, m in r["by_epochs"].items()}
                      for n, r in results["models"].items()}, indent=1))


if __name__ == "__main__":
    main()
