"""The Markdown table of docs/results/mixtures.md: presets/mixtures' measured rows beside PacGAN's
Table 1 (Lin et al. 2018, 10 trials, mean ± standard error), from each model's
metrics/<model>.details.json (every seed's values):

    python bench/mixtures_table.py presets/mixtures/metrics

Mean ± the 95 % CI half-width over seeds (Student's t), then every seed's value.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

# Table 1 of the paper (NeurIPS 2018 version): modes, high quality %, reverse KL
PAPER = {
    ("ring", 1): (6.3, 0.5, 98.2, 0.2, 0.45, 0.09), ("ring", 2): (7.9, 0.1, 95.6, 2.0, 0.07, 0.03),
    ("ring", 3): (7.8, 0.1, 97.7, 0.3, 0.10, 0.02), ("ring", 4): (7.8, 0.1, 95.9, 1.4, 0.07, 0.02),
    ("grid", 1): (17.3, 0.8, 94.8, 0.7, 0.70, 0.07), ("grid", 2): (23.8, 0.7, 91.3, 0.8, 0.13, 0.04),
    ("grid", 3): (24.6, 0.4, 94.2, 0.4, 0.06, 0.02), ("grid", 4): (24.8, 0.2, 93.6, 0.6, 0.04, 0.01),
}
ROWS = [(f"{'gan' if pac == 1 else f'pacgan{pac}'}_{ds}", ds, pac) for ds in ("ring", "grid") for pac in (1, 2, 3, 4)]


def ci(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
    return float(v.mean()), float(half)


def per_seed(details: dict, key: str) -> list[float]:
    seeds = details["per_seed"]
    return [float(seeds[s][key]) for s in sorted(seeds, key=int)]


def row(metrics: Path, name: str, ds: str, pac: int) -> str:
    label = "GAN" if pac == 1 else f"PacGAN{pac}"
    p = PAPER[(ds, pac)]
    paper = f"{p[0]} ± {p[1]} / {p[2]} ± {p[3]} % / {p[4]} ± {p[5]}"
    path = metrics / f"{name}.details.json"
    if not path.is_file():
        return f"| {ds} | {label} | not measured | | | {paper} |"
    details = json.loads(path.read_text())
    modes, hq, kl = per_seed(details, "modes"), per_seed(details, "high_quality"), per_seed(details, "reverse_kl")
    (m, mh), (q, qh), (k, kh) = ci(modes), ci([100 * x for x in hq]), ci(kl)
    seeds = ", ".join(f"{int(a)}/{100 * b:.1f}" for a, b in zip(modes, hq))
    return (f"| {ds} | {label} | {m:.1f} ± {mh:.1f} / {q:.1f} ± {qh:.1f} % / {k:.2f} ± {kh:.2f} | {len(modes)} | "
            f"{seeds} | {paper} |")


def main() -> None:
    metrics = Path(sys.argv[1])
    print("| data | model | ours: modes / high quality / reverse KL (mean ± 95 % CI) | seeds | per seed "
          "(modes/HQ %) | paper (10 trials, ± s.e.) |")
    print("|---|---|---|---|---|---|")
    for name, ds, pac in ROWS:
        print(row(metrics, name, ds, pac))


if __name__ == "__main__":
    main()
