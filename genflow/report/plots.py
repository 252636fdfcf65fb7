"""The report's pictures: metric bars with 95 % CIs, precision vs recall, training curves,
anomaly-detection ROC curves.

Each function writes one PNG (matplotlib, Agg, no timestamp metadata, so a rerun on the
same machine writes the same bytes) and returns its path.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from genflow.evaluate.pictures import pyplot
from genflow.io import atomic_path
from genflow.report.stats import Summary

PNG_METADATA = {"Software": None}


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata=PNG_METADATA)
    pyplot().close(fig)
    return path


def metric_bars(title: str, models: Sequence[str], panels: Sequence[tuple[str, str, dict, tuple | None]],
                path: Path) -> Path:
    """One panel per metric: (label, better, {model: Summary}, reference); bars = mean, whiskers = 95 % CI;
    the reference (value, label), e.g. the real-vs-real floor or bicubic upsampling, as a dashed line."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels) + 0.6, 3.6), dpi=100, squeeze=False)
    for ax, (label, better, summaries, reference) in zip(axes[0], panels):
        xs = range(len(models))
        means = [summaries[m].mean if summaries.get(m) else float("nan") for m in models]
        errs = [(summaries[m].ci or 0.0) if summaries.get(m) else 0.0 for m in models]
        ax.bar(xs, means, yerr=errs, capsize=3, color="tab:blue", alpha=0.8)
        if reference is not None:
            ax.axhline(reference[0], color="tab:red", linestyle="--", linewidth=1, label=reference[1])
            ax.legend(fontsize=7)
        ax.set_xticks(list(xs), models, rotation=40, ha="right", fontsize=7)
        ax.set_title(f"{label} ({better} is better)", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def precision_recall(title: str, points: dict[str, tuple[Summary | None, Summary | None]],
                     floor: tuple[float, float] | None, path: Path) -> Path:
    """Each model's mean precision and recall, with 95 % CI whiskers; the floor as a star."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.2), dpi=100)
    for name, (p, r) in points.items():
        if p is None or r is None:
            continue
        ax.errorbar(r.mean, p.mean, xerr=r.ci or 0.0, yerr=p.ci or 0.0, fmt="o", capsize=3, label=name)
    if floor is not None:
        ax.scatter([floor[1]], [floor[0]], marker="*", s=120, c="black", label="real data (floor)", zorder=3)
    ax.set_xlabel("recall (diversity) →")
    ax.set_ylabel("precision (fidelity) →")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


# training-log columns that are not losses: the val probes (val_*) and their marks
_NOT_LOSSES = ("step", "epoch", "collapsed", "early_stop")


def _curve_keys(rows: list[dict[str, Any]], probes: bool) -> list[str]:
    keys = dict.fromkeys(k for row in rows for k in row if k not in _NOT_LOSSES)
    return [k for k in keys if k.startswith("val_") == probes]


def training_curves(title: str, logs: dict[str, list[list[dict[str, Any]]]], path: Path, probes: bool = False) -> Path:
    """One panel per model: every logged loss (``probes``: every val probe) against the step, one
    line per seed."""
    plt = pyplot()
    names = [n for n, seeds in logs.items() if any(seeds)]
    cols = min(4, max(1, len(names)))
    rows = -(-len(names) // cols) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.6 * rows), dpi=100, squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names):
        colours = {}
        for seed_index, rows_ in enumerate(logs[name]):
            for key in _curve_keys(rows_, probes):
                logged = [r for r in rows_ if key in r]  # a probe column is only in the probed steps' rows
                line, = ax.plot([r["step"] for r in logged], [r[key] for r in logged], linewidth=1,
                                color=colours.get(key), alpha=0.9 if seed_index == 0 else 0.4,
                                label=key if seed_index == 0 else None)
                colours[key] = line.get_color()
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def roc_curves(title: str, curves: dict[str, tuple[Sequence[float], Sequence[float], str]], path: Path) -> Path:
    """One ROC curve per model, {model: (fpr, tpr, AUROC text)}, over the chance diagonal."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.2), dpi=100)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="chance (AUROC 0.5)")
    for name, (fpr, tpr, auroc_text) in curves.items():
        ax.plot(fpr, tpr, linewidth=1.5, label=f"{name} (AUROC {auroc_text})")
    ax.set_xlabel("false positive rate (normal test rows flagged)", fontsize=8)
    ax.set_ylabel("true positive rate (held-out rows found)", fontsize=8)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
