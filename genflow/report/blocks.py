"""The report's tables: each (dataset, task) block of models, its columns from the metric catalog,
and the statistics of every cell (mean ± 95 % CI over seeds, rank, Welch's p against the
dataset's baseline; genflow.report.stats says why these)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genflow.errors import DataError
from genflow.metrics import catalog
from genflow.report.headline import headline_line, training_notes
from genflow.report.probe_plot import probe_references
from genflow.report.stats import Summary, format_p, format_summary, per_seed_values, ranks, summarize, welch_p


# (metric, floor key, label, better), in the catalog's order (genflow/metrics/catalog.py)
def _columns(metrics) -> list[tuple[str, str | None, str, str]]:
    return [(m.name, catalog.floor_key(m), m.label, m.better) for m in metrics]


SAMPLE_COLUMNS, UPSCALE_COLUMNS = _columns(catalog.SAMPLE), _columns(catalog.UPSCALE)
TRANSLATE_COLUMNS, MODEL_COLUMNS = _columns(catalog.TRANSLATE), _columns(catalog.MODEL)
REPRESENTATION_COLUMNS = _columns(catalog.REPRESENTATION)  # linear probes on frozen features (#29)
COLUMNS = SAMPLE_COLUMNS + UPSCALE_COLUMNS + TRANSLATE_COLUMNS + MODEL_COLUMNS + REPRESENTATION_COLUMNS
BAR_METRICS = ("fid", "precision", "recall", "coverage", "modes", "high_quality", "reverse_kl", "psnr", "ssim",
               "accuracy_ab", "accuracy_ba", "pose_error")
BAR_METRICS += ("cas", "augmentation_gain")  # issue 29: data augmentation
TASK_TITLES = {"generate": "", "translate": ": translation", "upscale": ": super-resolution"}
TASK_NOTES = {
    "translate": "A→B translates the test images of class `domain_a` into class `domain_b` (B→A the reverse). "
                 "Accuracy: the share of translations the dataset's classifier puts in the target class; FID: "
                 "translations against the real target-class images; cycle MSE: per-pixel squared error of A→B→A "
                 "(B→A→B) against the input; pose error: distance in pixels between the intensity centroids of "
                 "each input and its translation. Reference rows: the classifier's accuracy on real images of the "
                 "target class (the floor: what a perfect translator scores), and the identity mapping (the input "
                 "unchanged).",
    "upscale": "Each test image is downsampled by average pooling and upscaled back; PSNR (dB) and SSIM (11×11 "
               "Gaussian window) against the original on the [0, 1] pixel scale, FID of the upscaled set against the "
               "real images. The reference row is bicubic upsampling of the same inputs.",
}

# issue 29: what the augmentation columns of conditional models measure (genflow/evaluate/augmentation.py)
AUGMENTATION_NOTE = ("CAS (conditional models; Ravuri & Vinyals 2019): the dataset's classifier trained on the "
                     "model's samples only (as many as the train split has rows, classes balanced), its accuracy on "
                     "the real test split; floor: the same classifier trained on the real train split. Augmentation "
                     "gain: the test accuracy of that classifier trained on a stratified 10 % of the train split with "
                     "generated samples in the places of the other 90 %, minus that of the 10 % alone; floor: what "
                     "the real 90 % add.")


@dataclass
class DatasetBlock:
    """The models of one dataset and task, and their statistics."""

    dataset: str
    baseline: str
    rows: list[tuple[str, Any, dict]]                       # (name, spec, metrics json)
    task: str = "generate"
    columns: list[tuple] = field(default_factory=list)
    stats: dict[str, dict[str, Summary | None]] = field(default_factory=dict)  # metric -> model -> summary
    floors: dict[str, float] = field(default_factory=dict)
    # rows that are not models: the real-vs-real floor, or a task's trivial method (label -> metric -> value)
    references: dict[str, dict[str, float]] = field(default_factory=dict)
    rank: dict[str, dict[str, int]] = field(default_factory=dict)
    p: dict[str, dict[str, float | None]] = field(default_factory=dict)
    plots: list[tuple[str, Path]] = field(default_factory=list)  # (caption, png)

    @property
    def title(self) -> str:
        return self.dataset + TASK_TITLES.get(self.task, f": {self.task}")

    @property
    def note(self) -> str:
        cas = AUGMENTATION_NOTE if any(column[0] == "cas" for column in self.columns) else ""  # issue 29
        return " ".join(part for part in (TASK_NOTES.get(self.task, ""), cas) if part)

    @property
    def summary_lines(self) -> list[str]:
        """Above the table: what the dataset's models are ranked by, and what happened in training."""
        return [line for line in [headline_line(self.stats), *training_notes(self.rows)] if line]

    @property
    def picture_caption(self) -> str:
        return {"translate": "rows: A, A→B, A→B→A, B, B→A, B→A→B (first seed)",
                "upscale": "rows: downsampled input, bicubic, model, original (first seed)"}.get(self.task, "samples")

    @property
    def baseline_label(self) -> str:
        """The model the others are tested against, or else the task's trivial method(s)."""
        trivial = [label.removesuffix(" (trivial baseline)") for label in self.references if "trivial" in label]
        return self.baseline or ", ".join(trivial) or "none"

    def reference_line(self, metric: str) -> tuple[float, str] | None:
        """The first reference row's value of ``metric`` and its label (the bars' dashed line)."""
        for label, values in self.references.items():
            if values.get(metric) is not None:
                return values[metric], label
        return None

    def cell(self, metric: str, name: str) -> str:
        summary = self.stats[metric].get(name)
        if summary is None:
            return "–"
        text = f"{format_summary(summary)} #{self.rank[metric][name]}"
        if name == self.baseline:
            return text + " (baseline)"
        p = self.p[metric].get(name)
        return text if p is None else f"{text} p{'' if format_p(p).startswith('<') else '='}{format_p(p)}"


def _block(dataset: str, baseline: str, rows: list[tuple[str, Any, dict]], task: str = "generate") -> DatasetBlock:
    block = DatasetBlock(dataset, baseline, rows, task)
    block.columns = [c for c in COLUMNS if any(c[0] in m for _, _, m in rows)]
    for key, floor_key, _, better in block.columns:
        block.stats[key] = {name: summarize(per_seed_values(m, key)) for name, _, m in rows}
        present = {n: s.mean for n, s in block.stats[key].items() if s is not None}
        block.rank[key] = ranks(present, better)
        base = block.stats[key].get(baseline)
        block.p[key] = {n: welch_p(s, base) if s and base else None for n, s in block.stats[key].items()}
        floors = [m[floor_key] for _, _, m in rows if floor_key and m.get(floor_key) is not None]
        if floors:
            block.floors[key] = floors[0]  # one reference set per dataset: every model has the same floor
    if block.floors:
        block.references["real data (floor)"] = block.floors
    for label, values in rows[0][2].get("baselines", {}).items():  # the same data for every model of the block
        block.references[f"{label} (trivial baseline)"] = values
    for label, values in probe_references(rows).items():  # the linear probes' pixels and feature network (#29)
        block.references[f"{label} (linear probe)"] = values
    return block


def task_of(metrics: dict[str, Any]) -> str:
    return (metrics.get("protocol") or {}).get("task", "generate")


def load_blocks(models: dict[str, Any], metrics_dir: Path, baselines: dict[str, str]) -> list[DatasetBlock]:
    """One block per (dataset, task): a translator's FID is not comparable with a generator's."""
    by_block: dict[tuple[str, str], list[tuple[str, Any, dict]]] = {}
    for name, spec in models.items():
        path = catalog.details_path(metrics_dir / f"{name}.json")  # every seed's values and the protocol
        if not path.exists():
            raise DataError(f"{path}: missing; run the evaluate stage for model {name!r}")
        metrics = json.loads(path.read_text())
        by_block.setdefault((spec.dataset, task_of(metrics)), []).append((name, spec, metrics))
    blocks = []
    for (ds, task), rows in by_block.items():
        chosen = baselines.get(ds)
        if chosen not in {n for n, _, _ in rows}:  # a task's models are compared with its trivial method
            chosen = rows[0][0] if task == "generate" else ""
        blocks.append(_block(ds, chosen, rows, task))
    return blocks
