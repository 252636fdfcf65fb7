"""The pictures people look for before they read a metric, written by evaluate beside a model's
samples, in ``samples/<model>.gallery/``:

- ``real_vs_generated.png``: real rows of the reference split beside the samples, same layout
  (a conditional model: one class per column, real and generated alike);
- ``nearest.png``: each of a few samples followed by its nearest training rows in the protocol's
  feature space: a sample that equals a training image is memorised, not generated;
- ``reconstructions.png``: models with an encoder (VAE, VAE-GAN): real rows over their
  reconstructions, where blurriness shows.

2-D mixtures get the real-vs-generated scatter only (no images to match or reconstruct).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genflow.evaluate.pictures import grid_array, plane, pyplot, save_figure
from genflow.io import atomic_dir

# every picture the gallery may hold: its file, its link in the Markdown table, its HTML heading
PICTURES = (("real_vs_generated.png", "real vs generated", "Real beside generated"),
            ("nearest.png", "nearest", "Nearest training rows: is a sample memorised?"),
            ("reconstructions.png", "recon.", "Reconstructions"))
NEAREST_ROWS, NEAREST_K = 8, 5
RECONSTRUCTION_ROWS = 2   # pairs of rows: real, then reconstructed


def gallery_dir(samples_png: str | Path) -> Path:
    """``samples/<model>.png`` -> ``samples/<model>.gallery`` (model names have no dots)."""
    samples_png = Path(samples_png)
    return samples_png.with_name(f"{samples_png.stem}.gallery")


def class_columns(c: torch.Tensor, classes: int, rows: int) -> torch.Tensor:
    """Row-major indices of a ``rows`` x ``classes`` grid whose column j holds the first rows of
    class j (-1 where a class has fewer rows)."""
    grid = torch.full((rows, classes), -1, dtype=torch.long)
    for j in range(classes):
        found = torch.nonzero(c == j).flatten()[:rows]
        grid[:len(found), j] = found
    return grid.flatten()


def _pick(images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``images[index]`` with blank (white) tiles where index is -1."""
    out = torch.ones((len(index), *images.shape[1:]), dtype=images.dtype)
    keep = index >= 0
    out[keep] = images[index[keep]]
    return out


def sample_layout(n_available: int, grid_size: int, c_dim: int) -> tuple[torch.Tensor, int]:
    """Which of the protocol's samples a grid shows, and its columns. Sample i of a conditional
    model has class i mod c_dim (genflow.evaluate.model_metrics.chunk_labels), so c_dim columns
    put one class in each column; unconditional: the first grid_size² samples, square."""
    if not c_dim:
        return torch.arange(min(n_available, grid_size ** 2)), grid_size
    return torch.arange(min(n_available, grid_size * c_dim)), c_dim


def tile_scale(images: torch.Tensor) -> int:
    """Nearest upscaling that makes tiny tiles (8 px digits) about 32 px wide."""
    return max(1, 32 // images.shape[-1])


def _panels(panels: list[tuple[str, np.ndarray]], path: Path, title: str) -> None:
    """Image grids side by side, each under its caption, at their pixel size (nearest upscaling)."""
    plt = pyplot()
    height = max(grid.shape[0] for _, grid in panels)
    width = max(4.0, sum(g.shape[1] for _, g in panels) / 100 + 0.3 * len(panels))
    fig, axes = plt.subplots(1, len(panels), dpi=100, squeeze=False, figsize=(width, height / 100 + 0.8))
    for ax, (caption, grid) in zip(axes[0], panels):
        ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=255,
                  interpolation="nearest")
        ax.set_title(caption, fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)


def real_vs_generated(ref, fake: torch.Tensor, c_dim: int, grid_size: int, path: Path, title: str) -> None:
    shown, cols = sample_layout(len(fake), grid_size, c_dim)
    if c_dim:
        real = _pick(ref.real, class_columns(ref.real_c, c_dim, len(shown) // c_dim))
    else:
        real = ref.real[:len(shown)]
    scale = tile_scale(fake)
    _panels([(f"real ({ref.spec.reference_split} split)", grid_array(real, cols, scale)),
             ("generated" + (": one class per column" if c_dim else ""), grid_array(fake[shown], cols, scale))],
            path, title)


def real_vs_generated_points(ref, fake: torch.Tensor, path: Path, title: str) -> None:
    plt = pyplot()
    centers = np.asarray(ref.manifest["mixture"]["centers"]) if "mixture" in ref.manifest else None
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.6), dpi=100)
    for ax, points, name in ((axes[0], ref.real, f"real ({ref.spec.reference_split} split)"),
                             (axes[1], fake, "generated")):
        points = points[:len(fake)].numpy()
        ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.4)
        plane(ax, centers, points, f"{name}, {len(points)} points")
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)


def nearest_training_rows(ref, samples: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices into ``ref.train`` of each sample's ``k`` nearest training rows, nearest first,
    and their feature distances."""
    distances = torch.cdist(ref.features(samples).double(), ref.f_train.double())
    found = distances.topk(min(k, len(ref.train)), largest=False)
    return found.indices, found.values


def nearest_training(ref, fake: torch.Tensor, path: Path, title: str) -> None:
    """The first NEAREST_ROWS samples, each followed by its NEAREST_K nearest training rows
    (Euclidean distance between the protocol's features, over the training rows it reads)."""
    samples = fake[:NEAREST_ROWS]
    nearest, _ = nearest_training_rows(ref, samples, NEAREST_K)
    rows = [torch.cat([sample[None], ref.train[index]]) for sample, index in zip(samples, nearest)]
    cols = nearest.shape[1] + 1
    grid = grid_array(torch.cat(rows), cols, tile_scale(fake))
    _panels([(f"left: a sample; then its {cols - 1} nearest\nof {len(ref.train)} training rows (feature space)",
              grid)], path, title)


@torch.no_grad()
def reconstructions(model, ref, path: Path, title: str, grid_size: int) -> None:
    """Real rows (one class per column for a conditional model) over their reconstructions."""
    c_dim = model.spec.c_dim
    cols = c_dim or grid_size
    index = class_columns(ref.real_c, c_dim, RECONSTRUCTION_ROWS) if c_dim else torch.arange(cols * RECONSTRUCTION_ROWS)
    index[index >= len(ref.real)] = -1  # a reference split smaller than the grid: blank tiles
    real = _pick(ref.real, index)
    labels = None if not c_dim else torch.arange(len(index)) % c_dim
    recon = model.reconstruct(real, labels).clamp(-1, 1)
    recon[index < 0] = real[index < 0]  # a blank tile stays blank under it
    pairs = torch.stack([real.unflatten(0, (-1, cols)), recon.unflatten(0, (-1, cols))], 1).flatten(0, 2)
    grid = grid_array(pairs, cols, tile_scale(real))
    _panels([("rows in pairs: real, then reconstructed", grid)], path, title)


def write_gallery(model, ref, fake: torch.Tensor, samples_png: str | Path, title: str, grid_size: int) -> Path:
    """Every picture that applies to ``model``, swapped into place as one folder."""
    out = gallery_dir(samples_png)
    with atomic_dir(out) as tmp:
        if ref.manifest["kind"] != "image":
            real_vs_generated_points(ref, fake, tmp / "real_vs_generated.png", title)
            return out
        real_vs_generated(ref, fake, model.spec.c_dim, grid_size, tmp / "real_vs_generated.png", title)
        nearest_training(ref, fake, tmp / "nearest.png", title)
        if model.has_encoder:
            reconstructions(model, ref, tmp / "reconstructions.png", title, grid_size)
    return out
