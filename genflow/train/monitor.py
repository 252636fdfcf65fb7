"""Evaluation during training (``train.eval_every``): the probe's values in the log, the best
snapshot so far, early stop on a patience, and a collapse said out loud.

The probe itself (val split, the dataset's metrics) lives above this layer, in
genflow.evaluate.probe; whoever builds the run hands it in as a callable, so the engine never
imports the feature network or the evaluation code. Everything the monitor decides from is in
its ``state_dict``, which goes into every checkpoint: a killed run resumes with the same best
snapshot, the same patience count and the same log, byte for byte.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Protocol

import torch

# a run has collapsed when a probe finds fewer than this fraction of the most modes any probe
# found before (a mixture GAN that drops from 25 modes to 3), ...
COLLAPSE_MODES = 0.5
# ... or when D wins outright: its loss below this at this many probes in a row (losses whose
# D loss has a floor of 0 when it separates everything: ns, minimax, lsgan, hinge)
D_WINS_LOSS, D_WINS_PROBES = 1e-3, 3
# the training log's marks (1 at the step they happened): numbers, so the log stays numeric
COLLAPSED, EARLY_STOP = "collapsed", "early_stop"


class TrainProbe(Protocol):
    keys: tuple[str, ...]             # the log columns the best snapshot is ranked by, first key first
    directions: dict[str, str]        # column -> "lower" | "higher" (is better)

    def __call__(self, weights: dict[str, torch.Tensor]) -> dict[str, float]: ...


def _rank_key(values: dict[str, float], probe: TrainProbe) -> list[float]:
    """Smaller is better, key by key; a missing or NaN value ranks last."""
    key = []
    for name in probe.keys:
        value = float(values.get(name, math.nan))
        value = value if probe.directions[name] == "lower" else -value
        key.append(math.inf if math.isnan(value) else value)
    return key


class Monitor:
    """One run's probes. ``probe`` is None on ranks other than 0: they only follow rank 0's stop."""

    def __init__(self, train, probe: TrainProbe | Callable | None = None, watch_d: bool = False):
        self.every, self.patience, self.probe, self.watch_d = train.eval_every, train.patience, probe, watch_d
        self.best: list[float] = []               # the best rank key so far ([] before the first probe)
        self.best_step, self.best_weights = -1, {}
        self.since_best, self.peak_modes, self.d_wins = 0, 0, 0
        self.stopped_at, self.collapsed_at = -1, -1
        self.strip: list[torch.Tensor] = []       # the sample strip over training: samples per probe ...
        self.strip_steps: list[int] = []          # ... and the step of each

    @property
    def active(self) -> bool:
        return self.every > 0

    def due(self, step: int, total: int) -> bool:
        return self.active and (step % self.every == 0 or step == total)

    @property
    def stopped(self) -> bool:
        return self.stopped_at >= 0

    def observe(self, step: int, weights: dict[str, torch.Tensor], losses: dict[str, float]) -> dict[str, float]:
        """Probe the weights of ``step``: the columns this step's log row gets."""
        values = self.probe(weights)
        key = _rank_key(values, self.probe)
        if not self.best or key < self.best:
            self.best, self.best_step, self.since_best = key, step, 0
            self.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in weights.items()}
        else:
            self.since_best += 1
        strip = getattr(self.probe, "strip", None)  # a few samples from fixed latents, if the probe keeps them
        if strip is not None:
            self.strip.append(strip.detach().to("cpu", copy=True))
            self.strip_steps.append(step)
        marks = self._collapse(step, values, losses)
        if self.patience and self.since_best >= self.patience and not self.stopped:
            self.stopped_at, marks[EARLY_STOP] = step, 1
        return {**values, **marks}

    def _collapse(self, step: int, values: dict[str, float], losses: dict[str, float]) -> dict[str, float]:
        modes = values.get("val_modes")
        lost = modes is not None and self.peak_modes > 0 and modes < COLLAPSE_MODES * self.peak_modes
        self.peak_modes = max(self.peak_modes, int(modes or 0))
        d_loss = losses.get("D_loss")
        self.d_wins = self.d_wins + 1 if self.watch_d and d_loss is not None and abs(d_loss) < D_WINS_LOSS else 0
        if (lost or self.d_wins >= D_WINS_PROBES) and self.collapsed_at < 0:
            self.collapsed_at = step
            return {COLLAPSED: 1}
        return {}

    # -- state: part of every checkpoint ----------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"best": list(self.best), "best_step": self.best_step, "best_weights": dict(self.best_weights),
                "since_best": self.since_best, "peak_modes": self.peak_modes, "d_wins": self.d_wins,
                "stopped_at": self.stopped_at, "collapsed_at": self.collapsed_at,
                "strip": list(self.strip), "strip_steps": list(self.strip_steps),
                "keys": list(self.probe.keys) if self.probe is not None else []}  # what "best" meant (rank 0)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = [float(v) for v in state["best"]]
        self.best_weights = dict(state["best_weights"])
        self.strip, self.strip_steps = list(state["strip"]), [int(step) for step in state["strip_steps"]]
        for name in ("best_step", "since_best", "peak_modes", "d_wins", "stopped_at", "collapsed_at"):
            setattr(self, name, int(state[name]))


def summary(state: dict[str, Any]) -> dict[str, Any]:
    """What a finished run's monitor says, for the protocol and the report (no weights)."""
    monitor = state.get("monitor")
    if not monitor:
        return {}
    out = {"best_step": int(monitor["best_step"]), "ranked_by": list(monitor.get("keys", []))}
    out.update({name: int(monitor[name]) for name in ("stopped_at", "collapsed_at") if int(monitor[name]) >= 0})
    return out


def selected_weights(state: dict[str, Any], train) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The weights ``train.select`` picks from a checkpoint's state, and what was picked: the last
    step's, or the best probe's (selected on the val split)."""
    monitor = state.get("monitor") or {}
    if train.select == "best" and monitor.get("best_weights"):
        return monitor["best_weights"], {"select": "best", "step": int(monitor["best_step"]), "on": "val"}
    return state["model"], {"select": "last", "step": int(state["step"])}
