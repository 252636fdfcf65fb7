"""The study report on real inputs: trials.parquet written by the sweep's own trials_table, a
summary.json with the keys the sweep writes, and details.json files written by the evaluate
stage on tiny models trained over two seeds. The numbers in study.json are checked against the
analysis functions and against Welch's test and Holm's adjustment computed by hand."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy import stats

from genflow import config, launch
from genflow.errors import GenflowError
from genflow.evaluate.protocol import evaluate_model
from genflow.metrics.catalog import BY_NAME
from genflow.report.stats import per_seed_values
from genflow.study.analysis import bootstrap_band, expected_best_curve
from genflow.study.report import PICTURES, ModelResult, write_study_report
from genflow.sweep.results import trials_table

from conftest import quiet, tiny_params_dict

PNG = b"\x89PNG\r\n\x1a\n"
# two seeds of a tiny model can score (nearly) the same on a metric: scipy says its t is imprecise
pytestmark = pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")
STEPS = 40


def trial_records(scores: list[float | None], stopped: set[int] = frozenset()) -> list[dict]:
    """Plain trial records as genflow.integrations.tune_ledger makes them (None: a failed trial)."""
    records = []
    for i, value in enumerate(scores):
        status = "failed" if value is None else "stopped" if i in stopped else "complete"
        steps = STEPS // 2 if status == "stopped" else STEPS
        records.append({"trial_id": f"t{i:03d}", "number": i + 1, "status": status,
                        "reason": "asha" if status == "stopped" else "", "steps": steps, "value": value,
                        "best": value, "history_step": [] if value is None else [steps],
                        "history_value": [] if value is None else [value], "wall_s": 1.5, "cpus": 1.0,
                        "workers": 0, "finished_order": i + 1, "runs": [1],
                        "config": {"train.lr_g": 1e-4 * (i + 1), "width": 8}})
    return records


def write_sweep(folder: Path, model: str, scores: list, stopped=frozenset(), search="random",
                scheduler="fifo", metric="fid") -> tuple[Path, Path]:
    """trials.parquet (trials_table) and summary.json with the keys write_outputs writes."""
    folder.mkdir(parents=True)
    records = trial_records(scores, set(stopped))
    pq.write_table(trials_table(records, ["train.lr_g", "width"], metric), folder / "trials.parquet")
    scored = [r for r in records if r["value"] is not None]
    best = min(scored, key=lambda r: r["value"], default={"value": None, "trial_id": None, "config": None})
    summary = {"sweep": f"study-{model}", "model": model, "metric": metric, "mode": "min", "trials": len(records),
               "complete": sum(r["status"] == "complete" for r in records),
               "stopped": sum(r["status"] == "stopped" for r in records),
               "failed": sum(r["status"] == "failed" for r in records), "best_value": best["value"],
               "best_trial": best["trial_id"], "best_overrides": best["config"],
               "training_steps": sum(r["steps"] for r in records), "wall_s_sum": 1.5 * len(records),
               "search": search, "scheduler": scheduler, "asha_stopped": "pruned", "code_revision": "test",
               "params_fingerprint": "test"}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder / "trials.parquet", folder / "summary.json"


@pytest.fixture(scope="module")
def details(prepared_dir, features_dir, tmp_path_factory) -> dict[str, Path]:
    """Real details.json files: the digits GAN tuned and hand-set, the digits VAE tuned; seeds 0 and 1."""
    root = tmp_path_factory.mktemp("study-details")
    raw = tiny_params_dict()
    gan, vae = raw["models"]["gan_digits"], raw["models"]["vae_digits"]
    raw["models"] = {"gan_tuned": {**gan, "seeds": [0, 1], "train": {**gan["train"], "lr_g": 1e-3, "lr_d": 1e-3}},
                     "gan_default": {**gan, "seeds": [0, 1]}, "vae_tuned": {**vae, "seeds": [0, 1]}}
    raw["ray"]["storage_path"] = str(root / "work")
    params = config.validate(raw)
    out = {}
    for name in params.models:
        launch.train(name, params, prepared_dir, root / "models" / name)
        evaluate_model(root / "models" / name, prepared_dir / "digits", features_dir / "digits", params.evaluate,
                       root / "metrics" / f"{name}.json", root / "samples" / f"{name}.png", log=quiet)
        out[name] = root / "metrics" / f"{name}.details.json"
    return out


def welch_by_hand(a: list[float], b: list[float]) -> float:
    """Two-sided Welch p: t over the unpooled standard error, Welch–Satterthwaite degrees of freedom.
    Two constant sides have no t: 1 if they are equal, else 0 (genflow.report.stats' convention)."""
    if len(set(a)) == 1 and len(set(b)) == 1:
        return 1.0 if a[0] == b[0] else 0.0
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    t = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return float(2 * stats.t.sf(abs(t), df))


GAN_SCORES = [41.0, 12.5, 30.0, None, 18.0, 55.0, 13.5, 22.0]
VAE_SCORES = [25.0, 24.0, 26.5, 23.0, 27.0, 24.5, 25.5, 28.0]


@pytest.fixture(scope="module")
def study(details, tmp_path_factory) -> tuple[dict, Path]:
    root = tmp_path_factory.mktemp("study")
    gan = write_sweep(root / "sweeps" / "gan", "gan_digits", GAN_SCORES)
    vae = write_sweep(root / "sweeps" / "vae", "vae_digits", VAE_SCORES)
    models = [ModelResult("gan_digits", "gan", *gan, details["gan_tuned"], details["gan_default"]),
              ModelResult("vae_digits", "vae", *vae, details["vae_tuned"], None)]
    body = write_study_report("digits-losses", "digits", "fid", "min", models, root / "out",
                              {"params_fingerprint": "f00d"})
    return body, root / "out"


def test_expected_best_and_spread_are_analysis_figures(study):
    body, out = study
    assert json.loads((out / "study.json").read_text()) == body
    assert [m["name"] for m in body["models"]] == ["gan_digits", "vae_digits"]
    gan, vae = body["models"]
    scored = [s for s in GAN_SCORES if s is not None]  # the failed trial is left out
    assert gan["scores"] == scored and (gan["trials"], gan["scored"], gan["failed"]) == (8, 7, 1)
    assert np.allclose(gan["expected_best"], expected_best_curve(scored, "min"))
    lower, upper = bootstrap_band(scored, "min", reps=1000, seed=0, level=0.95)
    assert np.allclose(gan["band"]["lower"], lower) and np.allclose(gan["band"]["upper"], upper)
    assert gan["expected_best"][0] == pytest.approx(np.mean(scored)) and gan["spread"]["best"] == 12.5
    assert gan["spread"]["near_best_share"] == pytest.approx(2 / 7)  # 12.5 and 13.5 are within 10 % of 12.5
    assert vae["spread"]["near_best_share"] == pytest.approx(4 / 8)  # 23 .. 25.3
    budget = {k: body["budget"][k] for k in ("trials", "steps_per_trial", "search", "scheduler", "seeds", "equal")}
    assert budget == {"trials": 8, "steps_per_trial": STEPS, "search": "random", "scheduler": "fifo",
                      "seeds": [0, 1], "equal": True}
    assert set(body["provenance"]["inputs"]["vae_digits"]) == {"trials", "summary", "tuned", "default"}
    assert body["provenance"]["inputs"]["vae_digits"]["default"] is None and body["provenance"]["params_fingerprint"]


def test_comparison_is_welch_against_the_winner_with_holm_by_hand(study, details):
    body, _ = study
    raw = {name: json.loads(path.read_text()) for name, path in details.items()}
    fid = {"gan_digits": per_seed_values(raw["gan_tuned"], "fid"),
           "vae_digits": per_seed_values(raw["vae_tuned"], "fid")}
    assert all(len(v) == 2 for v in fid.values())
    winner = min(fid, key=lambda m: np.mean(fid[m]))
    loser = "vae_digits" if winner == "gan_digits" else "gan_digits"
    final = body["comparison"]
    assert final["winner"] == winner and final["order"] == [winner, loser]
    assert final["metrics"][0] == "fid" and {"precision", "recall", "coverage"} <= set(final["metrics"])
    tests = [r for r in final["rows"] if r["model"] == loser]
    expected_p = []
    for row in tests:
        a = per_seed_values(raw["gan_tuned" if loser == "gan_digits" else "vae_tuned"], row["metric"])
        b = per_seed_values(raw["gan_tuned" if winner == "gan_digits" else "vae_tuned"], row["metric"])
        expected_p.append(welch_by_hand(a, b))
        assert row["mean"] == pytest.approx(np.mean(a)) and row["p"] == pytest.approx(expected_p[-1], rel=1e-9)
    # Holm: the j-th smallest of m p-values times (m - j + 1), running maximum, at most 1
    order, m, running = np.argsort(expected_p), len(expected_p), 0.0
    for j, index in enumerate(order):
        running = max(running, min(1.0, (m - j) * expected_p[index]))
        assert tests[index]["p_holm"] == pytest.approx(running, rel=1e-9)
        assert tests[index]["significant"] == (running < 0.05)
    assert all(r["p"] is None for r in final["rows"] if r["model"] == winner)


def test_tuned_vs_default_and_the_markdown(study, details):
    body, out = study
    raw_default = json.loads(details["gan_default"].read_text())
    rows = {r["model"]: r for r in body["tuned_vs_default"]["rows"]}
    assert rows["gan_digits"]["default"]["values"] == per_seed_values(raw_default, "fid")
    assert rows["vae_digits"]["default"] is None and rows["vae_digits"]["p"] is None
    assert body["tuned_vs_default"]["ranking"]["changed"] is None  # one hand-set run: nothing to rank
    md = (out / "study.md").read_text()
    winner = body["comparison"]["winner"]
    tuned = body["tuned"][winner]
    assert "tuned by fid (lower is better)" in md
    assert "the same for every model: 8 trials × 40 training steps, search `random`, scheduler `fifo`" in md
    assert "2 seeds (0, 1)" in md
    assert f"**Winner: `{winner}`**, test fid {tuned['mean']:.4g} ± {tuned['ci']:.2g}" in md
    assert "no score is from an early-stopped trial" in md and "f00d" in md
    assert "| `gan_digits` | 7 of 8 |" in md and "| `vae_digits` | not run |" in md
    assert "| `gan_digits` | gan | 22 | 19.75 (15.75–35.5) | 29 % | 12.5 |" in md  # Lucic's spread, by hand
    assert "Most sensitive by this measure: `gan_digits`" in md and "gan 29 % (1 model), vae 50 % (1 model)" in md
    assert "Only 2 seeds per retrained model" in md
    assert "- `gan_digits` (t001): `train.lr_g` = 0.0002, `width` = 8" in md  # the best trial, 12.5


def test_every_picture_is_a_png_and_reproducible(study, details, tmp_path):
    body, out = study
    assert body["pictures"] == list(PICTURES)
    for picture in PICTURES:
        assert (out / picture).read_bytes()[:8] == PNG and f"]({picture})" in (out / "study.md").read_text()
    gan = write_sweep(tmp_path / "gan", "gan_digits", GAN_SCORES)
    vae = write_sweep(tmp_path / "vae", "vae_digits", VAE_SCORES)
    again = write_study_report("digits-losses", "digits", "fid", "min", [
        ModelResult("gan_digits", "gan", *gan, details["gan_tuned"], details["gan_default"]),
        ModelResult("vae_digits", "vae", *vae, details["vae_tuned"], None)], tmp_path / "out",
        {"params_fingerprint": "f00d"})
    assert again == body  # the same inputs (by content) give the same study.json ...
    for name in (*PICTURES, "study.md", "study.json"):  # ... and the same bytes
        assert (tmp_path / "out" / name).read_bytes() == (out / name).read_bytes(), name


def with_values(template: Path, values: dict[str, list[float]], path: Path) -> Path:
    """A copy of a real details.json whose seeds hold ``values`` (metric -> one value per seed)."""
    body = json.loads(template.read_text())
    for metric in BY_NAME:  # the template's own means would stand in for a metric without per-seed values
        body.pop(metric, None), body.pop(f"{metric}_std", None)
    seeds = [str(s) for s in range(len(next(iter(values.values()))))]
    body["per_seed"] = {s: {k: v[i] for k, v in values.items()} for i, s in enumerate(seeds)}
    body.update({k: float(np.mean(v)) for k, v in values.items()})
    body["n_seeds"], body["protocol"]["seeds"] = len(seeds), [int(s) for s in seeds]
    path.write_text(json.dumps(body))
    return path


TUNED = {"a": {"fid": [10.0, 11.0, 12.0], "precision": [0.60, 0.62, 0.64]},
         "b": {"fid": [14.0, 15.0, 17.0], "precision": [0.55, 0.60, 0.62]},
         "c": {"fid": [11.0, 13.0, 12.5], "precision": [0.70, 0.72, 0.71]}}
DEFAULT = {"a": [20.0, 21.0, 22.0], "b": [16.0, 17.0, 18.0], "c": [19.0, 19.5, 20.0]}


@pytest.fixture
def three_models(details, tmp_path) -> list[ModelResult]:
    """Three models with chosen per-seed values; c searched by TPE under ASHA, which stopped 2 trials."""
    models = []
    for name in TUNED:
        tpe = name == "c"
        sweep = write_sweep(tmp_path / name, name, [20.0 + i + (name == "b") for i in range(6)],
                            stopped={1, 4} if tpe else set(), search="tpe" if tpe else "random",
                            scheduler="asha" if tpe else "fifo")
        tuned = with_values(details["gan_tuned"], TUNED[name], tmp_path / f"{name}.tuned.json")
        default = with_values(details["gan_default"], {"fid": DEFAULT[name]}, tmp_path / f"{name}.default.json")
        models.append(ModelResult(name, "gan", *sweep, tuned, default))
    return models


def test_three_models_known_p_values_holm_bh_and_a_changed_ranking(three_models, tmp_path):
    body = write_study_report("s", "digits", "fid", "min", three_models, tmp_path / "out", {})
    final = body["comparison"]
    assert final["winner"] == "a" and final["order"] == ["a", "c", "b"] and final["metrics"] == ["fid", "precision"]
    got = {(r["model"], r["metric"]): r for r in final["rows"] if r["model"] != "a"}
    # Welch p by hand (welch_by_hand); Holm: sorted 0.006458 (c, precision) x4, 0.019855 (b, fid) x3,
    # 0.234209 (c, fid) x2, 0.293483 (b, precision) x1, then the running maximum; BH: x4/j, running
    # minimum from the top
    expected = {("c", "precision"): (0.006457589, 0.025830357, 0.025830357),
                ("b", "fid"): (0.019855118, 0.059565353, 0.039710235),
                ("c", "fid"): (0.234208523, 0.468417046, 0.293483398),
                ("b", "precision"): (0.293483398, 0.468417046, 0.293483398)}
    for key, (p, p_holm, p_bh) in expected.items():
        a, b = TUNED[key[0]][key[1]], TUNED["a"][key[1]]
        assert welch_by_hand(a, b) == pytest.approx(p, abs=1e-9)
        assert (got[key]["p"], got[key]["p_holm"], got[key]["p_bh"]) == pytest.approx((p, p_holm, p_bh), abs=1e-8)
    assert [k for k, r in got.items() if r["significant"]] == [("c", "precision")]
    ranking = body["tuned_vs_default"]["ranking"]
    assert ranking == {"default": ["b", "c", "a"], "tuned": ["a", "c", "b"], "changed": True}
    md = (tmp_path / "out" / "study.md").read_text()
    assert "Not significantly better than any other model after Holm's correction" in md
    assert "**not the same for every model**" in md and "**the ranking changed**" in md and "| precision ↑ | `c` | 0.71 ± 0.025 | 3 | 0.006 | **0.026** |" in md
    caveats = " ".join(body["caveats"])
    assert "did not have the same budget" in caveats and "ASHA stopped trials early (`c` 2 of 6)" in caveats
    assert "`c`: searched with TPE" in caveats
    assert "seeds per retrained model" not in caveats  # three seeds: no power caveat


def test_bad_inputs_name_the_file(three_models, tmp_path):
    a = three_models[0]
    with pytest.raises(GenflowError, match=r"summary.json: the sweep tuned fid \(min\), the study compares modes"):
        write_study_report("s", "digits", "modes", "max", [a], tmp_path / "o1", {})
    with pytest.raises(GenflowError, match="higher is better, so its mode is max"):
        write_study_report("s", "digits", "modes", "min", [a], tmp_path / "o2", {})
    missing = ModelResult("a", "gan", a.trials, a.summary, tmp_path / "nope.details.json", None)
    with pytest.raises(GenflowError, match="nope.details.json: not found"):
        write_study_report("s", "digits", "fid", "min", [missing], tmp_path / "o3", {})
    no_fid = with_values(a.tuned, {"precision": [0.5, 0.6]}, tmp_path / "no_fid.json")
    with pytest.raises(GenflowError, match="no_fid.json: no fid value for any seed"):
        write_study_report("s", "digits", "fid", "min", [ModelResult("a", "gan", a.trials, a.summary, no_fid, None)],
                           tmp_path / "o4", {})
    with pytest.raises(GenflowError, match="each once"):
        write_study_report("s", "digits", "fid", "min", [a, a], tmp_path / "o5", {})
    failed = write_sweep(tmp_path / "failed", "a", [None, None])
    with pytest.raises(GenflowError, match="none of its 2 trials has a fid score"):
        write_study_report("s", "digits", "fid", "min", [ModelResult("a", "gan", *failed, a.tuned, None)],
                           tmp_path / "o6", {})


def test_one_model_one_seed_no_hand_set_run(details, tmp_path):
    """The smallest study: nothing to test or rank, and the report says so instead of failing."""
    sweep = write_sweep(tmp_path / "a", "a", [3.0, 2.0, None, 4.0])
    tuned = with_values(details["gan_tuned"], {"fid": [2.5]}, tmp_path / "a.json")
    body = write_study_report("s", "digits", "fid", "min", [ModelResult("a", "gan", *sweep, tuned, None)],
                              tmp_path / "out", {})
    assert body["comparison"]["winner"] == "a" and all(r["p"] is None for r in body["comparison"]["rows"])
    # scores 2, 3, 4: the best of n is 2 with probability 1 - (2/3)^n, 4 with (1/3)^n, else 3
    expected = [3.0, (2 * 5 + 3 * 3 + 4) / 9, (2 * 19 + 3 * 7 + 4) / 27]
    assert body["models"][0]["expected_best"] == pytest.approx(expected)
    md = (tmp_path / "out" / "study.md").read_text()
    assert "**Winner: `a`**, test fid 2.5 (mean ± 95 % CI over 1 seed)." in md
    assert "hand-set one" not in md and "Only 1 seed per retrained model" in md
    assert "Fewer than two models have a hand-set run" in md
    assert all((tmp_path / "out" / picture).read_bytes()[:8] == PNG for picture in PICTURES)
