"""What a reader must know before trusting a study's curves and tests, as plain sentences.

Dodge et al.'s expected best curve and Lucic et al.'s score distributions are defined for
trials drawn independently from the search space and each trained the full budget: random
search under a FIFO scheduler (the default study's protocol). ASHA scores the trials it stops
at fewer steps, TPE draws each trial from the earlier ones, and a comparison over one or two
seeds has little power: each says so here.
"""
from __future__ import annotations

from typing import Any


def _asha(models: dict[str, dict[str, Any]], budget: dict[str, Any]) -> list[str]:
    stopped = {name: m for name, m in models.items() if m["stopped"]}
    if stopped:
        counts = ", ".join(f"`{name}` {m['stopped']} of {m['scored']}" for name, m in stopped.items())
        return [f"ASHA stopped trials early ({counts}): they are scored at fewer than "
                f"{budget['steps_per_trial']} steps, and their scores are in the curve and the box plot. "
                "An early-stopped trial scores worse than it would have fully trained, so the expected best "
                "is pessimistic at small n, where the curve averages over the weak trials ASHA cut, and hardly "
                "moved at large n, where it is the best trials' (which ASHA let finish); the box plot is wider "
                "than the search space's scores under full training. Dodge's curve and Lucic's "
                "distributions assume every trial trains the full budget (search: random, scheduler: fifo)."]
    if any(m["scheduler"] == "asha" for m in models.values()):
        return ["The sweeps ran under ASHA but it stopped no trial: every score is from the full budget."]
    return ["Every trial trained the full budget (scheduler fifo): no score is from an early-stopped trial."]


def _search(models: dict[str, dict[str, Any]]) -> list[str]:
    adaptive = sorted(name for name, m in models.items() if m["search"] != "random")
    if not adaptive:
        return ["Random search: the trials are independent draws from the search space, as the expected best "
                "curve assumes."]
    return [f"{', '.join(f'`{n}`' for n in adaptive)}: searched with TPE, whose trials are proposed from the "
            "earlier ones, not drawn independently: the curve then reads as what resampling this search's "
            "trials would reach, and the box plot over-represents the region TPE favoured."]


def _budget(budget: dict[str, Any]) -> list[str]:
    if budget["equal"]:
        return []
    differing = "; ".join(f"`{name}`: {b['trials']} trials × {b['steps_per_trial']} steps, {b['search']}, "
                          f"{b['scheduler']}, seeds {b['seeds']}" for name, b in budget["per_model"].items())
    return [f"**The models did not have the same budget** ({differing}): the comparison is not at equal budget."]


def _seeds(study: dict[str, Any]) -> list[str]:
    fewest = min(s["n"] for s in study["tuned"].values())
    if fewest >= 3:
        return []
    return [f"Only {fewest} seed{'s' if fewest > 1 else ''} per retrained model: Welch's test needs two per side "
            "and has little power "
            "below three; a difference not called significant here is not shown to be absent."]


def lines(study: dict[str, Any]) -> list[str]:
    """Every caveat that applies to ``study`` (study.json's body without its caveats)."""
    models, budget = {m["name"]: m for m in study["models"]}, study["budget"]
    return _budget(budget) + _asha(models, budget) + _search(models) + _seeds(study)
