"""Every metric the evaluate stage writes: label, direction, whether it has a real-data floor,
and whether it is a headline number.

The evaluate stage writes two files per model:

- ``metrics/<model>.json``, the DVC metrics file: the headline numbers only, flat (mean, std
  over seeds, floor, and ``n_seeds``), 13 to 25 values per model of the default roster, so
  that ``dvc exp show``, ``dvc metrics diff`` and DVC Studio stay readable;
- ``metrics/<model>.details.json`` (a versioned out): every metric, each seed's values, the
  task's baselines, the ROC curve and the protocol. The report, the export's model card and
  the sweeps read this one.

A metric is headline when it is what people compare models by on its task (FID, precision /
recall / coverage, the mixtures' mode counts, a VAE's likelihood bound, a translator's
accuracy ...). KID and density restate FID and precision with another estimator, the one-sample
ELBO is looser than the IWAE bound, and the path length is a diagnostic: they stay in the
details file and the report.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Metric:
    name: str
    label: str            # the report's column title, with its direction arrow
    better: str           # "lower" | "higher"
    floor: bool = False   # evaluate writes <name>_floor: what real data scores
    headline: bool = True  # in metrics/<model>.json, not only in the details


# the report's column order: first what the samples look like (quality, diversity, mode
# collapse), then the non-generative tasks, then what the model itself offers
SAMPLE = (
    Metric("fid", "FID ↓", "lower", floor=True),
    Metric("kid", "KID ↓", "lower", floor=True, headline=False),
    Metric("precision", "precision ↑", "higher", floor=True),
    Metric("recall", "recall ↑", "higher", floor=True),
    Metric("density", "density ↑", "higher", floor=True, headline=False),
    Metric("coverage", "coverage ↑", "higher", floor=True),
    Metric("modes", "modes ↑", "higher", floor=True),
    Metric("high_quality", "high quality ↑", "higher", floor=True),
    Metric("reverse_kl", "reverse KL ↓", "lower", floor=True),
)
UPSCALE = (
    Metric("psnr", "PSNR (dB) ↑", "higher"),
    Metric("ssim", "SSIM ↑", "higher"),
)
# translation: the floor is the classifier's accuracy on real target-class images
TRANSLATE = (
    Metric("accuracy_ab", "accuracy A→B ↑", "higher", floor=True),
    Metric("accuracy_ba", "accuracy B→A ↑", "higher", floor=True),
    Metric("fid_ab", "FID A→B ↓", "lower"),
    Metric("fid_ba", "FID B→A ↓", "lower"),
    Metric("cycle_mse_a", "cycle MSE A ↓", "lower"),
    Metric("cycle_mse_b", "cycle MSE B ↓", "lower"),
    Metric("pose_error", "pose error (px) ↓", "lower"),
)
MODEL = (
    Metric("cfid", "class FID ↓", "lower", floor=True),
    Metric("class_accuracy", "class accuracy ↑", "higher", floor=True),
    # issue 29, data augmentation (genflow/evaluate/augmentation.py): CAS is Ravuri & Vinyals' headline
    Metric("cas", "CAS ↑", "higher", floor=True),
    Metric("augmentation_gain", "augmentation gain ↑", "higher", floor=True, headline=False),
    Metric("elbo", "ELBO (nats) ↑", "higher", headline=False),
    Metric("nll_iwae", "NLL, IWAE (nats) ↓", "lower"),
    Metric("recon_mse", "recon. SSE ↓", "lower"),
    # a VAE as a lossy codec (#29; genflow/metrics/compression.py says what each number means).
    # Bits per dimension: under a Bernoulli decoder a cross-entropy with soft targets, under a
    # Gaussian one a density's; neither is the code length of the 8-bit pixels
    Metric("rate_bits", "rate (bits/image) ↓", "lower"),
    Metric("distortion_mse", "distortion MSE [0,1] ↓", "lower", headline=False),
    Metric("recon_psnr", "recon. PSNR (dB) ↑", "higher", headline=False),  # recon. SSE in dB
    Metric("bpd_iwae", "bits/dim, IWAE ↓", "lower", headline=False),
    Metric("path_length", "path length ↓", "lower", headline=False),
    Metric("path_length_w", "path length in W ↓", "lower"),
    Metric("anomaly_auroc", "anomaly AUROC ↑", "higher"),
)
# representation (#29): test accuracy of a linear probe on the model's frozen features trained with
# 1 / 10 / 100 % of the training labels (genflow/evaluate/representation.py); the reference rows
# (raw pixels, the feature network) are in the details' ``probe_references``
REPRESENTATION = (
    Metric("probe_1pct", "probe acc. 1 % labels ↑", "higher", headline=False),
    Metric("probe_10pct", "probe acc. 10 % labels ↑", "higher"),
    Metric("probe_100pct", "probe acc. 100 % labels ↑", "higher", headline=False),
)
METRICS = SAMPLE + UPSCALE + TRANSLATE + MODEL + REPRESENTATION
BY_NAME = {m.name: m for m in METRICS}


def floor_key(metric: Metric) -> str | None:
    return f"{metric.name}_floor" if metric.floor else None


def headline(details: dict[str, Any]) -> dict[str, Any]:
    """The DVC metrics file of a model: each headline metric's mean, std and floor, flat."""
    out: dict[str, Any] = {}
    for metric in METRICS:
        if not metric.headline or metric.name not in details:
            continue
        for key in (metric.name, f"{metric.name}_std", floor_key(metric)):
            if key is not None and key in details:
                out[key] = details[key]
    out["n_seeds"] = details["n_seeds"]
    return out


def details_path(metrics_path: str | Path) -> Path:
    """``metrics/<model>.json`` -> ``metrics/<model>.details.json``."""
    path = Path(metrics_path)
    return path.with_name(f"{path.stem}.details.json")


# What a dataset's models are ranked by, first key first (ties broken by the next): what the
# dataset is for, not one metric for all (#27): FID ranks a uniform spread over a 2-D mixture
# best although almost none of its samples lie on a mode. The first whose keys are all present wins.
HEADLINE_ORDERS = (
    ("mixtures: modes, then high quality", ("modes", "high_quality")),
    ("stacked digits: modes, then reverse KL", ("modes", "reverse_kl")),
    ("images: FID", ("fid",)),
    ("ELBO", ("elbo",)),
)


def headline_order(available) -> tuple[str, tuple[str, ...]] | None:
    """``(why, keys)``: the ranking keys of a dataset whose models have the metrics ``available``
    (a mixture's have high_quality, stacked digits' modes without it, images' only fid); None
    when no order fits (the report then ranks by nothing)."""
    available = set(available)
    for why, keys in HEADLINE_ORDERS:
        if set(keys) <= available:
            return why, keys
    return None


def sort_key(metrics: dict[str, Any], keys: tuple[str, ...]) -> tuple[float, ...]:
    """A key that sorts the best first: each metric turned so that lower is better."""
    return tuple(metrics[k] if BY_NAME[k].better == "lower" else -metrics[k] for k in keys)
