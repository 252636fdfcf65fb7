"""Applications of a style-based exported model (StyleGAN): the style-mixing figure.

Runs on the exported ``mapping`` and ``synthesis`` ONNX networks only (ExportedModel), like
the other apps in genflow/export/apps.py.
"""
from __future__ import annotations

import numpy as np

from genflow.errors import GenflowError
from genflow.evaluate.pictures import save_image_grid
from genflow.export.exported import ExportedModel
from genflow.io import atomic_path


def mix_ws(ws_a: np.ndarray, ws_b: np.ndarray, crossover: int) -> np.ndarray:
    """Every (A, B) pair: A's styles for layers [:crossover] (coarse), B's for [crossover:] (fine).
    (rows, num_ws, w_dim) x (cols, num_ws, w_dim) -> (rows * cols, num_ws, w_dim), row by row."""
    rows, cols = len(ws_a), len(ws_b)
    a = np.broadcast_to(ws_a[:, None], (rows, cols, *ws_a.shape[1:]))
    b = np.broadcast_to(ws_b[None, :], (rows, cols, *ws_b.shape[1:]))
    mixed = np.concatenate([a[:, :, :crossover], b[:, :, crossover:]], axis=2)
    return mixed.reshape(rows * cols, *ws_a.shape[1:])


def style_mixing(model: ExportedModel, rows: int, cols: int, crossover: int | None, seed: int,
                 out) -> np.ndarray:
    """The StyleGAN paper's style-mixing figure: the top row shows images of latents B, the left
    column images of latents A, each cell A's coarse styles (ws[:K]) with B's fine ones (ws[K:]).
    Returns the grid's images (row-major, with a blank corner) and writes the PNG."""
    model.require("mapping", "mix")
    model.require("synthesis", "mix")
    num_ws = int(model.io["num_ws"])
    k = num_ws // 2 if crossover is None else crossover
    if not 0 <= k <= num_ws:
        raise GenflowError(f"mix: --crossover {k} is outside 0..{num_ws} (model {model.name!r} has {num_ws} "
                           f"style inputs; {model.io.get('ws_layers', '')})")
    if rows < 1 or cols < 1:
        raise GenflowError(f"mix: --rows and --cols must be at least 1, got {rows} and {cols}")
    z = np.random.default_rng(seed).standard_normal((rows + cols, model.io["z_dim"]))
    w = model.map(z)
    ws = np.repeat(w[:, None], num_ws, axis=1)
    ws_a, ws_b = ws[:rows], ws[rows:]
    sources = model.synthesize(ws)
    cells = model.synthesize(mix_ws(ws_a, ws_b, k)).reshape(rows, cols, *sources.shape[1:])
    blank = np.zeros_like(sources[:1])  # mid-grey corner
    grid = [np.concatenate([blank, sources[rows:]])]
    grid += [np.concatenate([sources[i:i + 1], cells[i]]) for i in range(rows)]
    images = np.concatenate(grid)
    with atomic_path(out) as tmp:
        save_image_grid(images, tmp, cols=cols + 1)
    return images
