"""Which process runs a stage's heavy work: this one, Ray tasks, Ray Train's TorchTrainer or Ray Tune.

The one place that decides, and the only core module that imports ``genflow.integrations``
(lazily: Ray is imported only when a stage actually runs on it). The stage functions below
take the same arguments whatever the runner; the core they call is plain PyTorch + pyarrow
and receives the chosen runner as a function (``decode_many``, ``draw``), never imports it.

    prepare   an image folder's decode: here, or ``num_workers`` Ray tasks
    train     each seed: in-process (``ray.num_workers: 0``), a Ray task (one worker), or a
              TorchTrainer (data-parallel, ``launcher: trainer``, or storage given as a URL)
    evaluate  the protocol's sample draw: here, or ``evaluate.num_workers`` Ray tasks
    sweep     always Ray Tune (+ Optuna + ASHA); a trial trains in its task or a TorchTrainer
"""
from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path
from typing import Any

from genflow.config import Params
from genflow.io import atomic_dir, write_json


def prepare(spec, out: str | Path, params: Params, log=print) -> dict[str, Any]:
    """``data.<name>`` -> data/prepared/<name>/; an image folder with ``num_workers`` decodes on Ray."""
    from genflow.data.prepare import prepare as prepare_data

    decode_many = None
    if getattr(spec, "num_workers", 0):
        from genflow.integrations.ray_data import decode_sharded

        decode_many = partial(decode_sharded, ray_spec=params.ray)
    return prepare_data(spec, out, log=log, decode_many=decode_many)


def runs_as_tasks(ray_spec) -> bool:
    """``launcher: auto`` runs a one-worker run as a Ray task (integrations/ray_tasks.py):
    there is nothing to all-reduce, and its checkpoints need a path every node can open."""
    return ray_spec.launcher == "auto" and ray_spec.num_workers == 1 and "://" not in ray_spec.storage_path


def train_runner(ray_spec) -> str:
    """``in-process``, ``tasks`` or ``trainer``: who trains each seed."""
    if ray_spec.num_workers == 0:
        return "in-process"
    return "tasks" if runs_as_tasks(ray_spec) else "trainer"


RUNNER_NAMES = {"in-process": "in-process", "tasks": "a Ray task per seed",
                "trainer": "a Ray TorchTrainer of {n} workers per seed"}


def train_probe(spec, featurenet_root: str | Path):
    """The probe of ``train.eval_every`` as the workers take it (a picklable function of their
    config), or None when the model is not probed during training."""
    if not spec.train.eval_every:
        return None
    from genflow.evaluate.probe import training_probe

    return partial(training_probe, featurenet_root=str(Path(featurenet_root).resolve()))


def train(name: str, params: Params, data_root: str | Path, out: str | Path,
          featurenet_root: str | Path = "models/featurenet") -> None:
    """Train every seed of model ``name`` into ``out/seed_<s>/`` (swapped in atomically).

    The resume state of each run stays in ``ray.storage_path`` until every seed is
    done, so a stage killed anywhere resumes where it stopped when rerun. With
    ``train.eval_every`` the feature network of ``featurenet_root`` probes it as it trains."""
    from genflow.train.worker import seed_dir, train_in_process
    from genflow.train.worker_config import run_name, worker_config

    spec, runner = params.models[name], train_runner(params.ray)
    probe = train_probe(spec, featurenet_root)
    configs = [worker_config(name, params, data_root, seed) for seed in spec.seeds]
    if configs[0].init_from is not None:  # the source fits the model: checked here, before Ray starts
        from genflow.train.init_from import check

        check(configs[0])
    with atomic_dir(out) as tmp:
        jobs = [(config, seed_dir(tmp, config.seed)) for config in configs]
        how = RUNNER_NAMES[runner].format(n=params.ray.num_workers)
        print(f"[{name}] training seeds {spec.seeds}, {spec.train.steps} steps each ({how})", flush=True)
        if runner == "in-process":
            for config, directory in jobs:
                train_in_process(config, directory, params.ray.storage_path, probe)
        elif runner == "tasks":
            from genflow.integrations.ray_tasks import train_seeds_as_tasks

            train_seeds_as_tasks(jobs, params.ray, probe)
        else:
            from genflow.integrations.ray_train import train_seeds_with_ray

            train_seeds_with_ray(jobs, params.ray, probe)
    if "://" not in params.ray.storage_path:  # the artifacts are in DVC now; drop the resume state
        for config in configs:
            shutil.rmtree(Path(params.ray.storage_path) / run_name(config), ignore_errors=True)


def evaluate(name: str, params: Params, model_dir: Path, data_dir: Path, featurenet_dir: Path, out_json: Path,
             out_png: Path, log=print) -> dict[str, Any]:
    """The evaluate stage of model ``name``; ``evaluate.num_workers`` shards the sample draw on Ray."""
    from genflow.evaluate.protocol import evaluate_model

    return evaluate_model(model_dir, data_dir, featurenet_dir, params.evaluate, out_json, out_png, log=log,
                          draw=sample_draw(params))


def sample_draw(params: Params):
    """The evaluate protocol's sample draw when ``evaluate.num_workers`` shards it over Ray tasks
    (a function (model, features) -> (samples, features)); None: in-process."""
    spec = params.evaluate
    if not spec.num_workers:
        return None
    from genflow.integrations.ray_eval import sharded_samples

    def draw(model, features):
        return sharded_samples(model, features, spec.n_samples, spec.seed, spec, params.ray)
    return draw


def sweep(name: str, params: Params, data_root: str | Path, featurenet_root: str | Path, out: str | Path,
          log=print, metrics_out: str | Path | None = None, spec=None,
          provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run (or resume) sweep ``name`` of params.yaml on Ray Tune and write ``out`` (sweeps/<name>/),
    and its best score as a DVC metrics file in ``metrics_out`` (metrics/sweeps/<name>.json).
    ``spec``: a SweepSpec that params.yaml's sweeps section does not hold (a study's sweep of one
    model, genflow/study/spec.py), recorded with ``provenance`` added to its summary."""
    from genflow.integrations.ray_tune import JOURNAL, run_sweep, study_name
    from genflow.integrations.optuna_plots import draw_study_plots
    from genflow.integrations.tune_ledger import trial_records
    from genflow.sweep.results import sweep_metrics, write_outputs
    from genflow.sweep.space import METRIC_MODES, resolved_space
    from genflow.train.worker_config import worker_config

    sweep_spec = spec or params.sweeps[name]
    base = worker_config(sweep_spec.model, params, data_root, sweep_spec.seed)
    experiment = run_sweep(name, sweep_spec, base, Path(featurenet_root) / sweep_spec.dataset, params.ray, log)
    steps = sweep_spec.steps or base.spec["train"]["steps"]
    keys = sorted(resolved_space(sweep_spec, base.spec))
    records = trial_records(experiment / JOURNAL, study_name(name), experiment / "ledger", sweep_spec, steps, keys)
    provenance = {"experiment": experiment.name, "data_manifest_sha256": base.data_manifest_sha256,
                  "base_spec": base.spec, "steps_per_trial": steps, **(provenance or {})}

    def draw_study(folder: Path) -> None:  # Optuna's own plots, from the journal, into sweeps/<name>/optuna/
        draw_study_plots(experiment / JOURNAL, study_name(name), sweep_spec.metric, METRIC_MODES[sweep_spec.metric],
                         folder, log=lambda line: log(f"[sweep {name}] {line}"))

    # PBT: the journal holds each member's initial values only, and its score comes from a schedule
    # of values, so Optuna's importances and slices would credit the initial draw; none are drawn
    summary = write_outputs(out, name, sweep_spec, records, keys, experiment / JOURNAL, provenance, log,
                            draw_study=draw_study if sweep_spec.scheduler != "pbt" else None)
    if metrics_out is not None:
        write_json(metrics_out, sweep_metrics(summary))
    if "://" not in params.ray.storage_path:  # the results are in DVC now; drop the resume state
        shutil.rmtree(experiment, ignore_errors=True)
    return summary
