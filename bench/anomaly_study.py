"""Anomaly detection on digits: one model per held-out class, AUROC of finding it.

For each class k of scikit-learn's digits, the default ``vae_digits`` and ``gan_digits``
(params.yaml, unchanged budgets) are trained in-process without class k
(``holdout_class: k``) and evaluated by the evaluate stage's code; the test split's
class-k images are the anomalies. Needs data/prepared/digits and
models/featurenet/digits (run ``make repro`` first). Writes docs/results/anomaly-digits.md
and bench/results/anomaly_digits.json.

    .venv/bin/python bench/anomaly_study.py [--classes 0 1 ...]
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genflow import config  # noqa: E402
from genflow.evaluate.protocol import evaluate_model  # noqa: E402
from genflow.io import code_revision  # noqa: E402
from genflow.launch import train as train_model  # noqa: E402

BASES = ("vae_digits", "gan_digits")


def run(base: str, holdout: int, raw: dict, work: Path) -> float:
    raw = copy.deepcopy(raw)
    name = f"{base}_no{holdout}"
    raw["models"] = {name: {**raw["models"][base], "holdout_class": holdout}}
    raw["ray"].update(num_workers=0, storage_path=str(work / "storage"))
    params = config.validate(raw)
    train_model(name, params, ROOT / "data" / "prepared", work / name)
    metrics = evaluate_model(work / name, ROOT / "data" / "prepared" / "digits",
                             ROOT / "models" / "featurenet" / "digits", params.evaluate, work / f"{name}.json",
                             work / f"{name}.png", log=lambda *a: None)
    return metrics["anomaly_auroc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=list(range(10)))
    args = parser.parse_args()
    raw = config.read_yaml(ROOT / "params.yaml")
    results: dict = {"date": time.strftime("%Y-%m-%d"), "code_revision": code_revision(ROOT), "auroc": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for base in BASES:
            results["auroc"][base] = {}
            for k in args.classes:
                results["auroc"][base][str(k)] = round(run(base, k, raw, Path(tmp)), 4)
                print(f"{base} without {k}: AUROC {results['auroc'][base][str(k)]}", flush=True)
    (ROOT / "bench" / "results" / "anomaly_digits.json").write_text(json.dumps(results, indent=2) + "\n")
    rows = ["| held-out digit | " + " | ".join(BASES) + " |", "|---|" + "---|" * len(BASES)]
    for k in args.classes:
        rows.append(f"| {k} | " + " | ".join(f"{results['auroc'][b][str(k)]:.3f}" for b in BASES) + " |")
    means = [sum(results["auroc"][b].values()) / len(args.classes) for b in BASES]
    rows.append("| mean | " + " | ".join(f"**{m:.3f}**" for m in means) + " |")
    text = (f"# Anomaly detection on digits (held-out class), {results['date']}, revision "
            f"{results['code_revision'][:7]}\n\n`.venv/bin/python bench/anomaly_study.py`: each default model "
            "(params.yaml budgets) trained without one digit, then scored on the test split (359 images, ~36 of "
            "the held-out digit). Score: -IWAE bound (K = 16) for the VAE, -D(x) for the GAN. AUROC 0.5 = chance.\n\n"
            + "\n".join(rows) + "\n")
    (ROOT / "docs" / "results" / "anomaly-digits.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
