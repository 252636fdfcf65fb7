"""Typed view of params.yaml's ``sweeps`` section (torch-free, like genflow.config).

A sweep starts from one model entry of ``models`` and varies the keys of its
search space, written as dotted paths into that entry::

    sweeps:
      gan_ring8:
        model: gan_ring8          # the models.<name> entry every trial starts from
        dataset: ring8            # that model's dataset (dvc.yaml's deps need it spelled out)
        preset: narrow            # Lucic et al. 2018's ranges, adapted (each family's sweep_presets,
                                  # genflow/models/specs.py)
        space:
          train.lr_g: {loguniform: [1.0e-4, 1.0e-2]}
          width: {choice: [64, 128, 256]}

Every dimension is checked before Ray starts, as each trial would be: every choice, a
range's ends and what lies between them (``Dimension.proposals``) are set into the
model entry one key at a time, then two keys at a time, and each result goes through
the model's schema and its checks against the data (``check_data``: classes, point or
image data, batch size against the rows). A space that could propose an invalid trial
is refused, naming ``sweeps.<name>.space.<key>``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from genflow.data.specs import DataFacts, Seed
from genflow.errors import excerpt
from genflow.models.plugins import validate_spec
from genflow.models.specs import MAX_STEPS
from genflow.sweep.dimension import Dimension


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


METRIC_MODES = {"fid": "min", "kid": "min", "reverse_kl": "min", "modes": "max", "high_quality": "max"}
MIXTURE_METRICS = ("reverse_kl", "modes", "high_quality")


class SweepSpec(_Strict):
    """A hyperparameter search over one model entry (Ray Tune + Optuna + ASHA)."""

    model: str = Field(description="the models.<name> entry every trial starts from")
    dataset: str = Field(description="that model's dataset (dvc.yaml's deps read it from here)")
    metric: Literal[tuple(METRIC_MODES)] = Field("fid", description="probe metric on the val split; "
                                                 "fid/kid/reverse_kl are minimised, modes/high_quality maximised")
    search: Literal["tpe", "random"] = Field("tpe", description="Optuna's TPE (seeded) or random sampling")
    scheduler: Literal["asha", "fifo", "pbt"] = Field(
        "asha", description="asha stops weak trials early; fifo never; pbt: Population Based Training (the "
        "trials are the population; weak ones copy a strong one's checkpoint and perturb its lr / betas / "
        "n_critic / r1_gamma; docs/sweeps.md)")
    trials: int = Field(16, ge=1, le=100_000)
    steps: int | None = Field(None, ge=1, le=MAX_STEPS, description="training steps of a full trial (default: the "
                              "model's)")
    report_every: int = Field(200, ge=1, le=MAX_STEPS, description="steps between probes (the metric ASHA compares)")
    grace_steps: int = Field(200, ge=1, le=MAX_STEPS, description="ASHA: no trial stops before this many steps")
    reduction_factor: int = Field(3, ge=2, le=100, description="ASHA: 1/eta of the trials go on at each rung")
    perturbation_interval: int | None = Field(None, ge=1, le=MAX_STEPS, description="pbt: steps between "
                                              "exploit/explore rounds, a multiple of report_every (default: it)")
    quantile_fraction: float = Field(0.25, gt=0.0, le=0.5, description="pbt: the bottom fraction of the "
                                     "population copies the top fraction")
    resample_probability: float = Field(0.25, ge=0.0, le=1.0, description="pbt: chance that explore draws an "
                                        "explored key afresh from its range instead of perturbing it")
    asha_stopped: Literal["pruned", "complete"] = Field(
        "pruned", description="how an ASHA-stopped trial is told to Optuna (docs/sweeps.md explains)")
    seed: Seed = Field(0, description="seeds the sampler and every trial's training")
    preset: Literal["none", "wide", "narrow"] = "none"
    space: dict[str, Dimension] = Field({}, description="dotted key in the model -> range")
    probe_samples: int = Field(1000, ge=10, le=1_000_000, description="generated samples per probe")
    probe_real: int = Field(1000, ge=10, le=1_000_000, description="val rows per probe (capped at its size)")
    cpus_per_trial: float = Field(1.0, gt=0.0, le=4096)
    threads_per_trial: int = Field(1, ge=1, le=256)
    workers_per_trial: int = Field(0, ge=0, le=4096, description="0: train inside the trial process; "
                                   ">= 1: a Ray Train TorchTrainer per trial with this many workers")
    max_concurrent: int = Field(0, ge=0, le=100_000, description="0: as many trials as the cluster's CPUs hold")

    @model_validator(mode="after")
    def _grace_within_budget(self):
        if self.steps is not None and self.grace_steps > self.steps and self.scheduler != "pbt":  # ASHA's
            raise ValueError(f"grace_steps: must not exceed steps ({self.steps}); got {self.grace_steps}")
        if self.perturbation_interval is not None and self.perturbation_interval % self.report_every:
            raise ValueError(f"perturbation_interval: must be a multiple of report_every ({self.report_every}): PBT "
                             f"decides on probe scores; got {self.perturbation_interval}")
        return self

    @property
    def interval(self) -> int:
        """pbt: steps between exploit/explore rounds."""
        return self.perturbation_interval or self.report_every


# what explore may change in a running trial, and where it takes effect (genflow.train.engine
# rebuilds the phases and losses from the trial's spec; Engine.apply_settings sets the
# optimisers' lr and betas, which loading a checkpoint would otherwise restore)
EXPLORABLE = ("train.lr_g", "train.lr_d", "train.lr", "train.beta1", "train.beta2", "train.n_critic", "r1_gamma")


def explored_keys(space: dict[str, Dimension]) -> list[str]:
    """The searched keys PBT perturbs: those of EXPLORABLE that the family's preset (or
    ``space``) searches."""
    return [key for key in EXPLORABLE if key in space]


def check_pbt(where: str, sweep, space: dict[str, Dimension], steps: int) -> list[str]:
    """Problems of a ``scheduler: pbt`` sweep, each naming its key."""
    problems = []
    if not explored_keys(space):
        problems.append(f"{where}.space: PBT explores {', '.join(EXPLORABLE)}; this sweep searches none of them "
                        f"(searched: {', '.join(sorted(space)) or 'nothing'})")
    if sweep.workers_per_trial != 0:
        problems.append(f"{where}.workers_per_trial: PBT trials train in their own process (0); a trial on "
                        f"Ray Train workers cannot load another trial's checkpoint yet; got {sweep.workers_per_trial}")
    if sweep.max_concurrent:
        problems.append(f"{where}.max_concurrent: PBT runs as many members at once as cpus_per_trial lets the "
                        f"cluster hold, and rotates the rest at each round; use cpus_per_trial (got {sweep.max_concurrent})")
    if sweep.trials < 2:
        problems.append(f"{where}.trials: PBT needs a population of at least 2 trials; got {sweep.trials}")
    if sweep.interval >= steps:
        problems.append(f"{where}.perturbation_interval: must be below the trial's {steps} steps, or PBT never "
                        f"acts; got {sweep.interval}")
    return problems


def resolved_space(sweep: SweepSpec, model_spec: dict[str, Any]) -> dict[str, Dimension]:
    """The preset's dimensions that apply to this model (its spec's ``sweep_preset``), overridden
    by ``space``."""
    spec = validate_spec(model_spec)
    return {**spec.sweep_preset(sweep.preset), **sweep.space}


def set_dotted(spec: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A copy of ``spec`` with ``a.b`` set to ``value`` (sub-mappings copied, never shared)."""
    out = dict(spec)
    head, _, rest = key.partition(".")
    if rest:
        inner = out.get(head)
        if not isinstance(inner, dict):
            raise KeyError(head)
        out[head] = set_dotted(inner, rest, value)
    elif head not in out:
        raise KeyError(head)
    else:
        out[head] = value
    return out


def trial_spec(base: dict[str, Any], sweep: SweepSpec) -> dict[str, Any]:
    """The model entry every trial of ``sweep`` starts from before its searched values are set:
    the sweep's steps, probe interval and seed (what genflow.sweep.trial.trial_config sets)."""
    spec = set_dotted(base, "train.steps", sweep.steps or base["train"]["steps"])
    spec = set_dotted(spec, "train.checkpoint_every", sweep.report_every)
    spec = set_dotted(spec, "train.log_every", min(spec["train"]["log_every"], sweep.report_every))
    return set_dotted(spec, "seeds", [sweep.seed])


def check_sweep(name: str, sweep: SweepSpec, models: dict[str, Any], spec_by_model: dict,
                facts: DataFacts | None = None) -> list[str]:
    """Problems of one sweep against the model it starts from and, where ``facts`` tell, that
    model's data: every problem, each naming its key."""
    where = f"sweeps.{name}"
    if sweep.model not in models:
        return [f"{where}.model: unknown model {excerpt(sweep.model)}; allowed: {sorted(models)} "
                "(the keys of 'models')"]
    base = models[sweep.model]
    problems = []
    if sweep.dataset != base.dataset:
        problems.append(f"{where}.dataset: model {sweep.model!r} trains on {base.dataset!r}; got "
                        f"{excerpt(sweep.dataset)}")
    base_dict = base.model_dump(mode="json")
    space = resolved_space(sweep, base_dict)
    if not space:
        problems.append(f"{where}.space: nothing to search; give a preset (wide, narrow) or space keys")
    steps = sweep.steps or base.train.steps
    if sweep.scheduler == "asha" and sweep.grace_steps > steps:
        problems.append(f"{where}.grace_steps: must not exceed the trial's {steps} steps; got {sweep.grace_steps}")
    if sweep.scheduler == "pbt":
        problems += check_pbt(where, sweep, space, steps)
    problems += _check_probe_data(where, sweep, facts)
    trial = _TrialCheck(spec_by_model[base_dict["model"]], sweep.model, trial_spec(base_dict, sweep), facts,
                        max(1, sweep.workers_per_trial))
    every_trial = trial.problems({})
    if every_trial:  # e.g. workers_per_trial batches that the data cannot fill
        return problems + [f"{where}: every trial would be invalid: {p}" for p in every_trial]
    passed = {}
    for key, dimension in space.items():
        found, passed[key] = _check_dimension(f"{where}.space.{key}", key, dimension, trial, sweep)
        problems += found
    return problems + _check_pairs(f"{where}.space", passed, trial)


def _check_probe_data(where: str, sweep: SweepSpec, facts: DataFacts | None) -> list[str]:
    """What the probe (genflow.sweep.trial.Probe) needs of the data: validation rows to score
    against, and a Gaussian mixture for the mixture metrics."""
    if facts is None:
        return []
    problems, val_rows = [], facts.rows("val")
    if val_rows is not None and val_rows < 2:
        problems.append(f"{where}.dataset: dataset {facts.name!r} has {val_rows} validation rows; the probe scores "
                        "each trial on them (at least 2; raise the dataset's val_fraction)")
    if sweep.metric in MIXTURE_METRICS and facts.kind == "image":
        problems.append(f"{where}.metric: {sweep.metric!r} needs a Gaussian-mixture dataset; {facts.name!r} holds "
                        "images (use fid or kid)")
    return problems


@dataclass(frozen=True)
class _TrialCheck:
    """What each proposal is checked against: the model's schema, then its data (where known),
    as the train stage and every trial check them."""

    spec_cls: type
    model: str                  # the models.<name> entry the sweep starts from
    base: dict[str, Any]        # trial_spec of that entry
    facts: DataFacts | None
    world_size: int             # data-parallel workers of a trial

    def problems(self, values: dict[str, Any]) -> list[str]:
        """Why a trial with ``values`` (dotted key -> value) set would be refused; [] if it would
        not. KeyError: a key that the model does not have."""
        spec = self.base
        for key, value in values.items():
            spec = set_dotted(spec, key, value)
        try:
            checked = self.spec_cls.model_validate(spec)
        except ValidationError as exc:
            return [_describe(error) for error in exc.errors()]
        if self.facts is None:
            return []
        prefix = f"models.{self.model}."
        return [p.removeprefix(prefix) for p in checked.check_data(self.model, self.facts, self.world_size)]


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")  # a model validator's own "key: why"
    return f"{key}: {message}" if key else message


def _check_dimension(where: str, key: str, dimension: Dimension, trial: _TrialCheck,
                     sweep: SweepSpec) -> tuple[list[str], list[Any]]:
    """Problems of one searched key on its own, and the proposals that passed."""
    if key in ("model", "dataset", "seeds"):
        return [f"{where}: {key!r} cannot be searched (one sweep = one model family, dataset and seed)"], []
    if key == "train.checkpoint_every" or (key == "train.steps" and sweep.steps):
        setting = "report_every" if key == "train.checkpoint_every" else "steps"
        return [f"{where}: cannot be searched: every trial takes it from the sweep's {setting}"], []
    passed, failed = [], []
    for value in dimension.proposals():
        try:
            found = trial.problems({key: value})
        except KeyError:
            base = trial.base
            keys = sorted(k for k in base if k != "model") + [f"train.{k}" for k in base.get("train", {})]
            return [f"{where}: not a key of a {base['model']} model; allowed: {', '.join(keys)}"], []
        if found:
            failed.append((value, found))
        else:
            passed.append(value)
    if failed and dimension.kind in ("uniform", "loguniform") and _takes_integers(trial, key, failed):
        low, high = getattr(dimension, dimension.kind)
        return [f"{where}: {dimension.kind} proposes real numbers such as {failed[0][0]!r}, but {key} takes "
                f"integers; search it with {{int: [{low}, {high}]}} or a choice"], []
    problems = [f"{where}: value {excerpt(value)} is invalid for this model: {'; '.join(found)}"
                for value, found in failed[:MAX_VALUES_NAMED]]
    if len(failed) > MAX_VALUES_NAMED:
        problems.append(f"{where}: and {len(failed) - MAX_VALUES_NAMED} more invalid values")
    return problems, passed


MAX_VALUES_NAMED = 3


def _takes_integers(trial: _TrialCheck, key: str, failed: list[tuple[Any, list[str]]]) -> bool:
    """Whether a float that was refused passes as the integer it rounds to."""
    return any(isinstance(v, float) and v.is_integer() and not trial.problems({key: int(v)}) for v, _ in failed)


# Pairs of searched keys are checked together (pac with batch_size, domain_a with domain_b...),
# up to this many trial specs in all (about 30 us each, so 0.3 s at most); pairs past it, and
# three keys that only clash together, are left to the trials.
MAX_PAIR_CHECKS = 10_000


def _check_pairs(where: str, passed: dict[str, list[Any]], trial: _TrialCheck) -> list[str]:
    """The first clash of each pair of searched keys whose values are each valid alone."""
    problems, budget, keys = [], MAX_PAIR_CHECKS, sorted(passed)
    for i, first in enumerate(keys):
        for second in keys[i + 1:]:
            budget -= len(passed[first]) * len(passed[second])
            if budget < 0:
                return problems
            clash = _first_clash(trial, first, passed[first], second, passed[second])
            if clash:
                a, b, found = clash
                problems.append(f"{where}.{first}: value {excerpt(a)} with {second} = {excerpt(b)} is invalid for "
                                f"this model: {'; '.join(found)}")
    return problems


def _first_clash(trial: _TrialCheck, first: str, firsts: list[Any], second: str, seconds: list[Any]):
    for a in firsts:
        for b in seconds:
            found = trial.problems({first: a, second: b})
            if found:
                return a, b, found
    return None
