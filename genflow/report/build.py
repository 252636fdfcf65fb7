"""Comparison report: every model × seed, per dataset, as Markdown and one self-contained HTML file.

For each metric a cell holds the mean over seeds ± the 95 % CI, the model's rank among the
models of its dataset, and the p-value of Welch's t-test against the dataset's baseline
(genflow.report.stats says why these). The real-vs-real floor is its own row. Pictures:
metric bars with CIs, precision vs recall, training curves, anomaly ROC curves when a model
has a ``holdout_class``, every model's samples and latent interpolation, and the sweeps'
score distributions when there are sweeps.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genflow.evaluate.gallery import PICTURES, gallery_dir
from genflow.evaluate.pictures import interpolation_png, save_strip
from genflow.io import atomic_path, write_text
from genflow.report import plots as report_plots
# load_blocks: also this module's public name for the tests and bench scripts that read blocks
from genflow.report.blocks import BAR_METRICS, DatasetBlock, load_blocks  # noqa: F401
from genflow.report.html import render_html
from genflow.report.probe_plot import probe_curves
from genflow.report.stats import format_summary
from genflow.train import checkpoint
from genflow.train.checkpoint import read_log_csv

PROBE_PREFIX = "val_"  # the training log's probe columns (genflow.evaluate.probe.PREFIX)


def _training_logs(models_dir: Path, names: list[str]) -> dict[str, list[list[dict]]]:
    logs = {}
    for name in names:
        seeds = sorted((models_dir / name).glob("seed_*/train_log.csv"))
        logs[name] = [read_log_csv(path) for path in seeds]
    return logs


def draw_plots(block: DatasetBlock, models_dir: Path, plots_dir: Path) -> None:
    names = [name for name, _, _ in block.rows]
    panels = [(label, better, block.stats[key], block.reference_line(key))
              for key, _, label, better in block.columns if key in BAR_METRICS]
    ds = block.dataset if block.task == "generate" else f"{block.dataset}-{block.task}"
    if panels:
        dashed = "; ".join(dict.fromkeys(line[1] for *_, line in panels if line))
        block.plots.append((f"{block.title}: metrics, mean over seeds with 95 % CI" + (f"; dashed: {dashed}"
                                                                                       if dashed else ""),
                            report_plots.metric_bars(block.title, names, panels, plots_dir / f"{ds}-metrics.png")))
    if "precision" in block.stats and "recall" in block.stats:
        floor = (block.floors["precision"], block.floors["recall"]) if "precision" in block.floors \
            and "recall" in block.floors else None
        points = {n: (block.stats["precision"][n], block.stats["recall"][n]) for n in names}
        block.plots.append((f"{ds}: precision (fidelity) vs recall (diversity)", report_plots.precision_recall(
            ds, points, floor, plots_dir / f"{ds}-precision-recall.png")))
    if any(key == "probe_100pct" for key, *_ in block.columns):  # linear probes (#29)
        block.plots.append(probe_curves(block, plots_dir / f"{ds}-probes-linear.png"))
    curves = roc_curves(block)
    if curves:
        block.plots.append((f"{ds}: anomaly detection, held-out class vs the rest of the test split (ROC, TPR "
                            "averaged over seeds at each FPR)", report_plots.roc_curves(
                                f"{ds}: anomaly ROC", curves, plots_dir / f"{ds}-roc.png")))
    logs = _training_logs(models_dir, names)
    if any(any(seeds) for seeds in logs.values()):
        block.plots.append((f"{ds}: training losses (seed 0 solid, other seeds faint)", report_plots.training_curves(
            ds, logs, plots_dir / f"{ds}-training.png")))
    probes = {name: [[row for row in rows if any(k.startswith(PROBE_PREFIX) for k in row)] for rows in seeds]
              for name, seeds in logs.items()}
    probes = {name: seeds for name, seeds in probes.items() if any(seeds)}
    if probes:
        block.plots.append((f"{ds}: val probes during training (train.eval_every; seed 0 solid)",
                            report_plots.training_curves(f"{ds}: val probes", probes, plots_dir / f"{ds}-probes.png",
                                                         probes=True)))
        block.plots += sample_strips(probes, models_dir, plots_dir)


def sample_strips(probed: dict[str, Any], models_dir: Path, plots_dir: Path) -> list[tuple[str, Path]]:
    """Each probed model's sample strip over training (its first seed; fixed latents), from the
    samples its checkpoint kept at every probe."""
    out = []
    for name in probed:
        first = next(iter(sorted((models_dir / name).glob("seed_*"))), None)
        state, _, _ = checkpoint.load(first)
        monitor = state.get("monitor") or {}
        if not monitor.get("strip"):
            continue
        steps, png = monitor["strip_steps"], plots_dir / f"{name}-strip.png"
        with atomic_path(png) as tmp:
            save_strip(torch.stack(monitor["strip"]), steps, None, tmp, f"{name}: samples over training")
        out.append((f"{name} ({first.name}): samples from fixed latents at the probes, steps {steps[0]}..{steps[-1]}"
                    " (top to bottom / left to right)", png))
    return out


def roc_curves(block: DatasetBlock) -> dict[str, tuple[list[float], list[float], str]]:
    """{model: (FPR grid, TPR averaged over seeds, AUROC mean ± CI)} of the models evaluate wrote
    an ``anomaly_roc`` for: those with a ``holdout_class``."""
    curves = {}
    for name, _, metrics in block.rows:
        roc = metrics.get("anomaly_roc")
        if roc and roc["tpr"]:
            tpr = np.mean([seed_tpr for seed_tpr in roc["tpr"].values()], axis=0)
            curves[name] = (roc["fpr"], tpr.tolist(), format_summary(block.stats["anomaly_auroc"].get(name)))
    return curves


def sweep_plots(sweeps_dir: Path | None, plots_dir: Path) -> list[tuple[str, Path]]:
    """Every sweep's score distribution, and each sweep's own pictures: best score so far, then
    Optuna's plots of its study."""
    if sweeps_dir is None or not sweeps_dir.is_dir():
        return []
    from genflow.sweep.results import plot_scores, read_trials_for_plot

    found = read_trials_for_plot(sweeps_dir)
    if not found:
        return []
    with atomic_path(plots_dir / "sweeps.png") as tmp:
        plot_scores(found["by_sweep"], found["metric"], found["mode"], tmp)
    out = [("sweeps: final score of every trial (the spread is the hyperparameter sensitivity)",
            plots_dir / "sweeps.png")]
    for name in found["by_sweep"]:
        if (sweeps_dir / name / "best_so_far.png").exists():
            out.append((f"sweep {name}: best score so far", sweeps_dir / name / "best_so_far.png"))
        out += study_plots(sweeps_dir / name)
    return out


def study_plots(sweep_dir: Path) -> list[tuple[str, Path]]:
    """Optuna's plots of one sweep's study, as its ``optuna/plots.json`` lists them (a sweep
    written before they existed has none)."""
    from genflow.sweep.results import STUDY_PLOTS

    listing = sweep_dir / STUDY_PLOTS / "plots.json"
    if not listing.exists():
        return []
    drawn = json.loads(listing.read_text()).get("drawn", [])
    return [(f"sweep {sweep_dir.name} (Optuna): {plot['shows']}", sweep_dir / STUDY_PLOTS / plot["file"])
            for plot in drawn if (sweep_dir / STUDY_PLOTS / plot["file"]).exists()]


def protocol_lines(protocol: dict[str, Any] | None, blocks: list[DatasetBlock]) -> list[str]:
    if not protocol:
        return []
    budgets = "; ".join(f"{name}: {spec.train.steps} steps × batch {spec.train.batch_size}, seeds {spec.seeds}"
                        for b in blocks for name, spec, _ in b.rows)
    return [f"**Protocol.** {protocol['n_generated']} generated samples per model and seed, up to "
            f"{protocol.get('n_real', '?')} real samples of the `{protocol['reference_split']}` split, evaluation "
            f"seed {protocol['seed']}. FID, KID and precision / recall / density / coverage are measured in each "
            "dataset's feature space (a classifier trained on its training split; the 2-D mixtures use the points "
            "themselves). The *floor* row is the real-vs-real value: training rows scored as if they were samples, "
            "same counts, i.e. what a perfect model gets. A cell is the mean over seeds ± the 95 % CI (Student's t), "
            "#rank among the dataset's models, and p: Welch's two-sided t-test against the dataset's baseline on "
            "per-seed values (n/a with one seed).", "", f"**Training budget.** {budgets}.", ""]


def _png_link(picture: Path, samples_rel: Path) -> str:
    return f"[png]({(samples_rel / picture.name).as_posix()})" if picture.exists() else "–"


def gallery_links(gallery: Path, samples_rel: Path) -> str:
    """Links to the gallery's pictures that exist (genflow/evaluate/gallery.py)."""
    links = [f"[{label}]({(samples_rel / gallery.name / file).as_posix()})" for file, label, _ in PICTURES
             if (gallery / file).exists()]
    return " · ".join(links) or "–"


def markdown_table(block: DatasetBlock, samples_dir: Path, samples_rel: Path) -> list[str]:
    header = ["model", "family", "steps", "seeds"] + [label for _, _, label, _ in block.columns]
    header += ["samples", "interpolation", "pictures"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, spec, m in block.rows:
        cells = [name, spec.model + (" (cond.)" if getattr(spec, "c_dim", 0) else ""), str(spec.train.steps),
                 str(m.get("n_seeds", 1))] + [block.cell(key, name) for key, _, _, _ in block.columns]
        samples = samples_dir / f"{name}.png"
        links = [_png_link(samples, samples_rel), _png_link(interpolation_png(samples), samples_rel),
                 gallery_links(gallery_dir(samples), samples_rel)]
        lines.append("| " + " | ".join(cells + links) + " |")
    for label, values in block.references.items():
        cells = [label, "", "", ""] + [f"{values[k]:.4g}" if values.get(k) is not None else ""
                                       for k, _, _, _ in block.columns] + ["", "", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def feature_spaces(blocks: list[DatasetBlock], featurenet_root: Path) -> list[dict[str, str]]:
    rows = []
    for dataset in dict.fromkeys(block.dataset for block in blocks):  # a dataset's blocks share one space
        path = featurenet_root / dataset / "featurenet.json"
        if path.exists():
            meta = json.loads(path.read_text())
            rows.append({"dataset": dataset, "kind": meta["kind"],
                         "accuracy": f"{meta['test_accuracy']:.4f}" if "test_accuracy" in meta else "–",
                         "sha256": meta.get("sha256", "–")[:16]})
    return rows


def build_report(models: dict[str, Any], metrics_dir: str | Path, samples_dir: str | Path, out_dir: str | Path,
                 featurenet_root: str | Path = "models/featurenet", *, models_dir: str | Path | None = None,
                 sweeps_dir: str | Path | None = None, baselines: dict[str, str] | None = None) -> str:
    """Write ``out_dir/comparison.md``, ``comparison.html`` and ``plots/``; return the Markdown."""
    metrics_dir, samples_dir, out_dir = Path(metrics_dir), Path(samples_dir), Path(out_dir)
    blocks = load_blocks(models, metrics_dir, baselines or {})
    plots_dir = out_dir / "plots"
    for block in blocks:
        draw_plots(block, Path(models_dir) if models_dir else Path(featurenet_root).parent, plots_dir)
    sweeps = sweep_plots(Path(sweeps_dir) if sweeps_dir else None, plots_dir)
    protocol = next((m.get("protocol") for b in blocks for _, _, m in b.rows if m.get("protocol")), None)
    rel = Path("..") / samples_dir.name
    lines = ["# genflow model comparison", ""] + protocol_lines(protocol, blocks)
    for block in blocks:
        lines += [f"## {block.title} (baseline: {block.baseline_label})", ""]
        lines += [block.note, ""] if block.note else []
        lines += [f"- {line}" for line in block.summary_lines] + [""] if block.summary_lines else []
        lines += markdown_table(block, samples_dir, rel)
        lines += [f"![{caption}]({Path('plots') / png.name})" for caption, png in block.plots if png.parent ==
                  plots_dir] + [""]
    if sweeps:
        lines += ["## Sweeps", "", f"![{sweeps[0][0]}](plots/{sweeps[0][1].name})", ""]
        lines += [f"![{caption}]({Path(os.path.relpath(png, out_dir)).as_posix()})" for caption, png in sweeps[1:]]
        lines += [""] if len(sweeps) > 1 else []
    spaces = feature_spaces(blocks, Path(featurenet_root))
    lines += ["## Feature spaces", "", "| dataset | kind | test accuracy | weights sha256 |", "|---|---|---|---|"]
    lines += [f"| {r['dataset']} | {r['kind']} | {r['accuracy']} | {r['sha256']} |" for r in spaces] + [""]
    text = "\n".join(lines) + "\n"
    write_text(out_dir / "comparison.md", text)
    html = render_html(blocks, protocol_lines(protocol, blocks), sweeps, spaces, samples_dir)
    write_text(out_dir / "comparison.html", html)
    return text
