"""Evaluate one trained model: metrics JSON (with its protocol) and a sample picture.

Every model is measured on the same protocol: ``evaluate.n_samples`` generated
samples (seeded), up to ``evaluate.n_real`` rows of the reference split, the
dataset's feature space. The real-vs-real floor (training split vs reference
split, same counts) is written beside every distance so a reader knows what
"perfect" looks like on this data.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genflow.data.loader import Split, load_split
from genflow.data.shards import manifest_hash, read_manifest
from genflow.featurenet import FeatureSpace
from genflow.io import atomic_path, code_revision, write_json
from genflow.metrics import frechet_distance, mixture_modes
from genflow.training import load_trained, trained_seeds
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


@dataclass
class Reference:
    """What every seed of a model is compared with: real rows, their features, the floor."""

    manifest: dict[str, Any]
    real: torch.Tensor
    real_c: torch.Tensor | None
    features: FeatureSpace
    f_real: torch.Tensor
    floor: dict[str, Any]
    n_floor: int

    @classmethod
    def load(cls, data_dir: Path, featurenet_dir: Path, spec) -> "Reference":
        manifest = read_manifest(data_dir)
        real, real_c = first_rows(load_split(data_dir, spec.reference_split), spec.n_real)
        floor_rows, _ = first_rows(load_split(data_dir, "train"), spec.n_real)
        features = FeatureSpace(featurenet_dir)
        f_real = features(real)
        floor = {"fid_floor": frechet_distance(f_real, features(floor_rows))}
        if "mixture" in manifest:
            mix = manifest["mixture"]
            floor.update({f"{k}_floor": v for k, v in mixture_modes(real, mix["centers"], mix["std"]).items()})
        return cls(manifest, real, real_c, features, f_real, floor, len(floor_rows))


def seed_metrics(model, fake: torch.Tensor, ref: Reference, seed: int) -> dict[str, float]:
    metrics = {"fid": frechet_distance(ref.f_real, ref.features(fake))}
    if "mixture" in ref.manifest:
        mix = ref.manifest["mixture"]
        metrics.update(mixture_modes(fake, mix["centers"], mix["std"]))
    metrics.update(encoder_metrics(model, ref.real, ref.real_c, seed))
    return metrics


def _clean(value: float) -> float | None:
    # JSON has no inf/nan: a metric that is undefined (e.g. reverse KL with no good sample) is null
    return round(float(value), 6) if value is not None and np.isfinite(value) else None


def aggregate(per_seed: dict[str, dict[str, float | None]]) -> dict[str, float | None]:
    """Mean over seeds, and the sample std when there are several (null if any seed is null)."""
    out: dict[str, float | None] = {}
    for key in next(iter(per_seed.values())):
        values = [m[key] for m in per_seed.values()]
        defined = None not in values
        out[key] = _clean(np.mean(values)) if defined else None
        if len(values) > 1:
            out[f"{key}_std"] = _clean(np.std(values, ddof=1)) if defined else None
    return out


def evaluate_model(model_dir: str | Path, data_dir: str | Path, featurenet_dir: str | Path, spec,
                   out_json: str | Path, out_png: str | Path, log=print) -> dict[str, Any]:
    """Metrics of every trained seed, their mean (and std), the floors, and the protocol."""
    ref = Reference.load(Path(data_dir), Path(featurenet_dir), spec)
    per_seed, states = {}, {}
    for index, directory in enumerate(trained_seeds(Path(model_dir))):
        model, meta, _ = load_trained(directory)
        fake, _ = generate(model, spec.n_samples, spec.seed)
        per_seed[str(meta["seed"])] = {k: _clean(v) for k, v in seed_metrics(model, fake, ref, spec.seed).items()}
        states[str(meta["seed"])] = meta["state_sha256"]
        log(f"[evaluate] {meta['name']} seed {meta['seed']}: {per_seed[str(meta['seed'])]}")
        if index == 0:
            picture(fake[: spec.grid_size ** 2] if model.is_image else fake, ref.manifest, out_png, meta["name"])
    metrics: dict[str, Any] = {**aggregate(per_seed), **{k: _clean(v) for k, v in ref.floor.items()}}
    metrics["n_seeds"] = len(per_seed)
    metrics["per_seed"] = per_seed
    metrics["protocol"] = {
        "feature_space": ref.features.id, "feature_kind": ref.features.meta["kind"],
        "n_generated": spec.n_samples, "n_real": len(ref.real), "n_floor": ref.n_floor,
        "reference_split": spec.reference_split, "seed": spec.seed, "seeds": [int(k) for k in per_seed],
        "data_manifest_sha256": manifest_hash(data_dir), "model_state_sha256": states,
        "model_code_revision": meta["code_revision"], "code_revision": code_revision(),
    }
    write_json(out_json, metrics)
    shown = {k: v for k, v in metrics.items() if k not in ("protocol", "per_seed")}
    log(f"[evaluate] {meta['name']} ({len(per_seed)} seeds): {shown}")
    return metrics


def picture(samples: torch.Tensor, manifest: dict[str, Any], out_png: str | Path, title: str) -> None:
    with atomic_path(out_png) as tmp:
        if manifest["kind"] == "image":
            save_image_grid(samples, tmp)
        else:
            centers = np.asarray(manifest["mixture"]["centers"])
            save_points(samples.numpy(), centers, tmp, title=title)
