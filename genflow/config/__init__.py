"""Typed, strict view of params.yaml.

    params = config.load("params.yaml", overrides=["models.gan_digits.train.lr_g=1e-4"])

Every section is a pydantic model with ``extra="forbid"`` (schema.py): an unknown key, a wrong
type or an out-of-range value raises :class:`ConfigError` naming the dotted key path and what is
allowed, every problem of a file at once (validation.py, across.py). The YAML is read strictly
(reading.py): duplicate keys, alias bombs and non-UTF-8 files are refused. The package imports
neither torch nor Ray, so a bad params.yaml is rejected in well under two seconds, before any
heavy machinery starts.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from genflow.config.reading import MAX_VALUES, apply_overrides, parse_yaml, read_yaml, unshared
from genflow.config.schema import NAME_PATTERN, EvaluateSpec, FeatureNetSpec, Params, RaySpec, ReportSpec
from genflow.config.validation import check_prepared_data, prepared_facts, validate
from genflow.errors import ConfigError

__all__ = ["ConfigError", "EvaluateSpec", "FeatureNetSpec", "MAX_VALUES", "NAME_PATTERN", "Params", "RaySpec",
           "ReportSpec", "apply_overrides", "check_prepared_data", "fingerprint", "load", "parse_yaml",
           "prepared_facts", "read_yaml", "unshared", "validate"]


def load(path: str | Path = "params.yaml", overrides: list[str] | None = None) -> Params:
    raw = read_yaml(path)
    if overrides and isinstance(raw, dict):  # (not a mapping: validate says so)
        raw = apply_overrides(raw, overrides)
    return validate(raw, source=str(path))


def fingerprint(obj: Any) -> str:
    """Stable short hash of a config section (used to name resumable Ray runs)."""
    if isinstance(obj, BaseModel):
        obj = obj.model_dump(mode="json")
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
