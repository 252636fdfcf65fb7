"""The README's report picture: genflow's report on the 5-seed grid25 study (docs/results).

The default pipeline trains one seed per model, so its report has no intervals yet; the
mode-coverage study (GAN, GAN + minibatch std, PacGAN4 on grid25, seeds 0-4; see
docs/results/README.md) has five, and shows what the report's CIs and tests look like.

Writes docs/results/grid25-5seeds-report/ and docs/images/report-grid25-metrics.png.
    .venv/bin/python bench/report_study_figure.py
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genflow import config  # noqa: E402
from genflow.report.build import build_report  # noqa: E402

MODELS = ("gan_grid25", "mbstd_gan_grid25", "pacgan_grid25")


def main() -> None:
    seeds = [f"models.{m}.seeds=[0,1,2,3,4]" for m in MODELS]
    params = config.load(ROOT / "params.yaml", seeds)
    models = {name: params.models[name] for name in MODELS}
    out = ROOT / "docs" / "results" / "grid25-5seeds-report"
    build_report(models, ROOT / "docs" / "results", ROOT / "docs" / "results" / "no-samples", out,
                 ROOT / "models" / "featurenet", models_dir=ROOT / "docs" / "results" / "no-logs",
                 baselines={"grid25": "gan_grid25"})
    image = ROOT / "docs" / "images" / "report-grid25-metrics.png"
    image.parent.mkdir(exist_ok=True)
    shutil.copyfile(out / "plots" / "grid25-metrics.png", image)
    print(f"wrote {out} and {image}")


if __name__ == "__main__":
    main()
