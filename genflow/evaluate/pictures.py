"""Pictures: sample grids for images, scatter plots and latent paths for 2-D mixtures (PNG, deterministic)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def interpolation_png(samples_png: str | Path) -> Path:
    """Where evaluate puts a model's latent interpolation: beside ``samples/<model>.png``, as
    ``samples/<model>.interpolation.png`` (model names have no dots: it is no model's samples)."""
    samples_png = Path(samples_png)
    return samples_png.with_name(f"{samples_png.stem}.interpolation.png")


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8."""
    pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).numpy()


def grid_array(images: torch.Tensor, cols: int | None = None, scale: int | None = None, pad: int = 1) -> np.ndarray:
    """A grid of images (square-ish unless ``cols`` is given) as one (H, W, C) uint8 array on
    white, upscaled (nearest) so tiny images stay visible."""
    pixels = to_uint8(torch.as_tensor(images))
    n, h, w, c = pixels.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    scale = scale or max(1, 64 // max(h, w))
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        canvas[y:y + h, x:x + w] = pixels[i]
    return canvas.repeat(scale, axis=0).repeat(scale, axis=1)


def save_image_grid(images: torch.Tensor, path: str | Path, scale: int | None = None, pad: int = 1,
                    cols: int | None = None) -> None:
    canvas = grid_array(images, cols, scale, pad)
    Image.fromarray(canvas[..., 0] if canvas.shape[-1] == 1 else canvas).save(path, format="PNG")


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (imported lazily: it is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plane(ax, centers: np.ndarray | None, data: np.ndarray, title: str) -> None:
    """Square axes around the true means (or the data), the means as red crosses."""
    if centers is not None:
        ax.scatter(centers[:, 0], centers[:, 1], s=30, marker="x", c="red", label="true means", zorder=3)
    lim = float(np.abs(centers if centers is not None else data).max()) * 1.5
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=7)


def save_figure(fig, path: str | Path) -> None:
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})  # no version stamp: same bytes on rerun
    pyplot().close(fig)


def save_points(samples: np.ndarray, centers: np.ndarray | None, path: str | Path, title: str = "") -> None:
    fig, ax = pyplot().subplots(figsize=(4, 4), dpi=100)
    ax.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.4, label="generated")
    plane(ax, centers, samples, title)
    save_figure(fig, path)


def save_paths(paths: np.ndarray, centers: np.ndarray | None, path: str | Path, title: str = "") -> None:
    """2-D latent interpolation: each (steps, 2) path of ``paths`` as a line of dots from its
    start (circle) to its end (square), over the true means."""
    fig, ax = pyplot().subplots(figsize=(4, 4), dpi=100)
    for index, points in enumerate(paths):
        line, = ax.plot(points[:, 0], points[:, 1], ".-", linewidth=1, markersize=4,
                        label="decoded paths" if index == 0 else None)
        ax.plot(*points[0], "o", *points[-1], "s", color=line.get_color(), markersize=6)
    plane(ax, centers, paths.reshape(-1, 2), title)
    save_figure(fig, path)


def save_strip(samples: torch.Tensor, steps: list[int], centers: np.ndarray | None, path: str | Path,
               title: str = "", rows: int = 10) -> None:
    """The sample strip over training: ``samples`` (probes, n, ...) from the same latents at each
    probe's step; at most ``rows`` probes, evenly spaced, the last always shown. Images: one row
    per probe, top to bottom; 2-D points: one panel per probe, left to right."""
    shown = min(rows, len(steps))
    pick = sorted({round(i * (len(steps) - 1) / max(shown - 1, 1)) for i in range(shown)})
    samples, steps = samples[pick], [steps[i] for i in pick]
    if samples.dim() == 5:  # images
        save_image_grid(samples.flatten(0, 1), path, cols=samples.shape[1])
        return
    fig, axes = pyplot().subplots(1, len(steps), figsize=(2.2 * len(steps), 2.4), dpi=100, squeeze=False)
    for ax, points, step in zip(axes[0], samples.numpy(), steps):
        ax.scatter(points[:, 0], points[:, 1], s=1, alpha=0.4, label="generated")
        plane(ax, centers, points, f"step {step}")
        if ax.get_legend() is not None:
            ax.get_legend().remove()
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)
