"""Evaluate one trained model: metrics JSON (with its protocol), a sample picture and a
latent-interpolation picture.

Every model is measured on the same protocol: ``evaluate.n_samples`` generated
samples (seeded), up to ``evaluate.n_real`` rows of the reference split, the
dataset's feature space. The real-vs-real floor of every sample metric
(training rows scored as if they were samples, same counts) is written beside
it, so a reader knows what "perfect" scores on this data with these counts.
A model trained without ``holdout_class`` also gets its ROC curve for finding that class
(``anomaly_roc``: TPR at fixed FPRs, per seed; a list, so `dvc metrics` leaves it out).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genflow.data.loader import Split, load_split
from genflow.data.shards import manifest_hash, read_manifest
from genflow.featurenet.network import FeatureSpace
from genflow.io import atomic_path, code_revision, write_json
from genflow.metrics import catalog, discrete_modes, frechet_distance, kid, mixture_modes
from genflow.metrics.compression import COMPRESSION_PROTOCOL, compression_metrics
from genflow.metrics.manifolds import prdc_many
from genflow.evaluate.model_metrics import (PATH_W_PAIRS, ROC_POINTS, anomaly_detection, chunk_labels, class_accuracy,
                                   class_fid, generate, likelihood_metrics, path_length, path_length_w,
                                   slerp_paths)
from genflow.evaluate.gallery import sample_layout, write_gallery
from genflow.evaluate.augmentation import Augmentation
from genflow.evaluate.pictures import interpolation_png, save_image_grid, save_paths, save_points
from genflow.evaluate.representation import LinearProbes  # linear probes on frozen features (#29)
from genflow.train.worker import load_trained, trained_seeds

# the interpolation picture: `genflow interpolate`'s defaults, decoded by the first seed's model
INTERPOLATION_PAIRS, INTERPOLATION_STEPS = 4, 8


def sample_rows(split: Split, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``n`` rows drawn without replacement (seeded), kept in split order; all rows if n >= size.
    Not the first n: an image folder's rows are sorted by class, so they would be one class."""
    if n >= len(split):
        return split.batch(torch.arange(len(split)))
    rows = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:n]
    return split.batch(rows.sort().values)


@dataclass
class Reference:
    """What every seed of a model is compared with: real rows, their features, the floors."""

    data_dir: Path
    manifest: dict[str, Any]
    spec: Any  # the evaluate section of params
    features: FeatureSpace
    real: torch.Tensor
    real_c: torch.Tensor | None
    f_real: torch.Tensor
    train: torch.Tensor
    train_c: torch.Tensor | None
    f_train: torch.Tensor

    @classmethod
    def load(cls, data_dir: Path, featurenet_dir: Path, spec) -> "Reference":
        real, real_c = sample_rows(load_split(data_dir, spec.reference_split), spec.n_real, spec.seed)
        train, train_c = sample_rows(load_split(data_dir, "train"), spec.n_real, spec.seed + 1)
        features = FeatureSpace(featurenet_dir, spec.inception_weights, spec.inception_resize)
        return cls(data_dir, read_manifest(data_dir), spec, features, real, real_c, features(real),
                   train, train_c, features(train))

    def sample_metrics(self, samples: torch.Tensor, f_samples: torch.Tensor) -> dict[str, float]:
        """Every metric that compares a set of samples with the reference rows."""
        s = self.spec
        out = {"fid": frechet_distance(self.f_real, f_samples)}
        out["kid"], out["kid_subset_std"] = kid(self.f_real, f_samples, n_subsets=s.kid_subsets,
                                                subset_size=s.kid_subset_size, seed=s.seed)
        by_k = prdc_many(self.f_real, f_samples, (s.k_precision_recall, s.k_density_coverage))
        out.update({key: by_k[s.k_precision_recall][key] for key in ("precision", "recall")})
        out.update({key: by_k[s.k_density_coverage][key] for key in ("density", "coverage")})
        if "mixture" in self.manifest:
            mix = self.manifest["mixture"]
            out.update(mixture_modes(samples, mix["centers"], mix["std"]))
        if self.features.channelwise:  # stacked digits: the classifier names one of 1000 modes
            triples = self.features.classify(samples) @ torch.tensor([100, 10, 1])
            out.update(discrete_modes(triples.numpy(), 1000))
        return out

    def conditional_metrics(self, samples: torch.Tensor, f_samples: torch.Tensor, c: torch.Tensor) -> dict:
        out = {"class_accuracy": class_accuracy(self.features, samples, c)}
        cfid = class_fid(self.f_real, self.real_c, f_samples, c)
        return out if cfid is None else {**out, "cfid": cfid}

    def floors(self, conditional: bool) -> dict[str, float]:
        """The training rows scored as if they were a model's samples."""
        floor = self.sample_metrics(self.train, self.f_train)
        floor.pop("kid_subset_std")
        if conditional:
            floor.update(self.conditional_metrics(self.train, self.f_train, self.train_c))
            # a perfect model's samples are classified like unseen real images, not like the
            # classifier's own training rows
            floor["class_accuracy"] = class_accuracy(self.features, self.real, self.real_c)
        return {f"{key}_floor": value for key, value in floor.items()}


def samples_and_features(model, ref: Reference, draw=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The protocol's sample draw and its features: here, or by ``draw(model, features)`` (Ray
    tasks, chosen by genflow.launch); every 1024-sample chunk has its own seeded stream, so
    both give the same samples."""
    spec = ref.spec
    if draw is not None:
        return draw(model, ref.features)
    fake, _ = generate(model, spec.n_samples, spec.seed)
    return fake, ref.features(fake)


# the evaluation of models whose task is not "generate": module with
#   seed_metrics(model, ref) -> {metric: value}            one trained seed
#   baseline_metrics(model, ref) -> {name: {metric: value}}  what the task's trivial method scores
#   picture(model, ref, out_png) -> None                     what the model does, as an image grid
#   floors(model, ref) -> {metric_floor: value}              what a perfect model scores, where that is a number
TASK_EVALUATORS = {"translate": "genflow.evaluate.translate", "upscale": "genflow.evaluate.upscale"}
ACTIONS = {"generate": "sampling", "translate": "translating", "upscale": "upscaling"}


def task_evaluator(model):
    import importlib

    return importlib.import_module(TASK_EVALUATORS[model.task])


def seed_metrics(model, ref: Reference, draw=None) -> tuple[dict[str, float], torch.Tensor]:
    spec = ref.spec
    fake, f_fake = samples_and_features(model, ref, draw)
    c = chunk_labels(model, spec.n_samples)
    metrics = ref.sample_metrics(fake, f_fake)
    if c is not None and ref.real_c is not None:
        metrics.update(ref.conditional_metrics(fake, f_fake, c))
    metrics.update(likelihood_metrics(model, ref.real, ref.real_c, spec.seed, spec.iwae_samples))
    if model.has_likelihood and model.has_encoder:  # a VAE read as a lossy codec (#29)
        metrics.update(compression_metrics(model, ref.real, ref.real_c, metrics.get("nll_iwae")))
    if spec.path_samples:
        metrics["path_length"] = path_length(model, ref.features, spec.path_samples, spec.seed, spec.path_epsilon)
    if spec.path_samples and model.has_w_space:  # style-based G: its own PPL, in W
        metrics["path_length_w"] = path_length_w(model, ref.features, min(spec.path_samples, PATH_W_PAIRS), spec.seed,
                                                 spec.path_epsilon)
    return metrics, fake


def anomaly_metrics(model, ref: Reference) -> tuple[float, np.ndarray]:
    """AUROC and ROC curve (TPR at ROC_POINTS FPRs) of finding the held-out class in the test split."""
    test = load_split(ref.data_dir, "test")
    return anomaly_detection(model, *test.batch(torch.arange(len(test))), model.spec.holdout_class, ref.spec.seed)


def roc_section(tpr_by_seed: dict[str, np.ndarray]) -> dict[str, Any]:
    """metrics["anomaly_roc"]: the shared FPR grid and each seed's TPR on it."""
    rounded = {seed: [_clean(v) for v in tpr] for seed, tpr in tpr_by_seed.items()}
    return {"fpr": [_clean(v) for v in np.linspace(0.0, 1.0, ROC_POINTS)], "tpr": rounded}


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


def sample_protocol(ref: Reference, n_samples: int) -> dict[str, Any]:
    """How a set of ``n_samples`` images is compared with the reference rows: the feature space
    (network, weights, resize), counts, KID subsets, k of each k-NN metric, the data. Shared by
    `evaluate` and `genflow fid` (genflow.evaluate.score_folder)."""
    spec = ref.spec
    return {
        "feature_space": ref.features.id, "feature_kind": ref.features.kind, "feature_backend": ref.features.backend,
        "n_generated": n_samples, "n_real": len(ref.real), "n_floor": len(ref.train),
        "reference_split": spec.reference_split, "seed": spec.seed,
        "kid": {"subsets": spec.kid_subsets, "subset_size": min(spec.kid_subset_size, len(ref.real),
                                                                 n_samples), "kernel": "(x.y/d + 1)^3"},
        "k_precision_recall": spec.k_precision_recall, "k_density_coverage": spec.k_density_coverage,
        "floor": f"{len(ref.train)} train rows (seed {spec.seed + 1}) scored as samples against the same "
                 f"{spec.reference_split} rows",
        "data_manifest_sha256": manifest_hash(ref.data_dir), "code_revision": code_revision(),
    }


def protocol(ref: Reference, per_seed: dict, states: dict, meta: dict) -> dict[str, Any]:
    spec = ref.spec
    return {
        **sample_protocol(ref, spec.n_samples), "seeds": [int(k) for k in per_seed],
        "iwae_samples": spec.iwae_samples, "path_samples": spec.path_samples, "path_epsilon": spec.path_epsilon,
        "path_w_samples": min(spec.path_samples, PATH_W_PAIRS), "compression": COMPRESSION_PROTOCOL,
        "sample_streams": "one seeded stream per chunk of 1024 samples: the same draw for any number of workers",
        "anomaly": {"holdout_class": meta["spec"].get("holdout_class"), "split": "test", "roc_points": ROC_POINTS},
        "interpolation": {"pairs": INTERPOLATION_PAIRS, "steps": INTERPOLATION_STEPS, "path": "slerp",
                          "seed": spec.seed},
        "model_state_sha256": states, "model_code_revision": meta["code_revision"],
    }


def evaluate_model(model_dir: str | Path, data_dir: str | Path, featurenet_dir: str | Path, spec,
                   out_json: str | Path, out_png: str | Path, log=print, draw=None) -> dict[str, Any]:
    """Metrics of every trained seed, their mean (and std), the floors, and the protocol; the first
    seed's samples in ``out_png`` (a conditional model: one class per column), its latent
    interpolation beside it (interpolation_png) and its gallery (genflow.evaluate.gallery).
    ``draw(model, features)`` replaces the in-process sample draw (genflow.launch: Ray tasks)."""
    ref = Reference.load(Path(data_dir), Path(featurenet_dir), spec)
    probes = LinearProbes.load(Path(data_dir), spec)  # None: not a labelled image dataset, or turned off
    per_seed, states, roc, selected = {}, {}, {}, {}
    for index, directory in enumerate(trained_seeds(Path(model_dir))):
        model, meta, _ = load_trained(directory)
        if index == 0:  # CAS and augmentation gain: conditional image models only (None otherwise)
            augment = Augmentation.for_model(model, data_dir, featurenet_dir, spec.augmentation_epochs, spec.seed)
        seed = str(meta["seed"])
        if "selected" in meta:  # probed during training (train.eval_every)
            selected[seed] = {**meta["selected"], **meta["monitor"]}
        log(f"[evaluate] {meta['name']} seed {seed}: {ACTIONS[model.task]}"
            " and scoring ...")
        if model.task != "generate":
            values = task_evaluator(model).seed_metrics(model, ref)
        else:
            values, fake = seed_metrics(model, ref, draw)
        if model.spec.holdout_class is not None:
            values["anomaly_auroc"], roc[seed] = anomaly_metrics(model, ref)
        if probes is not None and probes.applies(model):
            values.update(probes.seed_metrics(model, log))
        if augment is not None:
            values.update(augment.seed_metrics(model))
        per_seed[seed] = {k: _clean(v) for k, v in values.items()}
        states[seed] = meta["state_sha256"]
        shown = {k: v for k, v in per_seed[seed].items() if k in catalog.BY_NAME and catalog.BY_NAME[k].headline}
        log(f"[evaluate] {meta['name']} seed {seed}: " + ", ".join(f"{k} {_number(v)}" for k, v in shown.items()))
        if index == 0 and model.task != "generate":
            task_evaluator(model).picture(model, ref, out_png)
        elif index == 0:
            shown, cols = sample_layout(len(fake), spec.grid_size, model.spec.c_dim)
            picture(fake[shown] if model.is_image else fake, ref.manifest, out_png, meta["name"], cols)
            write_gallery(model, ref, fake, out_png, meta["name"], spec.grid_size)
            interpolation_picture(model, ref.manifest, spec.seed, interpolation_png(out_png), meta["name"])
    metrics: dict[str, Any] = aggregate(per_seed)
    if model.task == "generate":
        metrics.update({k: _clean(v) for k, v in ref.floors(conditional=bool(model.spec.c_dim)).items()})
    else:  # the task's trivial method (bicubic, identity), measured by the same protocol: the report's baseline rows
        evaluator = task_evaluator(model)
        metrics["baselines"] = {name: {k: _clean(v) for k, v in values.items()}
                                for name, values in evaluator.baseline_metrics(model, ref).items()}
        metrics.update({k: _clean(v) for k, v in evaluator.floors(model, ref).items()})
    metrics["n_seeds"] = len(per_seed)
    metrics["per_seed"] = per_seed
    if roc:
        metrics["anomaly_roc"] = roc_section(roc)
    if augment is not None:
        metrics.update({k: _clean(v) for k, v in augment.floors().items()})
    metrics["protocol"] = {"task": model.task, **protocol(ref, per_seed, states, meta)}
    if augment is not None:
        metrics["protocol"]["augmentation"] = augment.protocol()
    if selected:
        metrics["protocol"]["selection"] = selection(selected, meta, spec)
    if probes is not None and probes.applies(model):  # the report's reference rows: pixels, feature network
        metrics["probe_references"] = probes.reference_rows(ref.features)
        metrics["protocol"]["linear_probe"] = probes.protocol(model)
    write_json(catalog.details_path(out_json), metrics)
    write_json(out_json, catalog.headline(metrics))  # the DVC metrics file: headline numbers only
    log(f"[evaluate] {meta['name']}: {len(per_seed)} seeds, {spec.n_samples} samples against {len(ref.real)} "
        f"{spec.reference_split} rows\n{metrics_table(metrics)}")
    return metrics


def selection(selected: dict[str, dict[str, Any]], meta: dict[str, Any], spec) -> dict[str, Any]:
    """Which weights of each seed were measured: ``train.select`` picks the last step's or the
    best probe's, the probe reading the val split; the protocol measures them on another."""
    out = {"select": meta["spec"]["train"]["select"], "selected_on": "val", "measured_on": spec.reference_split,
           "eval_every": meta["spec"]["train"]["eval_every"], "per_seed": selected}
    if spec.reference_split == "val" and out["select"] == "best":
        out["warning"] = "selected and measured on the same split: the numbers are optimistic"
    return out


def _number(value) -> str:
    return "–" if value is None else f"{value:.4g}"


def metrics_table(metrics: dict[str, Any]) -> str:
    """Every metric of the catalog the model has: mean ± std over seeds, and the real-data floor
    (``*`` marks the headline numbers, the ones in the DVC metrics file)."""
    rows = [("metric", "mean ± std", "floor")]
    for metric in catalog.METRICS:
        if metric.name not in metrics:
            continue
        std = metrics.get(f"{metric.name}_std")
        value = _number(metrics[metric.name]) + ("" if std is None else f" ± {_number(std)}")
        floor = metrics.get(f"{metric.name}_floor")
        rows.append((metric.label + (" *" if metric.headline else ""), value, "" if floor is None else _number(floor)))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in rows)


def picture(samples: torch.Tensor, manifest: dict[str, Any], out_png: str | Path, title: str,
            cols: int | None = None) -> None:
    with atomic_path(out_png) as tmp:
        if manifest["kind"] == "image":
            save_image_grid(samples, tmp, cols=cols)
        else:
            centers = np.asarray(manifest["mixture"]["centers"])
            save_points(samples.numpy(), centers, tmp, title=title)


@torch.no_grad()
def interpolation_picture(model, manifest: dict[str, Any], seed: int, out_png: str | Path, title: str) -> None:
    """Images decoded along slerp paths between random latent pairs (`genflow interpolate`'s
    latents), one row per path; for 2-D data the decoded paths drawn over the true means.
    A conditional model draws row i in class i mod c_dim."""
    pairs, steps = INTERPOLATION_PAIRS, INTERPOLATION_STEPS
    z = slerp_paths(model.spec.z_dim, pairs, steps, seed).float()
    c = (torch.arange(pairs) % model.spec.c_dim).repeat_interleave(steps) if model.spec.c_dim else None
    x = model.decoder().eval()(z, c)
    with atomic_path(out_png) as tmp:
        if manifest["kind"] == "image":
            save_image_grid(x, tmp, cols=steps)
        else:
            centers = manifest.get("mixture", {}).get("centers")
            save_paths(x.reshape(pairs, steps, -1).numpy(), None if centers is None else np.asarray(centers), tmp,
                       title=f"{title}: latent interpolation")
