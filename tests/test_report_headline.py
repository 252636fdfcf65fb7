"""The report's headline metric per dataset and its training notes (#27), and a probed run
through evaluate, export and the report: selected on val, measured on test, said everywhere."""
from __future__ import annotations

import json

from genflow import config, launch
from genflow.evaluate.protocol import evaluate_model
from genflow.export.write import CARD_FILE, export_model
from genflow.metrics import catalog
from genflow.report.build import build_report
from genflow.report.headline import headline_ranking
from genflow.report.stats import summarize

from conftest import quiet, tiny_params_dict


def _stats(**models):
    """metric -> model -> Summary, from {model: {metric: [per-seed values]}}."""
    keys = {k for values in models.values() for k in values}
    return {k: {name: summarize(values[k]) for name, values in models.items() if k in values} for k in keys}


def test_mixtures_rank_by_modes_then_high_quality_not_fid():
    stats = _stats(uniform={"fid": [0.03], "modes": [25], "high_quality": [0.03]},
                   gan={"fid": [0.5], "modes": [24], "high_quality": [0.95]},
                   pac={"fid": [0.4], "modes": [25], "high_quality": [0.93]})
    assert headline_ranking(stats) == ("mixtures: modes, then high quality", ["pac", "uniform", "gan"])


def test_stacked_digits_rank_by_modes_then_kl_and_images_by_fid():
    stacked = _stats(a={"fid": [3.0], "modes": [990], "reverse_kl": [0.05]},
                     b={"fid": [1.0], "modes": [990], "reverse_kl": [0.2]})
    assert headline_ranking(stacked) == ("stacked digits: modes, then reverse KL", ["a", "b"])
    images = _stats(a={"fid": [9.0], "precision": [0.9]}, b={"fid": [4.0], "precision": [0.1]})
    assert headline_ranking(images) == ("images: FID", ["b", "a"])
    assert catalog.headline_order({"psnr"}) is None


def test_a_probed_run_is_selected_on_val_and_says_so_in_evaluate_export_and_report(prepared_dir, features_dir,
                                                                                   tmp_path):
    raw = tiny_params_dict()
    raw["ray"]["storage_path"] = str(tmp_path / "work")
    raw["models"]["gan_ring8"]["train"].update(eval_every=5, select="best")
    params = config.validate(raw)
    launch.train("gan_ring8", params, prepared_dir, tmp_path / "models" / "gan_ring8", featurenet_root=features_dir)
    metrics = evaluate_model(tmp_path / "models" / "gan_ring8", prepared_dir / "ring8", features_dir / "ring8",
                             params.evaluate, tmp_path / "metrics" / "gan_ring8.json",
                             tmp_path / "samples" / "gan_ring8.png", log=quiet)
    selection = metrics["protocol"]["selection"]
    assert selection["select"] == "best" and selection["selected_on"] == "val" and selection["measured_on"] == "test"
    best_step = selection["per_seed"]["0"]["best_step"]
    assert selection["per_seed"]["0"]["step"] == best_step and selection["per_seed"]["0"]["ranked_by"] == [
        "val_modes", "val_high_quality"]
    card = export_model(tmp_path / "models" / "gan_ring8", tmp_path / "export", log=quiet)
    assert card["selected"]["step"] == best_step
    assert json.loads((tmp_path / "export" / CARD_FILE).read_text())["selected"]["select"] == "best"
    text = build_report({"gan_ring8": params.models["gan_ring8"]}, tmp_path / "metrics", tmp_path / "samples",
                        tmp_path / "reports", features_dir, models_dir=tmp_path / "models")
    assert "**Headline: mixtures: modes, then high quality.** 1. `gan_ring8`" in text
    assert f"seed 0: best probe at step {best_step}" in text and "measured on test" in text
    assert (tmp_path / "reports" / "plots" / "ring8-probes.png").exists()
    assert (tmp_path / "reports" / "plots" / "gan_ring8-strip.png").exists()  # samples over training
    assert "best probe at step" in (tmp_path / "reports" / "comparison.html").read_text()


def test_training_notes_say_which_weights_and_any_early_stop_or_collapse():
    from genflow.report.headline import training_notes

    selection = {"select": "best", "selected_on": "val", "measured_on": "test", "eval_every": 200,
                 "per_seed": {"0": {"select": "best", "step": 1400, "on": "val", "best_step": 1400,
                                    "stopped_at": 2200, "collapsed_at": 1800}}}
    rows = [("gan_grid25", None, {"protocol": {"selection": selection}}), ("plain", None, {"protocol": {}})]
    [line] = training_notes(rows)
    assert line.startswith("`gan_grid25`: best probe's weights (probed on val every 200 steps, measured on test)")
    assert "seed 0: best probe at step 1400" in line and "stopped early at step 2200" in line
    assert "**collapsed at step 1800**" in line
