"""Full training state on disk: weights, optimizers, EMA, step, RNG, log.

A checkpoint directory holds ``state.pt`` (loaded with ``weights_only=True``:
no pickled code), ``train_log.csv`` and ``meta.json`` with the sha256 of
``state.pt`` so a truncated or corrupt file is detected before it is used.
"""
from __future__ import annotations

import csv
import io
import json
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
    return meta


def load(directory: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Read and verify a checkpoint directory (weights-only unpickling)."""
    directory = Path(directory)
    meta = verify(directory)
    state = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)
    return state, read_log_csv(directory / LOG_FILE), meta
