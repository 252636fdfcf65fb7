"""Ray tasks for the prepare step: an image folder decoded (and resized) in parallel.

Each task decodes a contiguous block of the folder's sorted file list and returns the
arrays; the driver puts them back in file order before anything else looks at them, so
the checks, the split and the Parquet shards are exactly those of a one-process prepare.
The tasks open the files by path: on several nodes the raw folder must be on storage
every node mounts (infra/README.md, "Shared storage").
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import ray

from genflow.data.imagefolder import decode
from genflow.errors import DataError
from genflow.integrations.ray_eval import blocks
from genflow.integrations.ray_session import init_ray


@ray.remote
def _decode_block(paths: list[str], grayscale: bool, size: int | None, crop: str) -> list[np.ndarray]:
    return [decode(Path(path), grayscale, size, crop) for path in paths]


def decode_sharded(files: list[Path], spec, ray_spec) -> list[np.ndarray]:
    """``decode`` of every file, by ``spec.num_workers`` Ray tasks, in file order."""
    init_ray(ray_spec)
    paths = [str(path) for path in files]
    refs = [_decode_block.remote(paths[block.start:block.stop], spec.grayscale, spec.size, spec.crop)
            for block in blocks(len(paths), spec.num_workers)]
    try:
        parts = ray.get(refs)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, DataError):  # an unreadable file: its own message, not a remote traceback
            raise exc.cause from None
        raise
    return [array for part in parts for array in part]
