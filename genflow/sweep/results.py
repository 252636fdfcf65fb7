"""A finished sweep as DVC outputs: the trials table, the best params, plots, summary.

Input is a list of plain trial records (the Ray side turns Tune's results into
them), so this module, like the rest of the core library, imports neither Ray
nor Optuna. Outputs of ``sweeps/<name>/``:

* ``trials.parquet``  every trial: status (complete / stopped by ASHA / failed)
  and reason, its config, final and best score, the score at every probe,
  steps, wall time, resources, finishing order, the runs of the stage it trained in;
* ``best_params.yaml``  the best complete trial's values as dotted keys into the
  model entry (``genflow train --best-params`` applies them);
* ``study.journal``  the Optuna study (JournalStorage) for audit;
* ``best_so_far.png``, ``scores.png``  best score vs trials and vs compute; the
  distribution of scores ("Are GANs Created Equal?"'s view of sensitivity);
* ``optuna/``  Optuna's own plots of the study (importances, intermediate values, parallel
  coordinates, slices, contours) and ``plots.json``: what was drawn, what was skipped and why;
* ``summary.json``  counts, best score, provenance.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from genflow.config import read_yaml
from genflow.errors import GenflowError
from genflow.io import atomic_dir, code_revision, write_json, write_text
from genflow.sweep.space import METRIC_MODES

STATUSES = ("complete", "stopped", "failed")
STUDY_PLOTS = "optuna"  # Optuna's own plots of the study, and plots.json (genflow.integrations.optuna_plots)


def _better(mode: str):
    return min if mode == "min" else max


def ranked(records: list[dict[str, Any]], mode: str) -> list[dict[str, Any]]:
    """Scored trials, best first; complete trials rank above stopped ones."""
    scored = [r for r in records if r["status"] != "failed" and r["value"] is not None]
    sign = 1.0 if mode == "min" else -1.0
    return sorted(scored, key=lambda r: (r["status"] != "complete", sign * r["value"], r["number"]))


def best_so_far(records: list[dict[str, Any]], mode: str) -> tuple[list[int], list[float], list[float]]:
    """In finishing order: compute spent (training steps, summed) and the best score yet."""
    finished = sorted(records, key=lambda r: r["finished_order"])
    pick = _better(mode)
    best, steps, xs, ys, done = None, 0, [], [], []
    for index, record in enumerate(finished, 1):
        steps += record["steps"] * max(record["workers"], 1)
        if record["status"] != "failed" and record["value"] is not None:
            best = record["value"] if best is None else pick(best, record["value"])
        done.append(index)
        xs.append(steps)
        ys.append(math.nan if best is None else best)
    return done, xs, ys


def trials_table(records: list[dict[str, Any]], space_keys: list[str], metric: str) -> pa.Table:
    columns: dict[str, pa.Array] = {
        "trial_id": pa.array([r["trial_id"] for r in records], pa.string()),
        "number": pa.array([r["number"] for r in records], pa.int32()),
        "status": pa.array([r["status"] for r in records], pa.string()),
        "reason": pa.array([r["reason"] for r in records], pa.string()),
        "steps": pa.array([r["steps"] for r in records], pa.int64()),
        metric: pa.array([r["value"] for r in records], pa.float64()),
        f"best_{metric}": pa.array([r["best"] for r in records], pa.float64()),
        "history_step": pa.array([r["history_step"] for r in records], pa.list_(pa.int64())),
        f"history_{metric}": pa.array([r["history_value"] for r in records], pa.list_(pa.float64())),
        "wall_s": pa.array([r["wall_s"] for r in records], pa.float64()),
        "cpus": pa.array([r["cpus"] for r in records], pa.float64()),
        "workers": pa.array([r["workers"] for r in records], pa.int32()),
        "finished_order": pa.array([r["finished_order"] for r in records], pa.int32()),
        # the runs of the sweep stage the trial started in: [1] unless a kill interrupted it
        "runs": pa.array([r.get("runs", []) for r in records], pa.list_(pa.int64())),
    }
    for key in space_keys:  # one column per searched key, typed by its values
        columns[f"config.{key}"] = pa.array([r["config"].get(key) for r in records])
    if any("pbt_history" in r for r in records):  # PBT: config.<key> are the values a trial ended with
        columns["pbt_history"] = pbt_history_column(records, space_keys)
        # the sha256 of the checkpoint each probe scored: what an exploit's donor_state_sha256 names
        columns["history_state_sha256"] = pa.array([r.get("history_state_sha256", []) for r in records],
                                                   pa.list_(pa.string()))
    return pa.table(columns)


def pbt_history_column(records: list[dict[str, Any]], space_keys: list[str]) -> pa.Array:
    """Each trial's config changes: the step, the donor whose checkpoint it copied (null for the
    initial draw), that checkpoint's sha256, what the engine then trained with (JSON), and every
    searched key's value from that step on."""
    fields = [pa.field("step", pa.int64()), pa.field("donor", pa.string()), pa.field("donor_state_sha256", pa.string()),
              pa.field("applied", pa.string())]
    for key in space_keys:
        values = [row[key] for r in records for row in r.get("pbt_history", []) if row.get(key) is not None]
        fields.append(pa.field(key, pa.array(values).type if values else pa.null()))
    return pa.array([r.get("pbt_history", []) for r in records], pa.list_(pa.struct(fields)))


def pbt_summary(sweep, records: list[dict[str, Any]], best: dict[str, Any]) -> dict[str, Any]:
    """What summary.json says of a PBT sweep: its settings, how many exploits, the best trial's
    schedule (its score is that of the schedule, not of its final values alone) and every
    trial's changes (step, donor, values; trials.parquet's pbt_history has the rest)."""
    exploits = [row for r in records for row in r.get("pbt_history", []) if row["donor"] is not None]
    shown = ("step", "donor", "donor_state_sha256", "applied")
    return {"perturbation_interval": sweep.interval, "quantile_fraction": sweep.quantile_fraction,
            "resample_probability": sweep.resample_probability, "exploits": len(exploits),
            "best_history": best.get("pbt_history", []),
            "histories": {r["trial_id"]: [{"step": row["step"], "donor": row["donor"],
                                           "values": {k: v for k, v in row.items() if k not in shown}}
                                          for row in r.get("pbt_history", [])] for r in records}}


def best_params(name: str, sweep, best: dict[str, Any], n_trials: int) -> str:
    mode = METRIC_MODES[sweep.metric]
    body = {"sweep": name, "model": sweep.model, "metric": sweep.metric, "mode": mode, "value": best["value"],
            "trial_id": best["trial_id"], "status": best["status"], "steps": best["steps"],
            "overrides": {k: best["config"][k] for k in sorted(best["config"])}}
    header = (f"# genflow sweep {name!r}: the best of {n_trials} trials by {sweep.metric} ({mode}) on the val split.\n"
              f"# Train with it: genflow train --model {sweep.model} --best-params sweeps/{name}/best_params.yaml\n")
    if sweep.scheduler == "pbt":
        header += ("# PBT: the values the best trial ended with; its score came from a schedule of values and copied\n"
                   "# checkpoints (summary.json, pbt.best_history), which training from scratch with these does not repeat.\n")
    return header + yaml.safe_dump(body, sort_keys=False)


def plot(records: list[dict[str, Any]], name: str, metric: str, mode: str, out: Path) -> None:
    from genflow.evaluate.pictures import pyplot

    plt = pyplot()

    done, compute, best = best_so_far(records, mode)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
    axes[0].step(done, best, where="post")
    axes[0].set_xlabel("trials finished")
    axes[1].step(compute, best, where="post")
    axes[1].set_xlabel("compute (training steps × workers)")
    for ax in axes:
        ax.set_ylabel(f"best {metric} so far")
        ax.grid(alpha=0.3, which="both")
        _log_scale_if_wide(ax, [v for v in best if v == v])
    fig.suptitle(f"sweep {name}: best {metric} ({'lower' if mode == 'min' else 'higher'} is better)")
    fig.tight_layout()
    fig.savefig(out / "best_so_far.png", format="png", metadata={"Software": None})
    plt.close(fig)
    plot_scores({name: records}, metric, mode, out / "scores.png")


def _log_scale_if_wide(ax, values: list[float]) -> None:
    """FIDs of a sweep span orders of magnitude; the good ones would sit flat on a linear axis."""
    if values and min(values) > 0 and max(values) / min(values) > 20:
        ax.set_yscale("log")


def plot_scores(by_sweep: dict[str, list[dict[str, Any]]], metric: str, mode: str, path: Path) -> None:
    """Every trial's final score per sweep, by status (the spread is the sensitivity)."""
    from genflow.evaluate.pictures import pyplot

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(by_sweep) + 2), 3.6), dpi=100)
    rng = np.random.default_rng(0)  # horizontal jitter only, fixed so the picture is reproducible
    colours = {"stopped": "tab:gray", "complete": "tab:blue"}  # complete drawn last, on top
    for x, (name, records) in enumerate(by_sweep.items()):
        values = [r["value"] for r in records if r["status"] == "complete" and r["value"] is not None]
        if len(values) > 1:
            ax.boxplot([values], positions=[x], widths=0.5, showfliers=False, zorder=1)
        for status, colour in colours.items():
            ys = [r["value"] for r in records if r["status"] == status and r["value"] is not None]
            ax.scatter(x + rng.uniform(-0.15, 0.15, len(ys)), ys, s=14, c=colour, alpha=0.8, zorder=2,
                       label=status if x == 0 else None)
    ax.set_xticks(range(len(by_sweep)), list(by_sweep))
    _log_scale_if_wide(ax, [r["value"] for rs in by_sweep.values() for r in rs if r["value"] is not None])
    ax.set_ylabel(f"{metric} ({'lower' if mode == 'min' else 'higher'} is better)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)


def write_outputs(out: str | Path, name: str, sweep, records: list[dict[str, Any]], space_keys: list[str],
                  journal: Path | None, provenance: dict[str, Any], log=print,
                  draw_study: Callable[[Path], Any] | None = None) -> dict[str, Any]:
    """Write ``sweeps/<name>/`` atomically; raise if no trial produced a score.

    ``draw_study(folder)`` draws the study's own plots into ``folder`` (``optuna/``): the Optuna
    side lives in genflow.integrations, which this module does not import."""
    mode = METRIC_MODES[sweep.metric]
    order = ranked(records, mode)
    if not order:
        reasons = sorted({r["reason"] for r in records if r["reason"]})
        raise GenflowError(f"sweep {name}: no trial produced a score ({len(records)} failed): {'; '.join(reasons)}")
    best = order[0]
    counts = {status: sum(r["status"] == status for r in records) for status in STATUSES}
    with atomic_dir(out) as tmp:
        pq.write_table(trials_table(records, space_keys, sweep.metric), tmp / "trials.parquet")
        write_text(tmp / "best_params.yaml", best_params(name, sweep, best, len(records)))
        if journal is not None and journal.exists():
            shutil.copyfile(journal, tmp / "study.journal")
        plot(records, name, sweep.metric, mode, tmp)
        if draw_study is not None:
            draw_study(tmp / STUDY_PLOTS)
        summary = {"sweep": name, "model": sweep.model, "metric": sweep.metric, "mode": mode,
                   "trials": len(records), **counts, "best_value": best["value"], "best_trial": best["trial_id"],
                   "best_overrides": best["config"], "training_steps": sum(r["steps"] for r in records),
                   "wall_s_sum": round(sum(r["wall_s"] or 0.0 for r in records), 3),
                   "search": sweep.search, "scheduler": sweep.scheduler, "asha_stopped": sweep.asha_stopped,
                   "code_revision": code_revision(), **provenance}
        if sweep.scheduler == "pbt":
            summary["pbt"] = pbt_summary(sweep, records, best)
        write_json(tmp / "summary.json", summary)
    log(f"[sweep {name}] {counts['complete']} complete, {counts['stopped']} stopped early, {counts['failed']} "
        f"failed; best {sweep.metric}={best['value']:.5g} ({best['trial_id']}: {json.dumps(best['config'])})")
    return summary


def sweep_metrics(summary: dict[str, Any]) -> dict[str, Any]:
    """The sweep's DVC metrics file (metrics/sweeps/<name>.json): its best score and trial counts."""
    return {f"best_{summary['metric']}": summary["best_value"], "trials": summary["trials"],
            **{status: summary[status] for status in STATUSES}}


def read_best_overrides(path: str | Path, model: str) -> dict[str, Any]:
    """The overrides of a best_params.yaml, checked to belong to ``model``."""
    path = Path(path)
    if not path.exists():
        raise GenflowError(f"{path}: not found (run the sweep stage first)")
    body = read_yaml(path)  # as params are read: duplicate keys, encoding, alias bombs refused
    if not isinstance(body, dict) or not isinstance(body.get("overrides"), dict):
        raise GenflowError(f"{path}: not a genflow best_params.yaml (no 'overrides' mapping)")
    if body.get("model") != model:
        raise GenflowError(f"{path}: holds the best params of model {body.get('model')!r}, not {model!r}")
    return body["overrides"]


def read_trials_for_plot(sweeps_dir: str | Path) -> dict[str, Any] | None:
    """Every finished sweep under ``sweeps_dir`` as plot_scores' input; None when there is none.

    Sweeps are only drawn together when they optimise the same metric (the first one found
    decides); the others are left to their own ``scores.png``."""
    by_sweep, metric, mode = {}, None, None
    for summary_path in sorted(Path(sweeps_dir).glob("*/summary.json")):
        summary = json.loads(summary_path.read_text())
        if metric is not None and summary["metric"] != metric:
            continue
        metric, mode = summary["metric"], summary["mode"]
        table = pq.read_table(summary_path.parent / "trials.parquet", columns=["status", metric]).to_pylist()
        by_sweep[summary["sweep"]] = [{"status": row["status"], "value": row[metric]} for row in table]
    return {"by_sweep": by_sweep, "metric": metric, "mode": mode} if by_sweep else None
