"""Checks across the entries of params: report baselines, each model against what params tell
of its dataset, each sweep against the model it starts from, the evaluation protocol against the
data. They run on whatever entries validated, so one bad field does not hide them."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from genflow.data.specs import DataFacts
from genflow.errors import excerpt
from genflow.models.plugins import spec_by_model
from genflow.study.spec import check_study
from genflow.sweep.space import check_sweep


@dataclass
class Entries:
    """The entries of a params mapping that validate, each on its own, for the checks across
    entries. ``names``: every entry the file has, valid or not, so that a reference to an
    invalid one is not called unknown. ``dropped``: an entry that validated only once its
    refused keys were left out (their defaults stand in) -> the names of those keys; a check
    whose message mentions one of them says nothing reliable, so it is left out."""

    data: dict[str, Any] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)
    sweeps: dict[str, SweepSpec] = field(default_factory=dict)
    studies: dict[str, StudySpec] = field(default_factory=dict)
    ray: RaySpec | None = None
    evaluate: EvaluateSpec | None = None
    report: ReportSpec | None = None
    names: dict[str, set[str]] = field(default_factory=dict)
    dropped: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, params: Params) -> "Entries":
        return cls(dict(params.data), dict(params.models), dict(params.sweeps), dict(params.studies), params.ray,
                   params.evaluate, params.report, {"data": set(params.data), "models": set(params.models)})

    def whole(self, where: str) -> bool:
        """Whether entry ``where`` (``models.<name>``...) validated with every key as written."""
        return not self.dropped.get(where)

    def facts(self, dataset: str) -> DataFacts | None:
        """What params tell of ``dataset``; None if its entry did not validate as written."""
        if dataset not in self.data or not self.whole(f"data.{dataset}"):
            return None
        return DataFacts.from_params(dataset, self.data[dataset])

    def world_size(self) -> int:
        """Data-parallel workers of a training run: one batch each (1 in-process or as a task)."""
        return max(1, self.ray.num_workers) if self.ray is not None and self.whole("ray") else 1


def cross_field_problems(entries: Entries) -> list[str]:
    """Every problem between entries: report baselines, models against their data, sweeps
    against their models, the evaluation protocol against the data."""
    return (_baseline_problems(entries) + _model_data_problems(entries) + _sweep_problems(entries)
            + _study_problems(entries) + _evaluate_problems(entries))


def _baseline_problems(e: Entries) -> list[str]:
    problems = []
    for dataset, model in (e.report.baselines.items() if e.report is not None else ()):
        if dataset not in e.names["data"]:
            problems.append(f"report.baselines.{excerpt(dataset)}: unknown dataset; allowed: {sorted(e.names['data'])}")
        elif model not in e.names["models"] or (model in e.models and e.models[model].dataset != dataset):
            allowed = sorted(n for n, spec in e.models.items() if spec.dataset == dataset)
            problems.append(f"report.baselines.{dataset}: {excerpt(model)} is not a model trained on {dataset!r}; "
                            f"allowed: {allowed}")
    return problems


def _model_data_problems(e: Entries) -> list[str]:
    """Each model against what params tell of its dataset (the spec owns the checks; the
    prepared manifest is checked again before training: check_prepared_data)."""
    problems = []
    for name, spec in e.models.items():
        if spec.dataset not in e.names["data"]:
            problems.append(f"models.{name}.dataset: unknown dataset {excerpt(spec.dataset)}; "
                            f"allowed: {sorted(e.names['data'])} (the keys of 'data')")
            continue
        facts = e.facts(spec.dataset)
        if facts is not None:
            problems += kept(spec.check_data(name, facts, e.world_size()), e.dropped.get(f"models.{name}"))
    return problems


def _sweep_problems(e: Entries) -> list[str]:
    """Each sweep against the model it starts from, when that model validated as written."""
    whole_models = {name: spec for name, spec in e.models.items() if e.whole(f"models.{name}")}
    problems = []
    for name, sweep in e.sweeps.items():
        if sweep.model in e.names["models"] and sweep.model not in whole_models:
            continue  # that model's own problems are named; its space is checked once they are fixed
        facts = e.facts(whole_models[sweep.model].dataset) if sweep.model in whole_models else None
        problems += kept(check_sweep(name, sweep, whole_models, spec_by_model(), facts),
                          e.dropped.get(f"sweeps.{name}"))
    return problems


def _study_problems(e: Entries) -> list[str]:
    """Each study against its dataset and models; its budget checked as each model's sweep once
    that model validated as written (its own problems are named otherwise)."""
    whole_models = {name: spec for name, spec in e.models.items() if e.whole(f"models.{name}")}
    problems = []
    for name, study in e.studies.items():
        if study.dataset in e.names["data"] and study.dataset not in e.data:
            continue  # the dataset's own problems are named; the study is checked once they are fixed
        problems += kept(check_study(name, study, e.data, whole_models, e.names["models"], spec_by_model(),
                                     e.facts(study.dataset)), e.dropped.get(f"studies.{name}"))
    return problems


def _evaluate_problems(e: Entries) -> list[str]:
    """The evaluation protocol against each dataset that a sampling model is evaluated on."""
    if e.evaluate is None or not e.whole("evaluate"):
        return []
    problems = e.evaluate.check_data()
    for dataset in sorted({spec.dataset for spec in e.models.values() if spec.task == "generate"}):
        facts = e.facts(dataset)
        problems += e.evaluate.check_data(facts) if facts is not None else []
    return list(dict.fromkeys(problems))


def kept(problems: list[str], dropped: set[str] | None) -> list[str]:
    """The problems that do not mention a key left out (whose default stood in for it)."""
    if not dropped:
        return problems
    mentions = re.compile(r"\b(?:" + "|".join(map(re.escape, sorted(dropped))) + r")\b")
    return [problem for problem in problems if not mentions.search(problem)]
