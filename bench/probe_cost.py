"""What evaluation during training (#27) costs: the probe's time as a fraction of training time.

Side by side in one run: every model of the default roster (params.yaml, first seed) trains
in-process with its ``train.eval_every`` (params.yaml's; the flags' for a model without one),
and the probe is timed inside that very run (its calls wrapped in a timer), so machine noise
hits training and probing alike. The fraction is probe seconds / training seconds without the
probes. Each run trains ``--steps`` steps (the per-step cost does not depend on the budget;
every run still probes several times), on 1 torch thread like a default worker. The probe's
set-up (val rows and their features, once per run) is reported apart.

    .venv/bin/python bench/probe_cost.py [--eval-every-digits 100] [--eval-every-mixtures 200] [--steps 400]

Writes bench/results/probe_cost.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from genflow import config  # noqa: E402
from genflow.data.prepare import prepare  # noqa: E402
from genflow.evaluate.probe import training_probe  # noqa: E402
from genflow.featurenet.stage import build_feature_space  # noqa: E402
from genflow.io import code_revision  # noqa: E402
from genflow.train import worker as training  # noqa: E402
from genflow.train.worker_config import worker_config  # noqa: E402


class Timed:
    """The training probe, its calls timed."""

    def __init__(self, probe):
        self.probe, self.seconds, self.calls = probe, 0.0, 0
        self.keys, self.directions = probe.keys, probe.directions

    def __call__(self, weights):
        started = time.perf_counter()
        try:
            return self.probe(weights)
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1


def measure(name: str, params, data_root: Path, features_root: Path, work: Path) -> dict:
    cfg = worker_config(name, params, data_root)
    started = time.perf_counter()
    timed = Timed(training_probe(cfg, features_root))
    setup = time.perf_counter() - started
    started = time.perf_counter()
    training.train_resumable(cfg, work, make_probe=lambda _: timed)
    total = time.perf_counter() - started
    train = total - timed.seconds
    return {"model": name, "steps": cfg.steps, "eval_every": cfg.spec["train"]["eval_every"],
            "probes": timed.calls, "probe_s": round(timed.seconds, 3), "train_s": round(train, 3),
            "probe_fraction": round(timed.seconds / train, 4), "probe_setup_s": round(setup, 3),
            "ms_per_probe": round(1000 * timed.seconds / max(timed.calls, 1), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--eval-every-digits", type=int, default=100)
    ap.add_argument("--eval-every-mixtures", type=int, default=200)
    ap.add_argument("--models", nargs="*", help="default: every model of params.yaml")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "probe_cost.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    base = config.load(ROOT / "params.yaml")
    names = args.models or list(base.models)
    sets = []
    for name in names:
        every = base.models[name].train.eval_every or (  # params.yaml's default, else the flags'
            args.eval_every_digits if base.models[name].dataset == "digits" else args.eval_every_mixtures)
        sets += [f"models.{name}.train.steps={args.steps}", f"models.{name}.train.eval_every={every}",
                 f"models.{name}.seeds=[0]", f"models.{name}.train.checkpoint_every={args.steps}"]
    with tempfile.TemporaryDirectory(prefix="genflow-probe-cost-") as tmp:
        tmp = Path(tmp)
        params = config.load(ROOT / "params.yaml", [*sets, f"ray.storage_path={tmp / 'work'}"])
        for dataset in sorted({params.models[n].dataset for n in names}):
            prepare(params.data[dataset], tmp / "data" / dataset, log=lambda *_: None)
            build_feature_space(tmp / "data" / dataset, params.featurenet, tmp / "features" / dataset,
                                log=lambda *_: None)
        rows = []
        for name in names:
            rows.append(measure(name, params, tmp / "data", tmp / "features", tmp / "work"))
            print(json.dumps(rows[-1]), flush=True)
    result = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, {platform.processor() or '?'}, "
              f"{torch.get_num_threads()} torch thread", "revision": code_revision(), "runs": rows}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"worst probe fraction: {max(r['probe_fraction'] for r in rows):.1%}")


if __name__ == "__main__":
    main()
