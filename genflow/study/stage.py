"""The study's DVC stages, one function each: a model's sweep, a variant's training and
evaluation, the study report. Each reuses the stage of its kind (genflow.launch) on the study's
folders, so a study's artifacts are made and recorded exactly as the pipeline's are.

    studies/<study>/sweeps/<model>/                 the model's sweep (trials.parquet, summary.json ...)
    studies/<study>/models/<model>/<variant>/       tuned (the sweep's winner) or default (the
                                                    model's hand-set config), one run per seed
    studies/<study>/metrics/<model>-<variant>.json  its headline numbers on test (+ .details.json)
    studies/<study>/samples/<model>-<variant>.png   its samples, interpolation and gallery
    studies/<study>/report/                         the study report (genflow.study.report)

Both variants train the study's ``budget.steps`` on the retrained seeds, without probes or a
selection of their own (as the trials trained), so that tuned vs default differs in the
searched keys only.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from genflow import config, launch
from genflow.config import Params, fingerprint
from genflow.errors import ConfigError
from genflow.io import atomic_dir, code_revision, write_json
from genflow.models.plugins import spec_by_model
from genflow.study.spec import StudySpec, study_metric, sweep_name, sweep_spec
from genflow.sweep.space import METRIC_MODES, check_sweep

# what a retrained run leaves out of the model's entry: the trials trained without them too
UNPROBED = {"train.eval_every": 0, "train.select": "last", "train.patience": 0}


class StudyPaths:
    """Where the study's stages read and write, under ``root`` (the project's folder)."""

    def __init__(self, study: str, root: str | Path = "."):
        self.base = Path(root) / "studies" / study

    def sweep(self, model: str) -> Path:
        return self.base / "sweeps" / model

    def run(self, model: str, variant: str) -> Path:
        return self.base / "models" / model / variant

    def metrics(self, model: str, variant: str) -> Path:
        return self.base / "metrics" / f"{model}-{variant}.json"

    def details(self, model: str, variant: str) -> Path:
        return self.base / "metrics" / f"{model}-{variant}.details.json"

    def samples(self, model: str, variant: str) -> Path:
        return self.base / "samples" / f"{model}-{variant}.png"

    def report(self) -> Path:
        return self.base / "report"


def study_of(params: Params, study: str, model: str | None = None) -> StudySpec:
    """The study, refused with exit 2 when params lack it or it lacks ``model``."""
    if study not in params.studies:
        raise ConfigError(f"unknown study {study!r}; params.yaml's studies section defines: "
                          f"{', '.join(sorted(params.studies)) or 'none'}")
    spec = params.studies[study]
    if model is not None and model not in spec.models:
        raise ConfigError(f"studies.{study}.models: no model {model!r}; it lists {', '.join(spec.models)} (after "
                          "changing the list, rerun python ../../stages/study_blocks.py to update dvc.yaml)")
    return spec


def params_fingerprint(params: Params, study: str, model: str) -> str:
    """What one model's part of the study depends on in params: its entry, the dataset, the budget."""
    spec = params.studies[study]
    return fingerprint({"study": study, "dataset": spec.dataset, "budget": spec.budget.model_dump(mode="json"),
                        "model": params.models[model].model_dump(mode="json")})


def sweep(study: str, model: str, params: Params, data_root: Path, featurenet_root: Path, root: Path) -> dict:
    """The model's sweep under the study's budget -> studies/<study>/sweeps/<model>/."""
    spec = study_of(params, study, model)
    name, searched = sweep_name(study, model), sweep_spec(spec, model, params.data[spec.dataset].source)
    facts = config.prepared_facts(spec.dataset, data_root)
    problems = check_sweep(name, searched, params.models, spec_by_model(), facts) if facts else []
    if problems:  # before Ray starts, as the sweep stage checks them
        raise ConfigError(f"studies.{study} does not fit the prepared data in {data_root} (model {model}):\n  "
                          + "\n  ".join(problems))
    paths = StudyPaths(study, root)
    return launch.sweep(name, params, data_root, featurenet_root, paths.sweep(model), spec=searched,
                        provenance={"study": study, "params_fingerprint": params_fingerprint(params, study, model)},
                        metrics_out=paths.base / "metrics" / f"{model}-sweep.json")


def run_overrides(study: str, model: str, variant: str, params: Params, root: Path) -> dict[str, Any]:
    """The keys a retrained run sets in the model's entry: the winner's values (tuned), the
    study's steps and seeds, no probes of its own."""
    from genflow.sweep.results import read_best_overrides

    budget = params.studies[study].budget
    best = read_best_overrides(StudyPaths(study, root).sweep(model) / "best_params.yaml", model) \
        if variant == "tuned" else {}
    return {**best, "train.steps": budget.steps, "seeds": budget.retrain_seeds(), **UNPROBED}


def train(study: str, model: str, variant: str, params_path: str, sets: list[str], data_root: Path,
          models_root: Path, root: Path) -> None:
    """The variant's runs over the study's seeds -> studies/<study>/models/<model>/<variant>/."""
    given = config.load(params_path, sets)
    study_of(given, study, model)
    overrides = run_overrides(study, model, variant, given, root)
    params = config.load(params_path, [*sets, *(f"models.{model}.{k}={json.dumps(v)}" for k, v in overrides.items())])
    config.check_prepared_data(params, data_root, train=model)  # before Ray starts
    out = StudyPaths(study, root).run(model, variant)
    launch.train(model, params, data_root, out, featurenet_root=models_root / "featurenet")
    # what the run is, beside its seeds (each seed's meta.json records its code revision and params)
    write_json(out / "study_run.json", {"study": study, "model": model, "variant": variant, "overrides": overrides,
                                        "code_revision": code_revision(),
                                        "params_fingerprint": params_fingerprint(given, study, model)})


def evaluate(study: str, model: str, variant: str, params: Params, data_root: Path, models_root: Path,
             root: Path) -> dict:
    """The variant's runs evaluated on the usual protocol -> studies/<study>/metrics, samples."""
    spec = study_of(params, study, model)
    config.check_prepared_data(params, data_root, evaluate=model)
    paths = StudyPaths(study, root)
    metrics = launch.evaluate(model, params, paths.run(model, variant), data_root / spec.dataset,
                              models_root / "featurenet" / spec.dataset, paths.metrics(model, variant),
                              paths.samples(model, variant))
    # the protocol names the code revision and the weights; the run names the study's params
    run = json.loads((paths.run(model, variant) / "study_run.json").read_text())
    metrics["study_run"] = {k: run[k] for k in ("study", "variant", "params_fingerprint", "code_revision")}
    write_json(paths.details(model, variant), metrics)
    return metrics


def report(study: str, params: Params, root: Path) -> dict:
    """The study report of every model -> studies/<study>/report/ (genflow.study.report)."""
    from genflow.study.report import ModelResult, write_study_report

    spec, paths = study_of(params, study), StudyPaths(study, root)
    source = params.data[spec.dataset].source
    results, experiments = [], {}
    for model in spec.models:
        summary_path, default = paths.sweep(model) / "summary.json", paths.details(model, "default")
        missing = [p for p in (summary_path, paths.details(model, "tuned")) if not p.exists()]
        if missing:  # a model added to the study whose stages dvc.yaml does not list yet
            raise ConfigError(f"studies.{study}.models: {model} has no {missing[0]}; after adding a model to a "
                              "study, run python stages/study_blocks.py (from the repository root), then dvc repro")
        summary = json.loads(summary_path.read_text())
        experiments[model] = summary["experiment"]  # the sweep's Ray experiment: its params fingerprint
        results.append(ModelResult(name=model, family=summary["base_spec"]["model"],
                                   trials=paths.sweep(model) / "trials.parquet", summary=summary_path,
                                   tuned=paths.details(model, "tuned"), default=default if default.exists() else None))
    metric = study_metric(spec, source)
    provenance = {"code_revision": code_revision(),
                  "params_fingerprint": fingerprint({"study": study, **spec.model_dump(mode="json"),
                                                     "models": {m: params_fingerprint(params, study, m)
                                                                for m in spec.models}}),
                  "sweep_experiments": experiments}
    with atomic_dir(paths.report()) as tmp:
        summary = write_study_report(study, spec.dataset, metric, METRIC_MODES[metric], results, tmp, provenance)
    print(f"[study {study}] wrote {paths.report()}/ for {len(results)} models", flush=True)
    return summary
