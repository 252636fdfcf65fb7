"""Typed view of params.yaml's ``studies`` section (torch-free, part of the params schema).

A study tunes several model entries of one dataset under ONE budget, then retrains each
model's winner and its hand-set config over the same seeds::

    studies:
      digits:
        dataset: digits
        models: [gan_digits, lsgan_digits, vae_digits]   # keys of 'models', all on 'dataset'
        budget:                  # the same for every model: a model cannot override it
          search: random         # random + fifo: the protocol of Dodge et al.'s curve and
          scheduler: fifo        # Lucic et al.'s score distributions
          trials: 16
          steps: 300
          report_every: 100
          grace_steps: 100
          seed: 0
          preset: wide           # each family's search space (Lucic et al. 2018's wide / narrow)
          metric: null           # default: the dataset's headline metric on val (fid; modes on mixtures)
          seeds: 3               # seeds the winners and the defaults are retrained with

Each model's sweep is an ordinary genflow sweep (``sweep_spec``) named ``<study>-<model>``,
so it resumes after a kill and records what every sweep records.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from genflow.data.specs import MIXTURES, SEED_MAX, Seed
from genflow.errors import excerpt
from genflow.models.specs import MAX_STEPS
from genflow.sweep.space import METRIC_MODES, SweepSpec, check_sweep

VARIANTS = ("tuned", "default")  # the sweep's winner, the model's hand-set config


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# a search mode added to sweeps is a study's too
SEARCH = SweepSpec.model_fields["search"].annotation


class StudyBudget(_Strict):
    """The search budget every model of the study gets, and how the winners are retrained."""

    search: SEARCH = Field("random", description="random (the protocol of the expected-best "
                                               "curve) or another search mode of sweeps")
    scheduler: Literal["asha", "fifo"] = Field("fifo", description="fifo: every trial runs its full steps "
                                               "(the curve and the score distributions assume it)")
    trials: int = Field(ge=1, le=100_000, description="trials per model")
    steps: int = Field(ge=1, le=MAX_STEPS, description="training steps of every trial and every retrained run")
    report_every: int = Field(ge=1, le=MAX_STEPS, description="steps between val probes of a trial")
    grace_steps: int = Field(ge=1, le=MAX_STEPS, description="ASHA: no trial stops before this many steps")
    seed: Seed = Field(description="seeds the sampler and every trial's training")
    preset: Literal["wide", "narrow"] = Field(description="each family's search space (Lucic et al. 2018)")
    metric: Literal[(*METRIC_MODES, None)] = Field(None, description="probe metric on val; default: the "
                                                        "dataset's headline (fid on images, modes on mixtures)")
    seeds: int = Field(ge=1, le=1000, description="seeds the winners and the hand-set configs are retrained with")
    probe_samples: int = Field(1000, ge=10, le=1_000_000)
    probe_real: int = Field(1000, ge=10, le=1_000_000)
    cpus_per_trial: float = Field(1.0, gt=0.0, le=4096)
    workers_per_trial: int = Field(0, ge=0, le=4096, description="0: a trial trains in its own process; "
                                   ">= 1: a TorchTrainer of this many workers per trial")
    max_concurrent: int = Field(0, ge=0, le=100_000, description="0: as many trials as the cluster's CPUs hold")

    @model_validator(mode="after")
    def _fits(self):
        if self.grace_steps > self.steps:
            raise ValueError(f"grace_steps: must not exceed steps ({self.steps}); got {self.grace_steps}")
        if self.seed + self.seeds > SEED_MAX:
            raise ValueError(f"seeds: the retrained seeds {self.seed} + 1 .. {self.seed} + {self.seeds} pass "
                             f"the largest seed {SEED_MAX}")
        return self

    def retrain_seeds(self) -> list[int]:
        """The seeds of the retrained runs: after the sweep's own seed, so that no retrained run
        repeats the very run its config was selected on (the winner would look better than it is)."""
        return list(range(self.seed + 1, self.seed + 1 + self.seeds))


class StudySpec(_Strict):
    """A dataset, its models, and the one budget they share."""

    dataset: str = Field(description="the dataset every model of the study trains on")
    models: list[str] = Field(min_length=1, max_length=1000, description="keys of 'models', on 'dataset'")
    budget: StudyBudget


def default_metric(source: str) -> str:
    """The dataset's headline metric as a probe measures it: modes on a Gaussian mixture, FID on
    images (genflow.metrics.catalog's HEADLINE_ORDERS)."""
    return "modes" if source in MIXTURES else "fid"


def study_metric(study: StudySpec, source: str) -> str:
    return study.budget.metric or default_metric(source)


def sweep_name(study: str, model: str) -> str:
    """The name of model ``model``'s sweep in study ``study`` (Ray's experiment, Optuna's study)."""
    return f"{study}-{model}"


def sweep_spec(study: StudySpec, model: str, source: str) -> SweepSpec:
    """The sweep of one model of the study: the shared budget, nothing of the model's own."""
    # every budget key is a sweep key of the same name, but the study's own two: the metric
    # (resolved per dataset) and the retrain seeds
    return SweepSpec(model=model, dataset=study.dataset, metric=study_metric(study, source),
                     **study.budget.model_dump(exclude={"metric", "seeds"}))


def check_study(name: str, study: StudySpec, data: dict[str, Any], models: dict[str, Any], model_names: set[str],
                spec_by_model: dict, facts=None) -> list[str]:
    """Problems of one study against the datasets and models of params, each naming its key.
    ``models``: the entries that validated; ``model_names``: every entry params has."""
    where = f"studies.{name}"
    if study.dataset not in data:
        return [f"{where}.dataset: unknown dataset {excerpt(study.dataset)}; allowed: {sorted(data)} "
                "(the keys of 'data')"]
    problems = []
    repeated = sorted({m for m in study.models if study.models.count(m) > 1})
    if repeated:
        problems.append(f"{where}.models: each model once; repeated: {repeated}")
    for model in dict.fromkeys(study.models):
        key = f"{where}.models.{study.models.index(model)}"
        if model not in model_names:
            problems.append(f"{key}: unknown model {excerpt(model)}; allowed: {sorted(model_names)} "
                            "(the keys of 'models')")
        elif model in models and models[model].dataset != study.dataset:
            problems.append(f"{key}: model {model!r} trains on {models[model].dataset!r}, not on the study's "
                            f"dataset {study.dataset!r}")
        elif model in models:
            problems += _sweep_problems(name, study, model, data[study.dataset].source, models, spec_by_model, facts)
    return problems


def _sweep_problems(name: str, study: StudySpec, model: str, source: str, models, spec_by_model, facts) -> list[str]:
    """The budget checked as each model's sweep: messages name the budget and the model."""
    sweep = sweep_name(name, model)
    found = check_sweep(sweep, sweep_spec(study, model, source), models, spec_by_model, facts)
    return [f"studies.{name}.budget{p.removeprefix(f'sweeps.{sweep}')} (model {model})" for p in found]
