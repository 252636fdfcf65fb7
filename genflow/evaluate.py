"""Evaluate one trained model: metrics JSON (with its protocol) and a sample picture.

Every model is measured on the same protocol: ``evaluate.n_samples`` generated
samples (seeded), up to ``evaluate.n_real`` rows of the reference split, the
dataset's feature space. The real-vs-real floor (training split vs reference
split, same counts) is written beside every distance so a reader knows what
"perfect" looks like on this data.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from genflow.data.loader import Split, load_split
from genflow.data.shards import manifest_hash, read_manifest
from genflow.featurenet import FeatureSpace
from genflow.io import atomic_path, code_revision, write_json
from genflow.metrics import frechet_distance, mixture_modes
from genflow.training import load_trained
from genflow.visualize import save_image_grid, save_points


def first_rows(split: Split, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    return split.batch(torch.arange(min(n, len(split))))


@torch.no_grad()
def generate(model, n: int, seed: int, batch: int = 1024) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``n`` samples from fixed latents; conditional models get balanced labels."""
    gen = torch.Generator().manual_seed(seed)
    c = torch.arange(n) % model.spec.c_dim if model.spec.c_dim else None
    chunks = [model.sample(min(batch, n - i), None if c is None else c[i:i + batch], gen) for i in range(0, n, batch)]
    return torch.cat(chunks), c


@torch.no_grad()
def encoder_metrics(model, x: torch.Tensor, c: torch.Tensor | None, seed: int) -> dict[str, float]:
    """ELBO (models with a likelihood) and reconstruction error (models with an encoder)."""
    metrics = {}
    if hasattr(model, "elbo"):
        gen = torch.Generator().manual_seed(seed)
        elbo = torch.cat([model.elbo(x[i:i + 512], None if c is None else c[i:i + 512], gen)
                          for i in range(0, len(x), 512)])
        metrics["elbo"] = float(elbo.mean())
    if hasattr(model, "reconstruct"):
        metrics["recon_mse"] = float((model.reconstruct(x, c) - x).square().flatten(1).sum(1).mean())
    return metrics


def evaluate_model(model_dir: str | Path, data_dir: str | Path, featurenet_dir: str | Path, spec,
                   out_json: str | Path, out_png: str | Path, log=print) -> dict[str, Any]:
    model, meta, _ = load_trained(model_dir)
    manifest = read_manifest(data_dir)
    reference = load_split(data_dir, spec.reference_split)
    train = load_split(data_dir, "train")
    real, real_c = first_rows(reference, spec.n_real)
    floor, _ = first_rows(train, spec.n_real)
    fake, _ = generate(model, spec.n_samples, spec.seed)
    log(f"[evaluate] {meta['name']}: {len(fake)} generated vs {len(real)} real ({spec.reference_split} split)")

    features = FeatureSpace(featurenet_dir)
    f_real = features(real)
    metrics: dict[str, Any] = {"fid": frechet_distance(f_real, features(fake)),
                               "fid_floor": frechet_distance(f_real, features(floor))}
    if "mixture" in manifest:
        mix = manifest["mixture"]
        metrics.update(mixture_modes(fake, mix["centers"], mix["std"]))
        metrics.update({f"{k}_floor": v for k, v in mixture_modes(real, mix["centers"], mix["std"]).items()})
    metrics.update(encoder_metrics(model, real, real_c, spec.seed))
    # JSON has no inf/nan: a metric that is undefined (e.g. reverse KL with no good sample) is null
    metrics = {k: round(float(v), 6) if np.isfinite(v) else None for k, v in metrics.items()}
    metrics["protocol"] = {
        "feature_space": features.id, "feature_kind": features.meta["kind"],
        "n_generated": len(fake), "n_real": len(real), "n_floor": len(floor),
        "reference_split": spec.reference_split, "seed": spec.seed,
        "data_manifest_sha256": manifest_hash(data_dir), "model_state_sha256": meta["state_sha256"],
        "model_code_revision": meta["code_revision"], "code_revision": code_revision(),
    }
    write_json(out_json, metrics)
    picture(fake[: spec.grid_size ** 2] if model.is_image else fake, manifest, out_png, meta["name"])
    log(f"[evaluate] {meta['name']}: " + ", ".join(f"{k}={v}" for k, v in metrics.items() if k != "protocol"))
    return metrics


def picture(samples: torch.Tensor, manifest: dict[str, Any], out_png: str | Path, title: str) -> None:
    with atomic_path(out_png) as tmp:
        if manifest["kind"] == "image":
            save_image_grid(samples, tmp)
        else:
            centers = np.asarray(manifest["mixture"]["centers"])
            save_points(samples.numpy(), centers, tmp, title=title)
