"""Typed view of params.yaml's ``sweeps`` section (torch-free, like config.py).

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

Every dimension is checked against the model's schema at both ends of its
range (and every choice), so a search space that could propose an invalid
config is rejected before Ray starts, naming ``sweeps.<name>.space.<key>``.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from genflow.models.specs import SPEC_BY_MODEL
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
    scheduler: Literal["asha", "fifo"] = Field("asha", description="asha stops weak trials early; fifo never")
    trials: int = Field(16, ge=1, le=100_000)
    steps: int | None = Field(None, ge=1, description="training steps of a full trial (default: the model's)")
    report_every: int = Field(200, ge=1, description="steps between probes (the metric ASHA compares)")
    grace_steps: int = Field(200, ge=1, description="ASHA: no trial stops before this many steps")
    reduction_factor: int = Field(3, ge=2, le=100, description="ASHA: 1/eta of the trials go on at each rung")
    asha_stopped: Literal["pruned", "complete"] = Field(
        "pruned", description="how an ASHA-stopped trial is told to Optuna (docs/sweeps.md explains)")
    seed: int = Field(0, ge=0, description="seeds the sampler and every trial's training")
    preset: Literal["none", "wide", "narrow"] = "none"
    space: dict[str, Dimension] = Field({}, description="dotted key in the model -> range")
    probe_samples: int = Field(1000, ge=10, le=1_000_000, description="generated samples per probe")
    probe_real: int = Field(1000, ge=10, le=1_000_000, description="val rows per probe (capped at its size)")
    cpus_per_trial: float = Field(1.0, gt=0.0, le=4096)
    threads_per_trial: int = Field(1, ge=1, le=256)
    workers_per_trial: int = Field(0, ge=0, le=4096, description="0: train inside the trial process; "
                                   ">= 1: a Ray Train TorchTrainer per trial with this many workers")
    max_concurrent: int = Field(0, ge=0, description="0: as many trials as the cluster's CPUs hold")

    @model_validator(mode="after")
    def _grace_within_budget(self):
        if self.steps is not None and self.grace_steps > self.steps:
            raise ValueError(f"grace_steps: must not exceed steps ({self.steps}); got {self.grace_steps}")
        return self


def resolved_space(sweep: SweepSpec, model_spec: dict[str, Any]) -> dict[str, Dimension]:
    """The preset's dimensions that apply to this model (its spec's ``sweep_preset``), overridden
    by ``space``."""
    spec = SPEC_BY_MODEL[model_spec["model"]].model_validate(model_spec)
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


def check_sweep(name: str, sweep: SweepSpec, models: dict[str, Any], spec_by_model: dict) -> list[str]:
    """Problems of one sweep against the models it refers to, each naming its key."""
    where = f"sweeps.{name}"
    if sweep.model not in models:
        return [f"{where}.model: unknown model {sweep.model!r}; allowed: {sorted(models)} (the keys of 'models')"]
    base = models[sweep.model]
    problems = []
    if sweep.dataset != base.dataset:
        problems.append(f"{where}.dataset: model {sweep.model!r} trains on {base.dataset!r}; got {sweep.dataset!r}")
    base_dict = base.model_dump(mode="json")
    space = resolved_space(sweep, base_dict)
    if not space:
        problems.append(f"{where}.space: nothing to search; give a preset (wide, narrow) or space keys")
    steps = sweep.steps or base.train.steps
    if sweep.scheduler == "asha" and sweep.grace_steps > steps:
        problems.append(f"{where}.grace_steps: must not exceed the trial's {steps} steps; got {sweep.grace_steps}")
    for key, dim in space.items():
        problems += _check_dimension(f"{where}.space.{key}", base_dict, key, dim, spec_by_model[base_dict["model"]])
    return problems


def _check_dimension(where: str, base: dict[str, Any], key: str, dim: Dimension, spec_cls) -> list[str]:
    if key in ("model", "dataset", "seeds"):
        return [f"{where}: {key!r} cannot be searched (one sweep = one model family, dataset and seed)"]
    for value in dim.extremes():
        try:
            spec_cls.model_validate(set_dotted(base, key, value))
        except KeyError:
            keys = sorted(k for k in base if k != "model") + [f"train.{k}" for k in base.get("train", {})]
            return [f"{where}: not a key of a {base['model']} model; allowed: {', '.join(keys)}"]
        except ValidationError as exc:
            first = exc.errors()[0]
            return [f"{where}: value {value!r} is invalid for this model: {first['msg']}"]
    return []
