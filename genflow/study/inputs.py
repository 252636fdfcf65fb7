"""What the study report reads, checked: each model's sweep (trials.parquet and summary.json,
genflow.sweep.results' outputs) and the evaluate stage's details.json of its retrained configs.

A bad or missing input is a GenflowError naming the file, so the stage exits 2 with a
message instead of a traceback (genflow.cli)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from genflow.errors import GenflowError
from genflow.report.stats import Summary, per_seed_values, summarize


@dataclass(frozen=True)
class Trials:
    """The scored trials of one sweep (failed ones and those without a score left out)."""
    scores: tuple[float, ...]
    statuses: tuple[str, ...]   # complete | stopped (ASHA: scored at fewer steps)
    steps: tuple[int, ...]      # steps each scored trial trained
    total: int                  # every trial of the sweep, failed ones too


def read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise GenflowError(f"{path}: not found ({what})")
    try:
        body = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise GenflowError(f"{path}: not JSON ({what}): {error}") from None
    if not isinstance(body, dict):
        raise GenflowError(f"{path}: not a JSON object ({what})")
    return body


def read_summary(path: Path, metric: str, mode: str) -> dict[str, Any]:
    """A sweep's summary.json, checked to have tuned ``metric`` in direction ``mode``."""
    summary = read_json(path, "a sweep's summary.json")
    for key in ("metric", "mode", "trials", "search", "scheduler"):
        if key not in summary:
            raise GenflowError(f"{path}: no {key!r} (not a genflow sweep summary.json)")
    if summary["metric"] != metric or summary["mode"] != mode:
        raise GenflowError(f"{path}: the sweep tuned {summary['metric']} ({summary['mode']}), the study compares "
                           f"{metric} ({mode}): one metric for every model of a study")
    return summary


def read_trials(path: Path, metric: str) -> Trials:
    """Every trial of trials.parquet that has a finite score in the ``metric`` column."""
    if not path.is_file():
        raise GenflowError(f"{path}: not found (a sweep's trials.parquet)")
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as error:  # pyarrow raises several types for a file that is not Parquet
        raise GenflowError(f"{path}: not a Parquet table: {error}") from None
    if rows and not {"status", "steps", metric} <= set(rows[0]):
        raise GenflowError(f"{path}: no 'status', 'steps' or {metric!r} column (not a genflow trials table "
                           f"of a sweep tuned by {metric})")
    scored = [r for r in rows if r["status"] != "failed" and r[metric] is not None and math.isfinite(r[metric])]
    if not scored:
        raise GenflowError(f"{path}: none of its {len(rows)} trials has a {metric} score")
    return Trials(tuple(float(r[metric]) for r in scored), tuple(r["status"] for r in scored),
                  tuple(int(r["steps"]) for r in scored), len(rows))


def read_details(path: Path) -> dict[str, Any]:
    details = read_json(path, "the evaluate stage's details.json")
    if not isinstance(details.get("per_seed"), dict) or not details["per_seed"]:
        raise GenflowError(f"{path}: no per-seed values (not an evaluate stage's details.json)")
    return details


def seed_summary(details: dict[str, Any], metric: str, path: Path) -> Summary:
    """Mean ± 95 % CI over the seeds of ``metric``; an error naming the file if it has none."""
    summary = summarize(per_seed_values(details, metric))
    if summary is None:
        raise GenflowError(f"{path}: no {metric} value for any seed")
    return summary


def seeds(details: dict[str, Any]) -> list[int]:
    listed = (details.get("protocol") or {}).get("seeds")
    return [int(s) for s in listed] if listed else sorted(int(s) for s in details["per_seed"])
