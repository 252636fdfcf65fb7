"""The study's pictures, one PNG each (matplotlib Agg, no timestamp metadata: a rerun writes the
same bytes, as the comparison report's; genflow.report.plots).

* expected_best.png: Dodge et al.'s curve per model with its bootstrap band;
* sensitivity.png: Lucic et al.'s box plot of every trial's score over the search space;
* tuned_vs_default.png: each model's hand-set and tuned configs on test, mean with 95 % CI;
* comparison.png: the retrained winners, one panel per headline metric (genflow.report.plots.metric_bars).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from genflow.evaluate.pictures import pyplot
from genflow.report.plots import PNG_METADATA
from genflow.report.stats import Summary

STATUS_COLOURS = {"stopped": "tab:gray", "complete": "tab:blue"}  # ASHA-stopped trials in grey


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, format="png", metadata=PNG_METADATA)
    pyplot().close(fig)
    return path


def _direction(mode: str) -> str:
    return "lower is better" if mode == "min" else "higher is better"


def _log_scale_if_wide(ax, values: Sequence[float]) -> None:
    """FIDs of a search span orders of magnitude; the good ones would sit flat on a linear axis."""
    values = [v for v in values if np.isfinite(v)]
    if values and min(values) > 0 and max(values) / min(values) > 20:
        ax.set_yscale("log")
        from matplotlib import ticker  # after pyplot() chose the Agg backend

        ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))  # 40, not 4 × 10¹
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def expected_best(curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], metric: str, mode: str,
                  level: float, path: Path) -> Path:
    """``curves``: model -> (curve, lower, upper) over n = 1..N trials."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 4.0), dpi=100)
    for name, (curve, lower, upper) in curves.items():
        n = np.arange(1, len(curve) + 1)
        line, = ax.plot(n, curve, marker="o" if len(n) < 12 else None, markersize=3, linewidth=1.5, label=name)
        ax.fill_between(n, lower, upper, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("trials (hyperparameter configurations drawn)")
    ax.set_ylabel(f"expected best val {metric}")
    ax.set_title(f"expected best {metric} ({_direction(mode)}), {level * 100:.0f} % bootstrap band", fontsize=10)
    _log_scale_if_wide(ax, [v for c in curves.values() for v in np.concatenate(c)])
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, path)


def sensitivity(trials: dict[str, tuple[Sequence[float], Sequence[str]]], metric: str, mode: str, path: Path) -> Path:
    """``trials``: model -> (scores, statuses); a box per model, every trial as a dot."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.4 * len(trials) + 2.0), 4.0), dpi=100)
    rng = np.random.default_rng(0)  # horizontal jitter only, fixed so the picture is reproducible
    for x, (name, (scores, statuses)) in enumerate(trials.items()):
        ax.boxplot([list(scores)], positions=[x], widths=0.5, showfliers=False, zorder=1)
        for status, colour in STATUS_COLOURS.items():
            ys = [s for s, st in zip(scores, statuses) if st == status]
            ax.scatter(x + rng.uniform(-0.15, 0.15, len(ys)), ys, s=12, c=colour, alpha=0.8, zorder=2,
                       label=f"{status} trial" if x == 0 or status == "stopped" else None)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=8)
    ax.set_xticks(range(len(trials)), list(trials), rotation=20, ha="right", fontsize=8)
    _log_scale_if_wide(ax, [s for scores, _ in trials.values() for s in scores])
    ax.set_ylabel(f"val {metric} ({_direction(mode)})")
    ax.set_title("trial scores over the search space (sensitivity)", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def tuned_vs_default(pairs: dict[str, tuple[Summary | None, Summary]], metric: str, mode: str, path: Path) -> Path:
    """``pairs``: model -> (hand-set, tuned) on test; mean with 95 % CI whiskers, side by side."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(pairs) + 2.0), 3.8), dpi=100)
    for offset, index, label, colour in ((-0.12, 0, "hand-set (params.yaml)", "tab:gray"),
                                         (0.12, 1, "tuned", "tab:blue")):
        xs, means, errs = [], [], []
        for x, pair in enumerate(pairs.values()):
            if pair[index] is not None:
                xs.append(x + offset)
                means.append(pair[index].mean)
                errs.append(pair[index].ci or 0.0)
        ax.errorbar(xs, means, yerr=errs, fmt="o", capsize=3, color=colour, label=label)
    ax.set_xticks(range(len(pairs)), list(pairs), rotation=20, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(pairs) - 0.4)
    ax.set_ylabel(f"test {metric} ({_direction(mode)})")
    ax.set_title("hand-set vs tuned, retrained over the study's seeds (95 % CI)", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return _save(fig, path)
