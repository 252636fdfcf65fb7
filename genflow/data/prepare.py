"""The prepare step: a ``data.<name>`` params entry -> data/prepared/<name>/."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from genflow.data.shards import write_prepared
from genflow.data.sources import load_source


def prepare(spec, out: str | Path, log=print, decode_many=None) -> dict[str, Any]:
    """``decode_many`` decodes an image folder's files elsewhere (genflow.launch: Ray tasks)."""
    raw = load_source(spec, log=log, decode_many=decode_many)
    log(f"[prepare] {spec.source}: {len(raw.x)} examples of shape {tuple(raw.x.shape[1:])}")
    # how many workers decoded is not part of the data: the manifest (and what depends on its
    # hash) is the same for any number
    source = spec.model_dump(mode="json", exclude={"num_workers"})
    manifest = write_prepared(raw, out, source=source, val_fraction=spec.val_fraction,
                              test_fraction=spec.test_fraction, seed=spec.seed)
    counts = ", ".join(f"{k} {v['rows']}" for k, v in manifest["splits"].items())
    log(f"[prepare] wrote {out}: {counts}")
    return manifest
