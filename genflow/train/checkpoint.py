"""Full training state on disk: weights, optimizers, EMA, step, RNG, log.

A checkpoint directory holds ``state.pt`` (loaded with ``weights_only=True``:
no pickled code), ``train_log.csv`` and ``meta.json`` with the sha256 of
``state.pt`` so a truncated or corrupt file is detected before it is used.

The sha256 only catches accidents: whoever can write ``state.pt`` can rewrite
``meta.json`` too. So ``load`` also refuses, as a ``DataError`` naming the file,
what a forger could get past the hash: a state the weights-only unpickler refuses,
metadata of the wrong types, a state that is not a mapping, and non-finite weights
(the engine checks every step, so no checkpoint genflow wrote holds one).
"""
from __future__ import annotations

import csv
import io
import json
import math
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genflow.errors import DataError
from genflow.io import atomic_path, sha256_file, write_json, write_text

STATE_FILE, LOG_FILE, META_FILE = "state.pt", "train_log.csv", "meta.json"


def rng_state() -> dict[str, Any]:
    """Global RNG states (the engine draws its own noise from seeded generators;
    these are kept so any code using the global RNGs resumes identically too)."""
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
            "python": _py_state_to_list(random.getstate())}


def _py_state_to_list(state: tuple) -> list:
    return [state[0], list(state[1]), state[2]]


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def write_log_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def read_log_csv(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return [{k: _number(v) for k, v in row.items() if v != ""} for row in csv.DictReader(handle)]


def _number(text: str) -> float | int:
    return int(text) if text.lstrip("-").isdigit() else float(text)


def _interned(obj: Any) -> Any:
    """The same structure with every string interned. Pickle shares an object it has seen by
    identity, so a state rebuilt from a loaded checkpoint (fresh 'step' strings) would pickle
    to other bytes than the same state built live; interned, both pickle identically."""
    if isinstance(obj, str):
        return sys.intern(obj)
    if isinstance(obj, dict):
        return {_interned(k): _interned(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_interned(v) for v in obj)
    return obj


def save(directory: str | Path, state: dict[str, Any], log: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """Write a checkpoint directory; each file is renamed into place when complete."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # through a buffer: torch.save names the zip's root folder after the file, and the
    # temporary's random name would make identical states differ byte for byte
    buffer = io.BytesIO()
    torch.save(_interned(state), buffer)
    with atomic_path(directory / STATE_FILE) as tmp:
        tmp.write_bytes(buffer.getvalue())
    write_log_csv(directory / LOG_FILE, log)
    state_sha256 = sha256_file(directory / STATE_FILE)
    write_json(directory / META_FILE, {**meta, "step": state["step"], "state_sha256": state_sha256})


# the types save() writes, for the keys genflow reads back (absent keys are not required:
# a test or a tool may write a bare checkpoint)
META_TYPES: dict[str, tuple[type, ...]] = {
    "step": (int,), "state_sha256": (str,), "name": (str,), "model": (str,), "spec": (dict,), "seed": (int,),
    "data_shape": (list,), "num_classes": (int,), "world_size": (int,), "code_revision": (str, type(None)),
    "data_manifest_sha256": (str, type(None)),
}


def _meta_type_problem(meta: dict[str, Any]) -> str | None:
    for key, types in META_TYPES.items():
        if key in meta and (not isinstance(meta[key], types) or isinstance(meta[key], bool)):
            return f"{key} is {type(meta[key]).__name__}, not {' or '.join(t.__name__ for t in types)}"
    if "data_shape" in meta and not all(isinstance(d, int) and not isinstance(d, bool) for d in meta["data_shape"]):
        return "data_shape is not a list of integers"
    return None


def verify(directory: str | Path) -> dict[str, Any]:
    """The checkpoint's metadata, once its state file matches the sha256 recorded there."""
    directory = Path(directory)
    meta_path, state_path = directory / META_FILE, directory / STATE_FILE
    if not meta_path.exists() or not state_path.exists():
        raise DataError(f"{directory}: not a genflow checkpoint (needs {STATE_FILE} and {META_FILE})")
    try:
        meta = json.loads(meta_path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f"{meta_path}: unreadable checkpoint metadata ({err})") from None
    if not isinstance(meta, dict) or sha256_file(state_path) != meta.get("state_sha256"):
        raise DataError(f"{state_path}: sha256 does not match {META_FILE}: truncated or corrupt checkpoint")
    problem = _meta_type_problem(meta)
    if problem:
        raise DataError(f"{meta_path}: not metadata genflow writes ({problem})")
    return meta


def _unpickle_weights(state_path: Path) -> Any:
    """``torch.load(weights_only=True)``; what it refuses (a pickled callable, a class it does not
    allow) or cannot read becomes a DataError naming the file: nothing in it has run."""
    try:
        return torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  (the unpickler and the zip reader raise many types; each means unusable)
        text = str(err).strip()
        why = text.splitlines()[0] if text else type(err).__name__
        if "Weights only load failed" in text:
            refused = next((line.strip() for line in text.splitlines() if "Unsupported" in line), why)
            refused = refused.split(". Please", 1)[0]  # torch goes on to suggest allow-listing it: never
            raise DataError(f"{state_path}: refused by the weights-only unpickler ({refused})") from None
        raise DataError(f"{state_path}: unreadable state ({type(err).__name__}: {why})") from None


def _first_non_finite(weights: dict[str, Any]) -> str | None:
    for name, value in weights.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
            return name
        if isinstance(value, float) and not math.isfinite(value):
            return name
    return None


def _check_state(state: Any, state_path: Path, meta: dict[str, Any]) -> None:
    if not isinstance(state, dict):
        raise DataError(f"{state_path}: holds a {type(state).__name__}, not a training state mapping")
    if "step" in meta and state.get("step") != meta["step"]:
        raise DataError(f"{state_path}: its step ({repr(state.get('step'))[:40]}) is not the step in {META_FILE} "
                        f"({meta['step']})")
    weights = state.get("model")
    if weights is not None and not isinstance(weights, dict):
        raise DataError(f"{state_path}: 'model' holds a {type(weights).__name__}, not a mapping of weights")
    bad = _first_non_finite(weights or {})
    if bad is not None:
        raise DataError(f"{state_path}: weight {bad} is not finite (no checkpoint genflow writes has one)")


def load(directory: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Read and verify a checkpoint directory (weights-only unpickling); every way it can be
    unusable is a DataError naming the file."""
    directory = Path(directory)
    meta = verify(directory)
    state = _unpickle_weights(directory / STATE_FILE)
    _check_state(state, directory / STATE_FILE, meta)
    try:
        log = read_log_csv(directory / LOG_FILE)
    except (ValueError, csv.Error, UnicodeDecodeError) as err:
        raise DataError(f"{directory / LOG_FILE}: unreadable training log ({err})") from None
    return state, log, meta
