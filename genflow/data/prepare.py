"""The prepare step: a ``data.<name>`` params entry -> data/prepared/<name>/."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from genflow.data.raw import SPLITS, RawData, first_empty_split, split_indices
from genflow.data.shards import write_prepared
from genflow.data.sources import load_source
from genflow.errors import DataError


def _where(spec) -> str:
    """What names the data in a message: its file or folder, else its source."""
    return str(getattr(spec, "path", None) or getattr(spec, "images", None) or f"source {spec.source}")


def with_checked_splits(raw: RawData, spec, dataset: str) -> RawData:
    """``raw`` with its splits resolved (the source's own, else the seeded cut), refused when a
    split it needs is empty: better here, naming the data and fractions, than in a later stage."""
    splits = raw.splits or split_indices(len(raw.x), spec.val_fraction, spec.test_fraction, spec.seed)
    empty = first_empty_split(splits, spec.val_fraction)
    if empty is None:
        return replace(raw, splits=splits)
    counts = ", ".join(f"{name} {len(splits.get(name, ()))}" for name in SPLITS)
    fractions = ", ".join(f"{key} {getattr(spec, key)}" for key in ("val_fraction", "test_fraction")
                          if getattr(spec, key) is not None)  # None: an official test set
    hint = ("add rows, raise val_fraction, or set val_fraction: 0 for no validation split" if empty == "val"
            else "add rows or change the fractions")
    raise DataError(f"{_where(spec)}: dataset {dataset!r}: {len(raw.x)} examples split with {fractions} "
                    f"leave {empty} empty ({counts}); {hint}")


def prepare(spec, out: str | Path, log=print, decode_many=None) -> dict[str, Any]:
    """``decode_many`` decodes an image folder's files elsewhere (genflow.launch: Ray tasks)."""
    raw = with_checked_splits(load_source(spec, log=log, decode_many=decode_many), spec, Path(out).name)
    log(f"[prepare] {spec.source}: {len(raw.x)} examples of shape {tuple(raw.x.shape[1:])}")
    # how many workers decoded is not part of the data: the manifest (and what depends on its
    # hash) is the same for any number
    source = spec.model_dump(mode="json", exclude={"num_workers"})
    manifest = write_prepared(raw, out, source=source, val_fraction=spec.val_fraction,
                              test_fraction=spec.test_fraction, seed=spec.seed)
    counts = ", ".join(f"{k} {v['rows']}" for k, v in manifest["splits"].items())
    log(f"[prepare] wrote {out}: {counts}")
    return manifest
