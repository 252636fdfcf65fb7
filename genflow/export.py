"""Export a trained generator / VAE decoder as TorchScript, checked against eager.

The exported module has one signature for every model, ``forward(z, c)``:
``z`` float32 (N, z_dim), ``c`` int64 (N,) class labels (ignored when the
model is unconditional). It returns samples in data space: images in
[-1, 1] as (N, C, H, W), or points as (N, D).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from genflow.io import atomic_dir, code_revision, write_json
from genflow.training import load_trained, trained_seeds

PARITY_TOLERANCE = 1e-5
TORCHSCRIPT_FILE, CARD_FILE = "generator.torchscript.pt", "export.json"


class ExportedGenerator(nn.Module):
    def __init__(self, decoder: nn.Module, conditional: bool):
        super().__init__()
        self.decoder, self.conditional = decoder, conditional

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.decoder(z, c) if self.conditional else self.decoder(z)


def fixed_inputs(z_dim: int, c_dim: int, n: int = 64, seed: int = 1234) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, z_dim, generator=gen)
    c = torch.arange(n) % c_dim if c_dim else torch.zeros(n, dtype=torch.long)
    return z, c


def parity(exported: nn.Module, eager: nn.Module, z: torch.Tensor, c: torch.Tensor) -> float:
    with torch.no_grad():
        return float((exported(z, c) - eager(z, c)).abs().max())


def export_model(model_dir: str | Path, out: str | Path, log=print) -> dict[str, Any]:
    """Export the first seed's generator (a model's seeds are replicas; the card names the seed)."""
    model, meta, _ = load_trained(trained_seeds(model_dir)[0])
    spec = model.spec
    eager = ExportedGenerator(model.decoder(), conditional=spec.c_dim > 0).eval()
    z, c = fixed_inputs(spec.z_dim, spec.c_dim)
    with atomic_dir(out) as tmp:
        with torch.no_grad():
            scripted = torch.jit.trace(eager, (z, c), check_trace=False)
        scripted.save(str(tmp / TORCHSCRIPT_FILE))
        reloaded = torch.jit.load(str(tmp / TORCHSCRIPT_FILE))
        error = parity(reloaded, eager, z, c)
        if error > PARITY_TOLERANCE:
            raise RuntimeError(f"TorchScript export of {meta['name']} differs from eager by {error:.3g} "
                               f"(> {PARITY_TOLERANCE})")
        card = {
            "name": meta["name"], "model": meta["model"], "spec": meta["spec"], "seed": meta["seed"],
            "inputs": {"z": ["N", spec.z_dim, "float32", "standard normal"],
                       "c": ["N", "int64", f"class labels 0..{spec.c_dim - 1}" if spec.c_dim else "ignored"]},
            "output": {"shape": ["N", *meta["data_shape"]], "dtype": "float32",
                       "range": "[-1, 1]" if len(meta["data_shape"]) == 3 else "data coordinates"},
            "parity": {"torchscript_max_abs_error": error, "tolerance": PARITY_TOLERANCE, "n": len(z)},
            "model_state_sha256": meta["state_sha256"], "data_manifest_sha256": meta["data_manifest_sha256"],
            "model_code_revision": meta["code_revision"], "code_revision": code_revision(),
        }
        write_json(tmp / CARD_FILE, card)
    log(f"[export] {meta['name']}: TorchScript parity max |diff| = {error:.2e}")
    return card
