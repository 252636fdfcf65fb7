"""Linear probes on the trained digits roster: how good are the learned features with few labels?

For every trained seed of the roster's digits models, the evaluate stage's probe
(genflow/evaluate/representation.py: logistic regression on frozen features, fitted on 1 %,
10 % and 100 % of the training labels, scored on the test split) on the model's features: the
encoder's μ for VAEs and VAE-GAN, the discriminator's trunk for GANs. Optionally
(``--vaegan-d``) VAE-GAN's discriminator too, which evaluate does not probe, and (``--controls``)
two controls: the VAEs' encoder trunk (the layer under μ, as wide as a D's trunk), and the
untrained networks of gan_digits and vae_digits (same spec, initialised with the seed's number). The raw pixels
and the feature network are the reference rows (the same probe, the same labelled subsets).
Reports mean ± 95 % CI over seeds (Student's t) and the seconds each probe added.

Reads a finished `make repro` checkout (``--roster``; never writes there), writes
``--out`` (bench/results/representation.json) and prints a Markdown table.

    .venv/bin/python bench/representation.py --roster /path/to/checkout [--models ...]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from genflow import config  # noqa: E402
from genflow.evaluate.representation import FEATURENET, PIXELS, LinearProbes, feature_extractor  # noqa: E402
from genflow.featurenet.network import FeatureSpace  # noqa: E402
from genflow.io import code_revision  # noqa: E402
from genflow.metrics.linear_probe import FRACTIONS, metric_name, protocol  # noqa: E402
from genflow.models import registry  # noqa: E402
from genflow.report.stats import summarize  # noqa: E402
from genflow.train.worker import load_trained, trained_seeds  # noqa: E402

MODELS = ("vae_digits", "cvae_digits", "vaegan_digits", "gan_digits", "wgangp_digits", "hinge_sn_digits",
          "lsgan_digits", "cgan_digits")
KEYS = [metric_name(f) for f in FRACTIONS]
CONTROL_MODELS = ("gan_digits", "vae_digits")


def extractors(model, name: str, seed: int, args) -> list[tuple[str, str, object]]:
    """(row label, what the features are, images -> features) to probe for one trained seed."""
    found = [(name, *feature_extractor(model))] if LinearProbes.applies(model) else []
    if args.vaegan_d and model.spec.model == "vaegan":
        found.append((f"{name} (D)", "D trunk features", model.D.features))
    if not args.controls:
        return found
    if model.spec.model in ("vae", "vaegan"):  # the layer under μ: as wide as a D's trunk, label-free in a cVAE
        found.append((f"{name} (E trunk)", f"encoder trunk, {model.E.trunk.out_dim}-d", model.E.trunk))
    if name in CONTROL_MODELS:  # what the architecture gives before any training, same init seed
        torch.manual_seed(seed)
        fresh = registry.build(model.spec, model.data_shape, model.num_classes).eval()
        kind, fn = feature_extractor(fresh)
        found.append((f"{name} (untrained)", f"{kind}, at initialisation", fn))
        if model.spec.model == "vae":
            found.append((f"{name} (untrained E trunk)", "encoder trunk at initialisation", fresh.E.trunk))
    return found


def probe_model(probes: LinearProbes, model_dir: Path, args) -> dict[str, dict]:
    """{row label: {"features", "per_seed": {seed: values}, "seconds", "cpu_seconds"}} of one model's
    seeds (seconds: wall and process CPU time each seed's probes took, features included)."""
    rows: dict[str, dict] = {}
    for directory in trained_seeds(model_dir):
        model, meta, _ = load_trained(directory)
        model.eval()
        for label, kind, fn in extractors(model, model_dir.name, int(meta["seed"]), args):
            start, cpu = time.perf_counter(), time.process_time()
            values = probes.scores(fn)
            row = rows.setdefault(label, {"features": kind, "per_seed": {}, "seconds": [], "cpu_seconds": []})
            row["per_seed"][str(meta["seed"])] = values
            row["seconds"].append(round(time.perf_counter() - start, 3))
            row["cpu_seconds"].append(round(time.process_time() - cpu, 3))
            print(f"{label} seed {meta['seed']}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items())
                  + f" ({row['seconds'][-1]:.2f} s wall, {row['cpu_seconds'][-1]:.2f} s CPU)", flush=True)
    for row in rows.values():
        for key in KEYS:
            summary = summarize([values[key] for values in row["per_seed"].values()])
            row[key] = {"mean": round(summary.mean, 4), "ci95": None if summary.ci is None else round(summary.ci, 4),
                        "n": summary.n}
    return rows


def markdown(results: dict) -> str:
    percent = [f"{100 * f:g} % labels" for f in FRACTIONS]
    lines = ["| features | " + " | ".join(percent) + " |", "|---|" + "---|" * len(KEYS)]
    for label, row in results["models"].items():
        cells = [f"{row[k]['mean']:.3f} ± {row[k]['ci95']:.3f}" for k in KEYS]
        lines.append(f"| {label}: {row['features']} | " + " | ".join(cells) + " |")
    for label, values in results["references"].items():
        lines.append(f"| {label} (reference) | " + " | ".join(f"{values[k]:.3f}" for k in KEYS) + " |")
    return "\n".join(lines)


def report_picture(results: dict, roster: Path, png: Path) -> None:
    """The report's linear-probe picture (genflow/report/probe_plot.py) of the probed roster models
    (controls left out), drawn by the report's own code from details files holding these values."""
    import shutil
    import tempfile

    from genflow.report.build import build_report

    raw = config.read_yaml(roster / "params.yaml")
    names = [name for name in results["models"] if name in raw["models"]]
    raw.update(models={name: raw["models"][name] for name in names}, sweeps={}, report={"baselines": {}})
    with tempfile.TemporaryDirectory() as tmp:
        metrics = Path(tmp) / "metrics"
        metrics.mkdir()
        for name in names:
            row = results["models"][name]
            details = {**{key: row[key]["mean"] for key in KEYS}, "n_seeds": len(row["per_seed"]),
                       "per_seed": row["per_seed"], "probe_references": results["references"]}
            (metrics / f"{name}.details.json").write_text(json.dumps(details))
        build_report(config.validate(raw).models, metrics, Path(tmp) / "samples", Path(tmp) / "reports",
                     Path(tmp) / "none", models_dir=Path(tmp) / "none")
        shutil.copyfile(Path(tmp) / "reports" / "plots" / f"{results['dataset']}-probes-linear.png", png)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roster", type=Path, default=ROOT, help="a checkout where `make repro` finished")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--vaegan-d", action="store_true", help="also probe VAE-GAN's discriminator")
    parser.add_argument("--controls", action="store_true",
                        help="also probe the VAEs' encoder trunks (as wide as a D's) and untrained networks of "
                             f"{', '.join(CONTROL_MODELS)}' specs")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "representation.json")
    parser.add_argument("--png", type=Path, default=None, help="also write the report's accuracy-vs-labels picture")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as genflow's workers (ray.threads_per_worker: 1)
    spec = config.EvaluateSpec()
    probes = LinearProbes.load(args.roster / "data" / "prepared" / args.dataset, spec)
    features = FeatureSpace(args.roster / "models" / "featurenet" / args.dataset)
    start = time.perf_counter()
    references = probes.reference_rows(features)
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "code_revision": code_revision(ROOT),
               "roster": str(args.roster), "dataset": args.dataset, "roster_code_revision": code_revision(args.roster),
               "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": 1,
                           "torch": torch.__version__, "python": platform.python_version()},
               "protocol": {**protocol(spec.seed), "n_train": len(probes.y_train), "n_test": len(probes.y_test)},
               "featurenet_test_accuracy": features.meta.get("test_accuracy"),
               "references": references, "references_seconds": round(time.perf_counter() - start, 3), "models": {}}
    print(f"references: {references}", flush=True)
    for name in args.models:
        results["models"].update(probe_model(probes, args.roster / "models" / name, args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(markdown(results))
    if args.png is not None:
        report_picture(results, args.roster, args.png)
    print(f"wrote {args.out}; pixels / feature network rows: {PIXELS!r}, {FEATURENET!r}")


if __name__ == "__main__":
    main()
