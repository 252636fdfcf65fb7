"""study.md: the study told so that it reads alone, from study.json's body.

Order: what was compared and with which budget, who won (and whether significantly), how the
best score grows with the search budget, how sensitive each model is to its hyperparameters,
what tuning changed against the hand-set configs, the final table, then the caveats.
"""
from __future__ import annotations

from typing import Any

from genflow.metrics import catalog
from genflow.report.stats import format_p


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def _mean_ci(body: dict[str, Any] | None) -> str:
    if body is None:
        return "not run"
    return _num(body["mean"]) if body["ci"] is None else f"{_num(body['mean'])} ± {body['ci']:.2g}"


def _by_name(study: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in study["models"]}


def _label(metric: str) -> str:
    entry = catalog.BY_NAME.get(metric)
    return entry.label if entry else metric


def _direction(mode: str) -> str:
    return "lower is better" if mode == "min" else "higher is better"


def header(study: dict[str, Any]) -> list[str]:
    b = study["budget"]
    ran = [r["model"] for r in study["tuned_vs_default"]["rows"] if r["default"] is not None]
    hand_set = ", and its hand-set one from params.yaml," if ran else ""
    if b["equal"]:
        budget = (f"**Budget**: the same for every model: {b['trials']} trials × {b['steps_per_trial']} training "
                  f"steps, search `{b['search']}`, scheduler `{b['scheduler']}`")
    else:
        budget = "**Budget**: **not the same for every model** (each model's is listed under Caveats)"
    seeds = f"{len(b['seeds'])} seeds ({', '.join(map(str, b['seeds']))})" if b["equal"] else "its seeds"
    return [f"# Study `{study['study']}`: {len(study['models'])} models on `{study['dataset']}`, tuned by "
            f"{study['metric']} ({_direction(study['mode'])})", "",
            f"{budget}; trials scored by {study['metric']} on the val split. Each model's best "
            f"configuration{hand_set} retrained over {seeds} and evaluated on the test split.", ""]


def verdict(study: dict[str, Any]) -> list[str]:
    final, metric = study["comparison"], study["metric"]
    winner = final["winner"]
    rows = [r for r in final["rows"] if r["metric"] == metric and r["model"] != winner]
    line = (f"**Winner: `{winner}`**, test {metric} {_mean_ci(study['tuned'][winner])} (mean ± 95 % CI over "
            f"{study['tuned'][winner]['n']} seed{'s' if study['tuned'][winner]['n'] > 1 else ''}).")
    if rows:
        beaten = [f"`{r['model']}`" for r in rows if r["significant"]]
        tied = [f"`{r['model']}`" for r in rows if not r["significant"]]
        if beaten:
            line += f" Significantly better than {', '.join(beaten)} (Holm-adjusted p < {final['alpha']})"
            line += f"; not distinguishable from {', '.join(tied)}." if tied else "."
        else:
            line += f" Not significantly better than any other model after Holm's correction (p ≥ {final['alpha']})."
    return [line, ""]


def expected_best(study: dict[str, Any]) -> list[str]:
    lines = ["## Expected best score vs number of trials (Dodge et al. 2019)", "",
             f"The expected best val {study['metric']} had the search stopped after n trials, computed exactly "
             "from the trials' scores; in brackets its "
             f"{study['protocol']['band']['level'] * 100:.0f} % bootstrap band over resamples of the trials.", "",
             "| model | trials scored | n = 1 (the mean) | n = N/2 | n = N | best trial |", "|---|---|---|---|---|---|"]
    for name, m in _by_name(study).items():
        n = m["scored"]
        cells = []
        for k in (1, max(1, n // 2), n):
            cells.append(f"{_num(m['expected_best'][k - 1])} [{_num(m['band']['lower'][k - 1])}, "
                         f"{_num(m['band']['upper'][k - 1])}] (n={k})")
        lines.append(f"| `{name}` | {n} of {m['trials']} | " + " | ".join(cells) + f" | {_num(m['spread']['best'])} |")
    return lines + ["", "![expected best score vs trials](expected_best.png)", ""]


def _sensitivity_key(spread: dict[str, Any], name: str) -> tuple:
    relative_iqr = spread["iqr"] / abs(spread["median"]) if spread["median"] else float("inf")
    return spread["near_best_share"], -relative_iqr, name


def _by_family(models: dict[str, dict[str, Any]]) -> str:
    shares: dict[str, list[float]] = {}
    for m in models.values():
        shares.setdefault(m["family"], []).append(m["spread"]["near_best_share"])
    return "Share of trials within 10 % of the best, averaged per family: " + ", ".join(
        f"{family} {100 * sum(v) / len(v):.0f} % ({len(v)} model{'s' if len(v) > 1 else ''})"
        for family, v in sorted(shares.items())) + "."


def sensitivity(study: dict[str, Any]) -> list[str]:
    lines = ["## Sensitivity: scores over the search space (Lucic et al. 2018)", "",
             f"Every trial's val {study['metric']}. A model whose good settings are rare (few trials within "
             f"{study['protocol']['near_best'] * 100:.0f} % of its best, a wide interquartile range) is sensitive to "
             "its hyperparameters: a hand-picked setting says little about it.", "",
             "| model | family | median | IQR (25 %–75 %) | within 10 % of the best | best |",
             "|---|---|---|---|---|---|"]
    for name, m in _by_name(study).items():
        s = m["spread"]
        quartiles = f"{_num(s['iqr'])} ({_num(s['q25'])}–{_num(s['q75'])})"
        lines.append(f"| `{name}` | {m['family']} | {_num(s['median'])} | {quartiles} | "
                     f"{s['near_best_share'] * 100:.0f} % | {_num(s['best'])} |")
    models = _by_name(study)
    most = min(models, key=lambda n: _sensitivity_key(models[n]["spread"], n))
    share = models[most]["spread"]["near_best_share"]
    return lines + ["", f"Most sensitive by this measure: `{most}` ({share * 100:.0f} % of its trials near its best; "
                        "a tie goes to the wider IQR relative to the median). " + _by_family(models),
                    "", "![trial scores per model](sensitivity.png)", ""]


def tuned_vs_default(study: dict[str, Any]) -> list[str]:
    tvd = study["tuned_vs_default"]
    lines = ["## Tuned vs hand-set", "",
             f"Test {study['metric']}, mean ± 95 % CI over the seeds; p: Welch's test, tuned against hand-set "
             "(Holm over the models).", "",
             "| model | hand-set | tuned | p | p (Holm) | tuning |", "|---|---|---|---|---|---|"]
    for r in tvd["rows"]:
        change = ("–" if r["tuned_better"] is None else
                  ("better" if r["tuned_better"] else "worse") + (" (significant)" if r["significant"] else ""))
        lines.append(f"| `{r['model']}` | {_mean_ci(r['default'])} | {_mean_ci(r['tuned'])} | {format_p(r['p'])} | "
                     f"{format_p(r['p_holm'])} | {change} |")
    rank = tvd["ranking"]
    if rank["changed"] is None:
        lines += ["", "Fewer than two models have a hand-set run: no ranking to compare."]
    else:
        order = " > ".join(f"`{m}`" for m in rank["default"]), " > ".join(f"`{m}`" for m in rank["tuned"])
        lines += ["", f"Ranking of the hand-set roster: {order[0]}; after equal tuning: {order[1]} — "
                      + ("**the ranking changed**." if rank["changed"] else "the ranking survives tuning.")]
    lines += ["", "The tuned configs (each sweep's best val trial):", ""]
    for m in study["models"]:
        overrides = m.get("best_overrides") or {}
        values = ", ".join(f"`{k}` = {_value(v)}" for k, v in sorted(overrides.items())) or "–"
        lines.append(f"- `{m['name']}` ({m['best_trial']}): {values}")
    return lines + ["", "![hand-set vs tuned](tuned_vs_default.png)", ""]


def _value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def final_table(study: dict[str, Any]) -> list[str]:
    final = study["comparison"]
    lines = ["## Final comparison: the tuned configs retrained", "",
             f"Every headline metric of the winner `{final['winner']}` on the test split, mean ± 95 % CI over "
             f"seeds. p: {final['test']}; adjusted over all {sum(r['p'] is not None for r in final['rows'])} "
             f"(model, metric) tests by Holm (family-wise) and Benjamini–Hochberg (false discovery rate); "
             f"**bold**: Holm-adjusted p < {final['alpha']}.", "",
             "| metric | model | mean ± CI | seeds | p vs winner | p (Holm) | p (BH) |",
             "|---|---|---|---|---|---|---|"]
    for r in final["rows"]:
        holm = format_p(r.get("p_holm")) if r["model"] != final["winner"] else "(winner)"
        if r.get("significant"):
            holm = f"**{holm}**"
        lines.append(f"| {_label(r['metric'])} | `{r['model']}` | {_mean_ci(r)} | {r['n']} | {format_p(r['p'])} | "
                     f"{holm} | {format_p(r.get('p_bh'))} |")
    return lines + ["", "![the retrained winners on test](comparison.png)", ""]


def render(study: dict[str, Any]) -> str:
    p = study["provenance"]
    lines = (header(study) + verdict(study) + expected_best(study) + sensitivity(study) + tuned_vs_default(study)
             + final_table(study) + ["## Caveats", ""] + [f"- {c}" for c in study["caveats"]]
             + ["", f"Code revision `{p.get('code_revision')}`"
                    + (f", params fingerprint `{p['params_fingerprint']}`" if p.get("params_fingerprint") else "")
                    + "; every number is in study.json.", ""])
    return "\n".join(lines)
