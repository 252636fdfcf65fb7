"""Does ``train.select: best`` help? The same runs measured twice on the test split: with the last
step's weights and with the best val probe's (``train.eval_every``), per model and seed.

Each model of params.yaml named on the command line trains in-process (its full budget,
``--eval-every`` steps between probes); both weight sets of every run then go through the
evaluate protocol (params.yaml's ``evaluate``: same samples, same reference rows).

    .venv/bin/python bench/select_best_vs_last.py gan_grid25 pacgan_grid25 [--seeds 0 1] [--eval-every 200]

Writes bench/results/select_best_vs_last.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from genflow import config, launch  # noqa: E402
from genflow.data.prepare import prepare  # noqa: E402
from genflow.evaluate.protocol import Reference, seed_metrics  # noqa: E402
from genflow.featurenet.stage import build_feature_space  # noqa: E402
from genflow.io import code_revision  # noqa: E402
from genflow.train import checkpoint  # noqa: E402
from genflow.train.worker import load_trained  # noqa: E402

SHOWN = ("modes", "high_quality", "reverse_kl", "fid", "precision", "recall")


def both(seed_dir: Path, ref: Reference) -> dict:
    model, meta, _ = load_trained(seed_dir)  # train.select: best
    state, _, _ = checkpoint.load(seed_dir)
    out = {"best_step": meta["selected"]["step"]}
    for which, weights in (("best", state["monitor"]["best_weights"]), ("last", state["model"])):
        model.load_state_dict(weights)
        values, _ = seed_metrics(model.eval(), ref)
        out[which] = {k: round(float(values[k]), 4) for k in SHOWN if k in values}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "select_best_vs_last.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    sets = [f"models.{m}.{k}" for m in args.models for k in (
        f"seeds={json.dumps(args.seeds)}", f"train.eval_every={args.eval_every}", "train.select=best")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="genflow-select-") as tmp:
        tmp = Path(tmp)
        params = config.load(ROOT / "params.yaml", [*sets, "ray.num_workers=0", f"ray.storage_path={tmp / 'w'}"])
        for dataset in sorted({params.models[m].dataset for m in args.models}):
            prepare(params.data[dataset], tmp / "data" / dataset, log=lambda *_: None)
            build_feature_space(tmp / "data" / dataset, params.featurenet, tmp / "fn" / dataset, log=lambda *_: None)
        for name in args.models:
            spec = params.models[name]
            launch.train(name, params, tmp / "data", tmp / "models" / name, featurenet_root=tmp / "fn")
            ref = Reference.load(tmp / "data" / spec.dataset, tmp / "fn" / spec.dataset, params.evaluate)
            for seed_dir in sorted((tmp / "models" / name).glob("seed_*")):
                rows.append({"model": name, "seed": seed_dir.name, **both(seed_dir, ref)})
                print(json.dumps(rows[-1]), flush=True)
    Path(args.out).write_text(json.dumps({"date": date.today().isoformat(), "revision": code_revision(),
                                          "eval_every": args.eval_every, "runs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
