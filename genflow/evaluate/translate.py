"""Evaluation of translation models (task ``translate``: CycleGAN), by evaluate.py's protocol.

The reference rows (``evaluate.n_real`` rows of the test split) are split by label into
domain A (``domain_a``) and domain B rows. With the evaluation generators (EMA if any):

* ``fid_ab``: FID of G_AB(test A rows) against the real test B rows, in the dataset's
  feature space (``fid_ba`` the other way): do translations look like the target domain?
* ``accuracy_ab``: the share of G_AB(test A rows) that the dataset's classifier puts in
  class domain_b (``accuracy_ba``): is the domain changed?
* ``cycle_mse_a``: mean squared error per pixel (in [-1, 1]) of G_BA(G_AB(a)) against a
  (``cycle_mse_b``): is the translation invertible?
* ``pose_error``: mean distance in pixels between the intensity centroids of each source
  image and its translation, both directions pooled: is the content (for sprites: the
  position) kept? An all-black image's centroid is taken as the image centre.

The baseline is the identity mapping (the translation is the source image): its cycle
error and pose error are 0 and its accuracy is the share of sources the classifier puts
in the *other* domain, so a model has to beat it on FID and accuracy without losing much
on pose. The sweep probe is the mean of the two directions' FID (or KID) on val rows.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from genflow.errors import DataError
from genflow.evaluate.model_metrics import PROBE_KID_SUBSETS
from genflow.evaluate.pictures import save_image_grid
from genflow.io import atomic_path
from genflow.metrics import frechet_distance, kid

Translate = Callable[[torch.Tensor], torch.Tensor]
PICTURE_COLUMNS = 8


def domains(x: torch.Tensor, c: torch.Tensor | None, spec) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows of domain A and of domain B; each needs at least two (a covariance for FID)."""
    if c is None:
        raise DataError("translation metrics need class labels: the domains are two classes")
    rows = {key: x[c == getattr(spec, key)] for key in ("domain_a", "domain_b")}
    for key, part in rows.items():
        if len(part) < 2:
            raise DataError(f"the reference rows hold {len(part)} images of class {getattr(spec, key)} "
                            f"({key}); translation metrics need at least 2 (raise evaluate.n_real)")
    return rows["domain_a"], rows["domain_b"]


def centroids(x: torch.Tensor) -> torch.Tensor:
    """(N, 2) intensity centroids (row, column) in pixels; the image centre where all is black."""
    intensity = (x.clamp(-1, 1) + 1).mean(dim=1) / 2  # (N, H, W) in [0, 1]
    h, w = intensity.shape[1:]
    mass = intensity.sum(dim=(1, 2))
    rows = (intensity.sum(dim=2) * torch.arange(h, dtype=x.dtype)).sum(dim=1)
    cols = (intensity.sum(dim=1) * torch.arange(w, dtype=x.dtype)).sum(dim=1)
    found = mass > 1e-6
    centre = torch.tensor([(h - 1) / 2, (w - 1) / 2], dtype=x.dtype)
    safe = mass.clamp(min=1e-6)
    return torch.where(found[:, None], torch.stack([rows / safe, cols / safe], dim=1), centre)


def pose_distances(source: torch.Tensor, translated: torch.Tensor) -> torch.Tensor:
    return (centroids(source) - centroids(translated)).norm(dim=1)


def translation_metrics(ab: Translate, ba: Translate, a: torch.Tensor, b: torch.Tensor, features,
                        spec) -> dict[str, float]:
    """Every metric of a pair of translations (A -> B, B -> A) on real rows a and b."""
    fake_b, fake_a = ab(a), ba(b)
    out = {"fid_ab": frechet_distance(features(b), features(fake_b)),
           "fid_ba": frechet_distance(features(a), features(fake_a)),
           "accuracy_ab": float((features.classify(fake_b) == spec.domain_b).double().mean()),
           "accuracy_ba": float((features.classify(fake_a) == spec.domain_a).double().mean()),
           "cycle_mse_a": float((ba(fake_b) - a).square().mean()),
           "cycle_mse_b": float((ab(fake_a) - b).square().mean())}
    out["pose_error"] = float(torch.cat([pose_distances(a, fake_b), pose_distances(b, fake_a)]).mean())
    return out


def _generators(model) -> tuple[Translate, Translate]:
    model.eval()
    return (lambda x: model.translate(x, "ab")), (lambda x: model.translate(x, "ba"))


def seed_metrics(model, ref) -> dict[str, float]:
    a, b = domains(ref.real, ref.real_c, model.spec)
    return translation_metrics(*_generators(model), a, b, ref.features, model.spec)


def baseline_metrics(model, ref) -> dict[str, dict[str, float]]:
    """The identity mapping, measured like the model: what "translating" by doing nothing scores."""
    a, b = domains(ref.real, ref.real_c, model.spec)
    same: Translate = lambda x: x  # noqa: E731
    return {"identity": translation_metrics(same, same, a, b, ref.features, model.spec)}


@torch.no_grad()
def floors(model, ref) -> dict[str, float]:
    """What a perfect translator scores on accuracy: the classifier on real images of the target
    domain (its own errors cap every model's accuracy)."""
    a, b = domains(ref.real, ref.real_c, model.spec)
    return {"accuracy_ab_floor": float((ref.features.classify(b) == model.spec.domain_b).double().mean()),
            "accuracy_ba_floor": float((ref.features.classify(a) == model.spec.domain_a).double().mean())}


@torch.no_grad()
def picture(model, ref, out_png: str | Path) -> None:
    """Rows: A, G_AB(A), G_BA(G_AB(A)), B, G_BA(B), G_AB(G_BA(B)); the first 8 test rows of each."""
    a, b = domains(ref.real, ref.real_c, model.spec)
    n = min(PICTURE_COLUMNS, len(a), len(b))
    ab, ba = _generators(model)
    a, b = a[:n], b[:n]
    fake_b, fake_a = ab(a), ba(b)
    rows = [a, fake_b, ba(fake_b), b, fake_a, ab(fake_a)]
    with atomic_path(out_png) as tmp:
        save_image_grid(torch.cat(rows), tmp, cols=n)


@torch.no_grad()
def probe(model, probe) -> float:
    """Mean of the two directions' FID (or KID) of up to probe.n_samples translated val rows."""
    a, b = domains(probe.real, probe.real_c, model.spec)
    ab, ba = _generators(model)
    a, b = a[:probe.n_samples], b[:probe.n_samples]
    pairs = ((probe.features(b), probe.features(ab(a))), (probe.features(a), probe.features(ba(b))))
    if probe.metric == "fid":
        return sum(frechet_distance(real, fake) for real, fake in pairs) / 2
    return sum(kid(real, fake, n_subsets=PROBE_KID_SUBSETS, subset_size=min(1000, len(real), len(fake)),
                   seed=probe.seed)[0] for real, fake in pairs) / 2
