"""Comparison report: one Markdown table of every model's metrics, with its samples."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from genflow.errors import DataError
from genflow.io import write_text

# (metric, floor key, label, better) in the order the table shows them
COLUMNS = [
    ("fid", "fid_floor", "FID ↓", "lower"),
    ("modes", "modes_floor", "modes ↑", "higher"),
    ("high_quality", "high_quality_floor", "high quality ↑", "higher"),
    ("reverse_kl", "reverse_kl_floor", "reverse KL ↓", "lower"),
    ("elbo", None, "ELBO (nats) ↑", "higher"),
    ("recon_mse", None, "recon. SSE ↓", "lower"),
]


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
    used = [c for c in COLUMNS if any(c[0] in m for _, _, m in rows)]
    lines = ["# genflow model comparison", ""]
    if protocol:
        lines += [f"Protocol: {protocol['n_generated']} generated samples per model, up to "
                  f"{protocol['n_real'] if 'n_real' in protocol else '?'} real samples of the "
                  f"`{protocol['reference_split']}` split, evaluation seed {protocol['seed']}. "
                  "FID is measured in each dataset's feature space (a classifier trained on its training "
                  "split; the 2-D mixtures use the points themselves). Values in parentheses are the "
                  "real-vs-real floor (training split vs reference split, same counts). With several seeds a "
                  "value is the mean over seeds ± their standard deviation.", ""]
    header = ["model", "family", "dataset", "steps", "seeds"] + [label for _, _, label, _ in used] + ["samples"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rel = Path("..") / samples_dir.name
    for name, spec, m in rows:
        cells = [name, spec.model + ("" if not getattr(spec, "c_dim", 0) else " (cond.)"), spec.dataset,
                 str(spec.train.steps), str(m.get("n_seeds", 1))]
        cells += [_cell(m, key, floor) for key, floor, _, _ in used]
        cells.append(f"[png]({(rel / f'{name}.png').as_posix()})")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + feature_space_lines(models, Path(featurenet_root))
    lines += ["## Samples", ""]
    lines += [f"### {name}\n\n![{name}]({(rel / f'{name}.png').as_posix()})\n" for name, _, _ in rows]
    text = "\n".join(lines) + "\n"
    write_text(out_dir / "comparison.md", text)
    return text
