"""The trained roster's VAEs as codecs: rate, distortion and bits/dim per seed, the real size of
`genflow compress` at a range of quantization steps, and PNG / JPEG on the same images.

Reads a finished `make repro` checkout (read only: its params.yaml, data/prepared/<dataset> and
models/<model>/seed_*); exports each seed into a temporary folder. Writes the JSON that
docs/results/compression.md quotes.

    .venv/bin/python bench/compression_roster.py --roster /path/to/repro/checkout
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
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402

import compression_measure as measure  # noqa: E402
from genflow import config  # noqa: E402
from genflow.export import codec  # noqa: E402
from genflow.io import code_revision  # noqa: E402
from genflow.train.worker import load_trained, trained_seeds  # noqa: E402

STEPS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)


def measure_seed(seed_dir: Path, x, c, pixels, evaluate_spec, steps, work: Path) -> dict:
    labels = None if c is None or not load_trained(seed_dir)[0].spec.c_dim else c.numpy()
    exported = measure.export_seed(seed_dir, work / seed_dir.parent.name / seed_dir.name)
    return {"metrics": measure.model_metrics(seed_dir, x, c if labels is not None else None, evaluate_spec),
            "codec": [measure.codec_figures(exported, pixels, labels, step) for step in steps]}


def by_step(per_seed: dict, step: float) -> dict[str, dict]:
    return {seed: next(p for p in r["codec"] if p["step"] == step) for seed, r in per_seed.items()}


def model_block(model_dir: Path, x, c, pixels, evaluate_spec, steps, work: Path) -> dict:
    per_seed = {}
    for seed_dir in trained_seeds(model_dir):
        per_seed[seed_dir.name] = measure_seed(seed_dir, x, c, pixels, evaluate_spec, steps, work)
        print(f"{model_dir.name} {seed_dir.name}: {per_seed[seed_dir.name]['metrics']}", flush=True)
    codec_summary = {str(step): measure.summaries({s: {k: v for k, v in p.items() if k != "step"}
                                                  for s, p in by_step(per_seed, step).items()})
                     for step in steps}
    return {"per_seed": per_seed,
            "metrics": measure.summaries({s: r["metrics"] for s, r in per_seed.items()}),
            "codec": codec_summary,
            "model_code_revision": load_trained(trained_seeds(model_dir)[0])[1]["code_revision"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roster", type=Path, required=True, help="a checkout where `make repro` has finished")
    parser.add_argument("--models", nargs="+", default=["vae_digits", "cvae_digits"])
    parser.add_argument("--steps", type=float, nargs="+", default=list(STEPS), help="codec quantization steps")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "compression_roster.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    params = config.load(args.roster / "params.yaml")
    dataset = params.models[args.models[0]].dataset
    x, c = measure.reference(args.roster / "data" / "prepared" / dataset, params.evaluate)
    pixels = codec.to_uint8(x.numpy())
    jpeg = measure.jpeg_curve(pixels)
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "code_revision": code_revision(ROOT),
               "machine": f"{platform.platform()}, {os.cpu_count()} CPUs (shared), torch {torch.__version__}",
               "images": {"dataset": dataset, "split": params.evaluate.reference_split, "n": len(pixels),
                          "shape": list(pixels.shape[1:]), "seed": params.evaluate.seed},
               "default_step": codec.DEFAULT_STEP, "png": measure.png_figures(pixels), "jpeg": jpeg,
               "mean_image_psnr": measure.mean_image_psnr(args.roster / "data" / "prepared" / dataset, pixels),
               "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            block = model_block(args.roster / "models" / name, x, c, pixels, params.evaluate, args.steps, Path(tmp))
            block["jpeg_at_codec_psnr"] = {str(step): {kind: measure.jpeg_at_psnr(jpeg, s["psnr"]["mean"], kind)
                                                       for kind in ("set", "single")}
                                           for step, s in block["codec"].items()}
            results["models"][name] = block
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
