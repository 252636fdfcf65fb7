"""What the report says above each dataset's table: the metric it ranks that dataset's models by,
and what happened in training (which weights were measured, early stops, collapses).

The headline metric is the dataset's, not one for all (genflow.metrics.catalog.HEADLINE_ORDERS):
on a 2-D mixture FID ranks a uniform spread best although almost none of its samples lie on a
mode, so mixtures rank by modes, then high quality; stacked digits by modes, then reverse KL;
images by FID.
"""
from __future__ import annotations

from typing import Any

from genflow.metrics import catalog


def headline_ranking(stats: dict[str, dict[str, Any]]) -> tuple[str, list[str]] | None:
    """``(why, models best first)`` by the dataset's headline metrics (the means over seeds);
    models missing one of them are left out. None when no headline order fits."""
    order = catalog.headline_order(stats)
    if order is None:
        return None
    why, keys = order
    means = {}
    for name in stats[keys[0]]:
        summaries = [stats[key].get(name) for key in keys]
        if all(s is not None for s in summaries):
            means[name] = {key: s.mean for key, s in zip(keys, summaries)}
    return why, sorted(means, key=lambda name: (catalog.sort_key(means[name], keys), name))


def headline_line(stats: dict[str, dict[str, Any]]) -> str:
    ranking = headline_ranking(stats)
    if ranking is None or not ranking[1]:
        return ""
    why, names = ranking
    return f"**Headline: {why}.** " + ", ".join(f"{i}. `{name}`" for i, name in enumerate(names, 1))


def _seed_note(seed: str, info: dict[str, Any], select: str) -> list[str]:
    notes = []
    if select == "best":
        notes.append(f"seed {seed}: best probe at step {info['best_step']}")
    if "stopped_at" in info:
        notes.append(f"seed {seed}: stopped early at step {info['stopped_at']} (no better probe in train.patience)")
    if "collapsed_at" in info:
        notes.append(f"seed {seed}: **collapsed at step {info['collapsed_at']}**")
    return notes


def training_notes(rows: list[tuple[str, Any, dict]]) -> list[str]:
    """One line per model probed during training: the weights measured (``train.select``, picked
    on the val split) and any early stop or collapse, so that none is trained on silently."""
    lines = []
    for name, _, metrics in rows:
        selection = (metrics.get("protocol") or {}).get("selection")
        if not selection:
            continue
        notes = [note for seed, info in selection["per_seed"].items()
                 for note in _seed_note(seed, info, selection["select"])]
        what = "best probe's weights" if selection["select"] == "best" else "last step's weights"
        lines.append(f"`{name}`: {what} (probed on val every {selection['eval_every']} steps, measured on "
                     f"{selection['measured_on']})" + ("; " + "; ".join(notes) if notes else ""))
    return lines
