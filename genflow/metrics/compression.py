"""A VAE read as a lossy codec (Alemi et al. 2018, "Fixing a Broken ELBO"): its rate, its
distortion and its likelihood in bits per dimension.

* **rate**: the mean KL(q(z|x) || p(z)) over the images, in bits per image. It is what an ideal
  bits-back coder with the prior would spend on the latent of one image; β trades it against
  the distortion.
* **distortion**: the mean squared error per pixel between the images and the decoder mean of
  the encoder mean, both on [0, 1] pixels (genflow's [-1, 1] mapped by (x + 1) / 2), and its
  PSNR = 10 log10(1 / MSE) in dB, of the MSE over the whole set (not the mean of per-image
  PSNRs, which an exactly reconstructed image would make infinite).
* **bits per dimension**: the IWAE bound on -log p(x) (nats per image) / (D ln 2), D = C·H·W.
  Its meaning depends on the decoder's pixel model: a Bernoulli decoder reads every pixel in
  [0, 1] as the probability of a binary pixel, so the number is a cross-entropy with soft
  targets (it includes the targets' own entropy and is not a code length for the 8-bit
  pixels); a Gaussian decoder gives a density on [-1, 1], whose bits per dimension are those of
  a continuous variable (they can be negative); -log2 of the probability of an 8-bit pixel's
  bin of width 2/255 is about that value + log2(127.5) ≈ 7.0 bits.

Torch-free except for the one function that runs the model.
"""
from __future__ import annotations

import math

import numpy as np

LN2 = math.log(2.0)


def kl_to_standard_normal(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per row, in nats (the closed form)."""
    return 0.5 * (np.square(mu) + np.exp(logvar) - 1.0 - logvar).sum(axis=1)


def mse_01(x: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error per pixel on [0, 1] pixels of two [-1, 1] image arrays."""
    return float(np.square((np.asarray(x, np.float64) - np.asarray(y, np.float64)) / 2.0).mean())


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB for a peak of 1 (pixels on [0, 1]); infinite for an exact reconstruction."""
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def bits_per_dim(nll_nats_per_image: float, dims: int) -> float:
    """A negative log-likelihood in nats per image -> bits per dimension."""
    return nll_nats_per_image / (dims * LN2)


def rate_distortion(mu: np.ndarray, logvar: np.ndarray, x: np.ndarray, recon: np.ndarray) -> dict[str, float]:
    """rate_bits, distortion_mse and recon_psnr from an encoder's posteriors and reconstructions."""
    mse = mse_01(x, recon)
    return {"rate_bits": float(kl_to_standard_normal(mu, logvar).mean() / LN2), "distortion_mse": mse,
            "recon_psnr": psnr_from_mse(mse)}


def compression_metrics(model, x, c, nll_iwae: float | None) -> dict[str, float]:
    """The compression metrics of a model with an encoder and a likelihood, on images ``x``
    (a torch tensor in [-1, 1], labels ``c``); ``nll_iwae``: evaluate's IWAE bound (nats/image)."""
    import torch

    c = c if model.spec.c_dim else None
    mus, logvars, recons = [], [], []
    with torch.no_grad():
        for start in range(0, len(x), 256):
            xb, cb = x[start:start + 256], None if c is None else c[start:start + 256]
            mu, logvar = model.E(xb, cb)
            mus.append(mu.double().numpy())
            logvars.append(logvar.double().numpy())
            recons.append(model.decoder()(mu, cb).numpy())
    out = rate_distortion(np.concatenate(mus), np.concatenate(logvars), x.numpy(), np.concatenate(recons))
    if nll_iwae is not None:
        out["bpd_iwae"] = bits_per_dim(nll_iwae, int(np.prod(x.shape[1:])))
    return out


# what the protocol section of metrics/<model>.details.json says about these numbers
COMPRESSION_PROTOCOL = {
    "on": "the reference split's rows (evaluate.n_real)",
    "rate_bits": "mean KL(q(z|x) || N(0, I)) per image, in bits",
    "distortion": "decoder mean of the encoder mean vs the image; MSE per pixel on [0, 1] pixels; "
                  "PSNR = 10 log10(1 / MSE) of the set's MSE",
    "bpd_iwae": "nll_iwae / (C*H*W ln 2)",
}
