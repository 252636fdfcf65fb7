"""The report's linear-probe picture and reference rows (issue #29).

A linear probe's test accuracy against the share of training labels it was fitted on, one line
per model (mean over seeds, 95 % CI whiskers), with the same probe on raw pixels and on the
feature network's features as black reference lines (genflow/evaluate/representation.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from genflow.evaluate.pictures import pyplot
from genflow.io import atomic_path
from genflow.metrics.linear_probe import FRACTIONS, metric_name
from genflow.report.plots import PNG_METADATA

REFERENCE_STYLES = (":", "--", "-.")


def probe_references(rows: list[tuple[str, Any, dict]]) -> dict[str, dict[str, float]]:
    """The reference rows (label -> probe metric -> accuracy) of a dataset's models: every model
    of a dataset is probed on the same labelled rows, so the first that has them speaks for all."""
    return next((m["probe_references"] for _, _, m in rows if m.get("probe_references")), {})


def probe_curves(block, path: Path) -> tuple[str, Path]:
    """(caption, png) of the accuracy-vs-labels picture of one dataset block."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 4.2), dpi=100)
    percent, keys = [100 * f for f in FRACTIONS], [metric_name(f) for f in FRACTIONS]
    for name, _, _ in block.rows:
        summaries = [block.stats[key].get(name) for key in keys]
        if None in summaries:  # a model without features to probe
            continue
        ax.errorbar(percent, [s.mean for s in summaries], yerr=[s.ci or 0.0 for s in summaries], marker="o",
                    capsize=3, label=name)
    for (label, values), style in zip(probe_references(block.rows).items(), REFERENCE_STYLES):
        ax.plot(percent, [values.get(key) for key in keys], color="black", linestyle=style, label=label)
    ax.set_xscale("log")
    ax.set_xticks(percent, [f"{p:g} %" for p in percent])
    ax.set_xlabel("training labels the probe is fitted on")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{block.title}: linear probes on frozen features", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata=PNG_METADATA)
    plt.close(fig)
    caption = (f"{block.title}: linear-probe test accuracy against the share of training labels (mean over seeds, "
               "95 % CI; black: the same probe on raw pixels and on the feature network)")
    return caption, path
