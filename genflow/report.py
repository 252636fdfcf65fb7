"""Comparison report: one Markdown table of every model's metrics, with its samples."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from genflow.errors import DataError
from genflow.io import write_text

# (metric, floor key, label, better) in the order the tables show them: first what the
# samples look like (quality, diversity, mode collapse), then what the model itself offers
SAMPLE_COLUMNS = [
    ("fid", "fid_floor", "FID ↓", "lower"),
    ("kid", "kid_floor", "KID ↓", "lower"),
    ("precision", "precision_floor", "precision ↑", "higher"),
    ("recall", "recall_floor", "recall ↑", "higher"),
    ("density", "density_floor", "density ↑", "higher"),
    ("coverage", "coverage_floor", "coverage ↑", "higher"),
    ("modes", "modes_floor", "modes ↑", "higher"),
    ("high_quality", "high_quality_floor", "high quality ↑", "higher"),
    ("reverse_kl", "reverse_kl_floor", "reverse KL ↓", "lower"),
]
MODEL_COLUMNS = [
    ("cfid", "cfid_floor", "class FID ↓", "lower"),
    ("class_accuracy", "class_accuracy_floor", "class accuracy ↑", "higher"),
    ("elbo", None, "ELBO (nats) ↑", "higher"),
    ("nll_iwae", None, "NLL, IWAE (nats) ↓", "lower"),
    ("recon_mse", None, "recon. SSE ↓", "lower"),
    ("path_length", None, "path length ↓", "lower"),
    ("anomaly_auroc", None, "anomaly AUROC ↑", "higher"),
]
COLUMNS = SAMPLE_COLUMNS + MODEL_COLUMNS


def _cell(metrics: dict[str, Any], key: str, floor_key: str | None) -> str:
    if key not in metrics:
        return "–"
    if metrics[key] is None:
        return "undefined"
    value = f"{metrics[key]:.4g}"
    if metrics.get(f"{key}_std") is not None:
        value += f" ± {metrics[f'{key}_std']:.2g}"
    if floor_key and floor_key in metrics:
        value += f" ({metrics[floor_key]:.4g})"
    return value


def feature_space_lines(models: dict[str, Any], featurenet_root: Path) -> list[str]:
    lines = ["## Feature spaces", "", "| dataset | kind | test accuracy | weights sha256 |", "|---|---|---|---|"]
    for dataset in sorted({spec.dataset for spec in models.values()}):
        path = featurenet_root / dataset / "featurenet.json"
        if not path.exists():
            continue
        meta = json.loads(path.read_text())
        accuracy = f"{meta['test_accuracy']:.4f}" if "test_accuracy" in meta else "–"
        lines.append(f"| {dataset} | {meta['kind']} | {accuracy} | {meta.get('sha256', '–')[:16]} |")
    return lines + [""]


def _table(rows: list[tuple[str, Any, dict]], columns: list[tuple], samples_rel: Path | None) -> list[str]:
    used = [c for c in columns if any(c[0] in m for _, _, m in rows)]
    if not used:
        return []
    header = ["model", "family", "dataset", "steps", "seeds"] + [label for _, _, label, _ in used]
    header += ["samples"] if samples_rel else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, spec, m in rows:
        cells = [name, spec.model + ("" if not getattr(spec, "c_dim", 0) else " (cond.)"), spec.dataset,
                 str(spec.train.steps), str(m.get("n_seeds", 1))]
        cells += [_cell(m, key, floor) for key, floor, _, _ in used]
        cells += [f"[png]({(samples_rel / f'{name}.png').as_posix()})"] if samples_rel else []
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def protocol_lines(protocol: dict[str, Any] | None) -> list[str]:
    if not protocol:
        return []
    return [f"Protocol: {protocol['n_generated']} generated samples per model, up to "
            f"{protocol.get('n_real', '?')} real samples of the `{protocol['reference_split']}` split, "
            f"evaluation seed {protocol['seed']}. FID, KID and precision / recall / density / coverage are "
            "measured in each dataset's feature space (a classifier trained on its training split; the 2-D "
            "mixtures use the points themselves). Values in parentheses are the real-vs-real floor: training "
            "rows scored as if they were samples, same counts, i.e. what a perfect model gets here. With "
            "several seeds a value is the mean over seeds ± their standard deviation.", ""]


def build_report(models: dict[str, Any], metrics_dir: str | Path, samples_dir: str | Path,
                 out_dir: str | Path, featurenet_root: str | Path = "models/featurenet") -> str:
    """Write ``out_dir/comparison.md`` from ``metrics_dir/<model>.json``; return its text."""
    metrics_dir, samples_dir, out_dir = Path(metrics_dir), Path(samples_dir), Path(out_dir)
    rows, protocol = [], None
    for name, spec in models.items():
        path = metrics_dir / f"{name}.json"
        if not path.exists():
            raise DataError(f"{path}: missing; run the evaluate stage for model {name!r}")
        m = json.loads(path.read_text())
        protocol = protocol or m.get("protocol")
        rows.append((name, spec, m))
    rel = Path("..") / samples_dir.name
    lines = ["# genflow model comparison", ""] + protocol_lines(protocol)
    lines += ["## Samples: quality, diversity, mode coverage", ""] + _table(rows, SAMPLE_COLUMNS, rel)
    model_table = _table(rows, MODEL_COLUMNS, None)
    if model_table:
        lines += ["## The models themselves: conditioning, likelihood, latent smoothness, anomaly detection", "",
                  "Path length: mean squared feature-space distance between images decoded at t and t + ε along "
                  "random slerp paths in latent space, / ε² (1 % tails dropped); lower is smoother. Anomaly "
                  "AUROC: the model never saw `holdout_class`; 0.5 is chance.", ""] + model_table
    lines += feature_space_lines(models, Path(featurenet_root))
    lines += ["## Samples", ""]
    lines += [f"### {name}\n\n![{name}]({(rel / f'{name}.png').as_posix()})\n" for name, _, _ in rows]
    text = "\n".join(lines) + "\n"
    write_text(out_dir / "comparison.md", text)
    return text
