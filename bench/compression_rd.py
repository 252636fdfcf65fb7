"""Rate-distortion of the digits VAE over beta, with PNG and JPEG beside it.

Trains the default roster's ``vae_digits`` (params.yaml of the given checkout, its budget
unchanged) at each beta and seed, in-process, into --work (a rerun reuses finished models);
then measures every seed as bench/compression_roster.py does: rate (KL, bits/image), distortion
(PSNR of the decoder mean), the real size and PSNR of `genflow compress` at its default step,
on the evaluate stage's reference rows; and PNG / JPEG (every quality) on the same images.
Writes the JSON and the figure that docs/results/compression.md shows.

    .venv/bin/python bench/compression_rd.py --roster /path/to/repro/checkout
    .venv/bin/python bench/compression_rd.py --plot-only     # redraw the figure from the JSON
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import compression_measure as measure  # noqa: E402
from genflow import config  # noqa: E402
from genflow.io import code_revision  # noqa: E402

BASE = "vae_digits"
RESULTS = ROOT / "bench" / "results" / "compression_rd.json"
FIGURE = ROOT / "docs" / "results" / "compression-rd.png"


def model_name(beta: float) -> str:
    return f"{BASE}_beta{beta:g}".replace(".", "p")


def train_beta(beta: float, seeds: list[int], roster: Path, work: Path) -> Path:
    from genflow.launch import train

    out = work / "models" / model_name(beta)
    if out.is_dir():  # trained by an earlier run of this script
        return out
    raw = config.read_yaml(roster / "params.yaml")
    raw["models"] = {model_name(beta): {**copy.deepcopy(raw["models"][BASE]), "beta": beta, "seeds": seeds}}
    raw["ray"].update(num_workers=0, storage_path=str(work / "storage"))
    raw["sweeps"], raw["report"] = {}, {"baselines": {}}  # they name models this run does not have
    params = config.validate(raw)
    train(model_name(beta), params, roster / "data" / "prepared", out,
          featurenet_root=roster / "models" / "featurenet")
    return out


def measure_beta(model_dir: Path, x, pixels, evaluate_spec, work: Path) -> dict:
    from compression_roster import model_block
    from genflow.export import codec

    block = model_block(model_dir, x, None, pixels, evaluate_spec, [codec.DEFAULT_STEP], work / "export")
    return {"metrics": block["metrics"], "codec": block["codec"][str(codec.DEFAULT_STEP)],
            "per_seed": block["per_seed"]}


def run(args) -> dict:
    import torch

    from genflow.export import codec

    torch.set_num_threads(1)
    params = config.load(args.roster / "params.yaml")
    data_dir = args.roster / "data" / "prepared" / params.models[BASE].dataset
    x, _ = measure.reference(data_dir, params.evaluate)
    pixels = codec.to_uint8(x.numpy())
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "code_revision": code_revision(ROOT),
               "machine": f"{platform.platform()}, {os.cpu_count()} CPUs (shared), torch {torch.__version__}",
               "base": BASE, "budget": params.models[BASE].train.model_dump(mode="json"), "seeds": args.seeds,
               "images": {"split": params.evaluate.reference_split, "n": len(pixels), "shape": list(pixels.shape[1:])},
               "default_step": codec.DEFAULT_STEP, "png": measure.png_figures(pixels),
               "jpeg": measure.jpeg_curve(pixels), "mean_image_psnr": measure.mean_image_psnr(data_dir, pixels),
               "betas": {}}
    for beta in args.betas:
        started = time.time()
        model_dir = train_beta(beta, args.seeds, args.roster, args.work)
        results["betas"][f"{beta:g}"] = measure_beta(model_dir, x, pixels, params.evaluate, args.work)
        print(f"beta {beta:g}: {time.time() - started:.0f} s", flush=True)
    for block in results["betas"].values():
        block["jpeg_at_codec_psnr"] = measure.jpeg_at_psnr(results["jpeg"], block["codec"]["psnr"]["mean"])
    return results


def plot(results: dict, out: Path) -> None:
    from genflow.evaluate.pictures import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 5.5))
    betas = sorted(results["betas"], key=float)
    series = (("metrics", "rate_bits", "recon_psnr", "o", "VAE: KL rate vs PSNR of the decoder mean (ideal, no file)"),
              ("codec", "set_bits_per_image", "psnr",
               "s", f"genflow compress (step {results['default_step']}): real file, whole set"))
    for section, bits_key, psnr_key, marker, label in series:
        bits = [results["betas"][b][section][bits_key] for b in betas]
        psnr = [results["betas"][b][section][psnr_key] for b in betas]
        ax.errorbar([r["mean"] for r in bits], [p["mean"] for p in psnr], xerr=[r["ci95"] or 0 for r in bits],
                    yerr=[p["ci95"] or 0 for p in psnr], marker=marker, capsize=2, label=label)
        for b, r, p in zip(betas, bits, psnr):
            ax.annotate(f"β={b}", (r["mean"], p["mean"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    jpeg = results["jpeg"]
    ax.plot([j["set_bits_per_image"] for j in jpeg], [j["set_psnr"] for j in jpeg], color="grey",
            label="JPEG quality 1-100: whole set in one mosaic")
    ax.plot([j["single_bits_per_image"] for j in jpeg], [j["single_psnr"] for j in jpeg], color="grey", ls=":",
            label="JPEG quality 1-100: one file per image")
    for kind, ls, what in (("set", "--", "whole set in one mosaic"), ("single", "-.", "one file per image")):
        ax.axvline(results["png"][f"{kind}_bits_per_image"], color="black", ls=ls, lw=1,
                   label=f"PNG (lossless, PSNR ∞): {what}")
    if "mean_image_psnr" in results:
        ax.axhline(results["mean_image_psnr"], color="tab:red", ls=":", lw=1,
                   label="the training mean image for every image (0 bits)")
    ax.set_xscale("log")
    ax.set_ylim(5, 35)
    ax.set_xlabel("bits per image (8×8 digit; log scale)")
    ax.set_ylabel("PSNR (dB, pixels on [0, 1])")
    ax.set_title(f"digits VAE over β ({len(results['seeds'])} seeds, mean ± 95 % CI) vs PNG / JPEG, "
                 f"{results['images']['n']} {results['images']['split']} images", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roster", type=Path, help="a checkout where `make repro` has finished (read only)")
    parser.add_argument("--betas", type=float, nargs="+", default=[0.25, 0.5, 1.0, 2.0, 4.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work", type=Path, default=Path("/tmp/genflow-compression-rd"),
                        help="trained models and exports (reused by a rerun)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--figure", type=Path, default=FIGURE)
    parser.add_argument("--plot-only", action="store_true", help="redraw the figure from --out")
    args = parser.parse_args()
    if args.plot_only:
        results = json.loads(args.out.read_text())
    else:
        if args.roster is None:
            parser.error("--roster is required (unless --plot-only)")
        results = run(args)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.out}")
    plot(results, args.figure)
    print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
