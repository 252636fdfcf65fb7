"""bf16 against fp32 on quality: the same models and seeds, trained once in each precision.

Reads two copies of the evaluate stage's outputs (``metrics/<model>.details.json``), one from a
pipeline run with the models in fp32 and one with them in bf16 (same code, data and seeds;
only ``train.precision`` differs), and writes a table: each model's headline metrics as mean ±
95 % CI over its seeds (genflow/report/stats.py, as the report computes them), the Welch
p-value of the difference, and whether the bf16 mean lies within fp32's CI.

    .venv/bin/python bench/precision_quality.py FP32_METRICS_DIR BF16_METRICS_DIR [--models ...]

Writes bench/results/precision_quality.json and prints the markdown table.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genflow.metrics import catalog  # noqa: E402
from genflow.report.stats import format_p, format_summary, per_seed_values, summarize, welch_p  # noqa: E402

METRICS = tuple(m.name for m in catalog.METRICS if m.headline)  # what the report compares models by


def compare(fp32: dict, bf16: dict, metric: str) -> dict | None:
    a, b = summarize(per_seed_values(fp32, metric)), summarize(per_seed_values(bf16, metric))
    if a is None or b is None:
        return None
    return {"fp32": format_summary(a), "bf16": format_summary(b), "welch_p": format_p(welch_p(a, b)),
            "bf16_mean_within_fp32_ci": a.ci is not None and abs(b.mean - a.mean) <= a.ci,
            "fp32_per_seed": per_seed_values(fp32, metric), "bf16_per_seed": per_seed_values(bf16, metric)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fp32_dir", type=Path)
    parser.add_argument("bf16_dir", type=Path)
    parser.add_argument("--models", nargs="*")
    args = parser.parse_args()
    names = args.models or sorted(p.name.removesuffix(".details.json") for p in args.bf16_dir.glob("*.details.json"))
    rows = {}
    for name in names:
        fp32 = json.loads((args.fp32_dir / f"{name}.details.json").read_text())
        bf16 = json.loads((args.bf16_dir / f"{name}.details.json").read_text())
        rows[name] = {m: found for m in METRICS if (found := compare(fp32, bf16, m)) is not None}
    print("| model | metric | fp32 (mean ± 95 % CI) | bf16 | Welch p | bf16 within fp32's CI |")
    print("|---|---|---|---|---|---|")
    for name, metrics in rows.items():
        for metric, row in metrics.items():
            label = catalog.BY_NAME[metric].label if metric in catalog.BY_NAME else metric
            print(f"| {name} | {label} | {row['fp32']} | {row['bf16']} | {row['welch_p']} | "
                  f"{'yes' if row['bf16_mean_within_fp32_ci'] else '**no**'} |")
    out = ROOT / "bench" / "results" / "precision_quality.json"
    out.write_text(json.dumps({"fp32_dir": str(args.fp32_dir), "bf16_dir": str(args.bf16_dir), "rows": rows},
                              indent=2) + "\n")


if __name__ == "__main__":
    main()
