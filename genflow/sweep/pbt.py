"""Population Based Training's side of a sweep, Ray-free and torch-free: which keys it explores,
how each is perturbed, what it refuses, and each trial's record of where its config came from.

PBT (Jaderberg et al. 2017) trains the sweep's trials as one population. Every
``perturbation_interval`` steps the bottom ``quantile_fraction`` of the population copies a
top trial's whole checkpoint (exploit) and continues under that trial's values, perturbed
(explore). Only what can change under a running model is explored: the optimisers' learning
rates and Adam betas, D's steps per G step, the R1 weight. The searched space's other keys
(width, z_dim, batch size...) are drawn once for the initial population, and a trial that
exploits takes them from its donor along with the weights they fit.

The Ray side (the scheduler, the trial that loads a donor's checkpoint) is
genflow.integrations.ray_pbt.
"""
from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

from genflow.sweep.dimension import Dimension
from genflow.sweep.space import EXPLORABLE

HISTORY_SUFFIX = ".pbt.jsonl"


class Resample:
    """Draws a float key afresh from its range (PBT's resample), from Python's ``random``, which
    the driver seeds: Ray's PBT draws its own choices from the same generator."""

    def __init__(self, low: float, high: float, log: bool):
        self.low, self.high, self.log = float(low), float(high), log

    def __call__(self) -> float:
        if self.log:
            return math.exp(random.uniform(math.log(self.low), math.log(self.high)))
        return random.uniform(self.low, self.high)


def mutation(dim: Dimension):
    """Ray PBT's mutation spec of one explored key: a list (shifted to a neighbour or resampled)
    for choices and integer ranges, a resampler (else multiplied by 0.8 or 1.2) for real ranges."""
    if dim.choice is not None:
        return list(dim.choice)
    if dim.int is not None:
        return list(range(dim.int[0], dim.int[1] + 1))
    low, high = dim.loguniform or dim.uniform
    return Resample(low, high, log=dim.loguniform is not None)


class ClipToRange:
    """Ray PBT's ``custom_explore_fn``: a perturbed real value is put back inside its range (beta1
    0.9 x 1.2 would leave Adam's domain; a learning rate would leave the searched range)."""

    def __init__(self, space: dict[str, Dimension]):
        self.bounds = {key: tuple(map(float, dim.loguniform or dim.uniform)) for key, dim in space.items()
                       if key in EXPLORABLE and (dim.loguniform or dim.uniform)}

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        out = dict(config)
        for key, (low, high) in self.bounds.items():
            if key in out:
                out[key] = min(max(float(out[key]), low), high)
        return out


# -- each trial's history: which step, which donor, which values -----------------------------------

def history_path(ledger: str | Path, key: str) -> Path:
    return Path(ledger) / f"{key}{HISTORY_SUFFIX}"


def record_config(ledger: str | Path, key: str, step: int, values: dict[str, Any], donor: str | None = None,
                  donor_state_sha256: str | None = None, applied: dict[str, Any] | None = None) -> None:
    """One line of the trial's history: the values it trains with from ``step`` on; after an
    exploit, the trial whose checkpoint it loaded and that checkpoint's sha256; ``applied``: what
    the engine was found to train with (optimiser lr and betas, phase repeats, R1 weight)."""
    row = {"step": int(step), "donor": donor, "donor_state_sha256": donor_state_sha256,
           "values": {k: values[k] for k in sorted(values)}, "applied": applied}
    with open(history_path(ledger, key), "a") as handle:
        handle.write(json.dumps(row) + "\n")


def read_history(ledger: str | Path, key: str) -> list[dict[str, Any]]:
    """The trial's history in the order written (a line cut short by a kill is skipped)."""
    path = history_path(ledger, key)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return [row for row in rows if isinstance(row, dict) and isinstance(row.get("values"), dict)]


def history_table_rows(history: list[dict[str, Any]], keys: list[str]) -> list[dict[str, Any]]:
    """The history as trials.parquet's ``pbt_history`` holds it: one struct per change, the
    searched keys as fields."""
    return [{"step": row["step"], "donor": row["donor"], "donor_state_sha256": row.get("donor_state_sha256"),
             "applied": json.dumps(row.get("applied"), sort_keys=True), **{key: row["values"].get(key) for key in keys}}
            for row in history]
