"""Metrics that need the trained model, not only its samples.

* likelihood: ELBO, importance-weighted bound (IWAE, K samples) and
  reconstruction error for models with an encoder;
* latent smoothness: a perceptual-path-length-like measure (Karras et al.
  2019) in the dataset's feature space: the squared feature distance between
  images decoded at t and t + eps along slerp paths between two latents,
  divided by eps^2, with the 1 % tails dropped as StyleGAN does; for models with a mapping
  network (StyleGAN) also along lines in W, the variant the StyleGAN paper reports;
* conditional models: class-conditional FID (per class, averaged) and the
  share of samples the feature classifier assigns to the requested class;
* anomaly detection: each family's ``anomaly_score`` on the test split of a
  model trained without ``holdout_class``, summarised as AUROC and an ROC curve.
"""
from __future__ import annotations

import numpy as np
import torch

from genflow.metrics import auroc, frechet_distance, roc_on_grid

PROBE_KID_SUBSETS = 20  # KID as a sweep's probe: fewer subsets than the evaluate stage's 100
MIN_CLASS_ROWS = 10  # a per-class FID on fewer real rows says nothing


SAMPLE_CHUNK = 1024  # the unit of generation: chunk i always holds the same samples


def chunk_generator(seed: int, index: int) -> torch.Generator:
    """Chunk ``index``'s own random stream, so a chunk's samples do not depend on which
    process draws it, or on the chunks drawn before it."""
    state = np.random.SeedSequence([seed, index]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def chunk_labels(model, n: int) -> torch.Tensor | None:
    """Balanced labels for conditional models: sample i gets class i mod c_dim."""
    return torch.arange(n) % model.spec.c_dim if model.spec.c_dim else None


@torch.no_grad()
def generate_chunks(model, n: int, seed: int, chunks) -> torch.Tensor:
    """The samples of the given chunk indices of an ``n``-sample draw, in that order."""
    c = chunk_labels(model, n)
    parts = []
    for index in chunks:
        start = index * SAMPLE_CHUNK
        size = min(SAMPLE_CHUNK, n - start)
        parts.append(model.sample(size, None if c is None else c[start:start + size], chunk_generator(seed, index)))
    return torch.cat(parts)


def num_chunks(n: int) -> int:
    return -(-n // SAMPLE_CHUNK)


def generate(model, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``n`` samples from fixed latents; conditional models get balanced labels."""
    return generate_chunks(model, n, seed, range(num_chunks(n))), chunk_labels(model, n)


def _chunks(x: torch.Tensor, c: torch.Tensor | None, size: int = 256):
    for i in range(0, len(x), size):
        yield x[i:i + size], None if c is None else c[i:i + size]


@torch.no_grad()
def likelihood_metrics(model, x: torch.Tensor, c: torch.Tensor | None, seed: int, iwae_k: int) -> dict[str, float]:
    """ELBO and IWAE bound (nats per image; models with a likelihood), reconstruction SSE (with an encoder)."""
    metrics = {}
    if model.has_likelihood:
        gen = torch.Generator().manual_seed(seed)
        metrics["elbo"] = float(torch.cat([model.elbo(xb, cb, gen) for xb, cb in _chunks(x, c)]).mean())
        bound = torch.cat([model.iwae_bound(xb, cb, iwae_k, gen) for xb, cb in _chunks(x, c, 64)])
        metrics["nll_iwae"] = float(-bound.mean())
    if model.has_encoder:
        metrics["recon_mse"] = float((model.reconstruct(x, c) - x).square().flatten(1).sum(1).mean())
    return metrics


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of latent vectors (the last axis; other axes broadcast), the
    path of Gaussian latents."""
    a_n, b_n = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def slerp_paths(z_dim: int, pairs: int, steps: int, seed: int) -> torch.Tensor:
    """``pairs`` random pairs of Gaussian latents (seeded) and ``steps`` latents along the slerp
    path of each, path after path: (pairs * steps, z_dim), float64. What `genflow interpolate`
    decodes, and the evaluate stage's interpolation picture."""
    ends = np.random.default_rng(seed).standard_normal((2, pairs, 1, z_dim))
    t = np.linspace(0.0, 1.0, steps)[None, :, None]
    return slerp(*(torch.from_numpy(v) for v in (ends[0], ends[1], t))).reshape(pairs * steps, z_dim)


@torch.no_grad()
def path_length(model, features, n: int, seed: int, epsilon: float) -> float:
    """Mean squared feature-space speed along random latent paths (lower = smoother)."""
    gen = torch.Generator().manual_seed(seed + 1)
    z0, z1 = torch.randn(n, model.spec.z_dim, generator=gen), torch.randn(n, model.spec.z_dim, generator=gen)
    t = torch.rand(n, 1, generator=gen) * (1 - epsilon)
    c = torch.randint(model.spec.c_dim, (n,), generator=gen) if model.spec.c_dim else None
    decode = model.decoder().eval()
    start, end = decode(slerp(z0, z1, t), c), decode(slerp(z0, z1, t + epsilon), c)
    return _trimmed_speed(features, start, end, epsilon)


# W-space path length: at most this many pairs, so it adds ~2 s (not ~20 s) to a 32 px
# model's evaluation on one CPU core; the estimate is noisier than path_length's
PATH_W_PAIRS = 200


@torch.no_grad()
def path_length_w(model, features, n: int, seed: int, epsilon: float) -> float:
    """The same speed along *linear* paths between mapped latents w = mapping(z): the perceptual
    path length in W that the StyleGAN paper reports (models with a mapping network). Callers
    pass n <= PATH_W_PAIRS."""
    gen = torch.Generator().manual_seed(seed + 2)
    z0, z1 = torch.randn(n, model.spec.z_dim, generator=gen), torch.randn(n, model.spec.z_dim, generator=gen)
    t = torch.rand(n, 1, generator=gen) * (1 - epsilon)
    c = torch.randint(model.spec.c_dim, (n,), generator=gen) if model.spec.c_dim else None
    G = model.decoder().eval()
    w0, w1 = G.mapping(z0, c), G.mapping(z1, c)
    start, end = (G.synthesis(G.broadcast(torch.lerp(w0, w1, at))) for at in (t, t + epsilon))
    return _trimmed_speed(features, start, end, epsilon)


def _trimmed_speed(features, start: torch.Tensor, end: torch.Tensor, epsilon: float) -> float:
    """Mean squared feature distance / epsilon^2, without the 1 % tails (as StyleGAN)."""
    speed = (features(end) - features(start)).square().sum(1).numpy() / epsilon ** 2
    low, high = np.percentile(speed, [1, 99])
    return float(speed[(speed >= low) & (speed <= high)].mean())


@torch.no_grad()
def class_accuracy(features, x: torch.Tensor, c: torch.Tensor) -> float:
    """Share of images the feature classifier puts in class ``c`` (a channelwise space names
    the triple's 3-digit number)."""
    classes = features.classify(x)
    if classes.ndim == 2:
        classes = classes @ torch.tensor([100, 10, 1])
    return float((classes == c).float().mean())


def class_fid(f_a: torch.Tensor, c_a: torch.Tensor, f_b: torch.Tensor, c_b: torch.Tensor) -> float | None:
    """Class-conditional FID: the mean over classes of the FID between the two sets' rows of
    that class, over classes with at least MIN_CLASS_ROWS rows in ``a`` (None if there are none)."""
    fids = [frechet_distance(f_a[c_a == k], f_b[c_b == k]) for k in torch.unique(c_a).tolist()
            if (c_a == k).sum() >= MIN_CLASS_ROWS and (c_b == k).sum() >= 2]
    return float(np.mean(fids)) if fids else None


ROC_POINTS = 101  # FPRs 0, 0.01, ..., 1: the ROC curve evaluate writes per seed


@torch.no_grad()
def anomaly_scores(model, x: torch.Tensor, seed: int) -> np.ndarray:
    """The model's anomaly score of every row (higher = less like the training data)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.cat([model.anomaly_score(xb, gen) for xb, _ in _chunks(x, None)]).numpy()


def anomaly_detection(model, x: torch.Tensor, labels: torch.Tensor, holdout: int,
                      seed: int) -> tuple[float, np.ndarray]:
    """AUROC of the anomaly score for finding the held-out class among test images, and the ROC
    curve's TPR at ROC_POINTS evenly spaced FPRs (roc_on_grid)."""
    scores, positive = anomaly_scores(model, x, seed), (labels == holdout).numpy()
    return auroc(scores, positive), roc_on_grid(scores, positive, ROC_POINTS)[1]
