"""Can a packed D tell grid25 packs from the failure state at all? (issue #27)

No G: D alone learns to separate real grid25 packs from packs of points uniform over the
square the grid fills (what the failing PacGAN4 generated: 2.5 % of its samples within 3 std of a
mean, the uniform share). Adam lr 1e-3, betas (0.5, 0.999), 64 packs a step, the default roster's
D (MLP width 128, depth 3, LeakyReLU 0.2); accuracy on 4,000 fresh real and fake packs.

    python bench/pacgan_d_only.py --out bench/results/pacgan_d_only.json

Writes one row per configuration: (step, accuracy on real packs, accuracy on fake packs), and
the trained D's ``g_signal``: the mean gradient norm G would get at a uniform sample whose pack
partners are uniform, or real. (--only 0 3 --steps 2000 wrote pacgan_g_signal.json.)
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from genflow.data.embedded import mixture
from genflow.models.gan import Discriminator

HALF_SIDE = 4.15  # the grid's means span [-4, 4]; its samples reach ~3 std (0.15) beyond
CONFIGS = [  # (label, pac, maxout pieces, pac_embed, steps)
    ("GAN (pac 1)", 1, 0, False, 4000),
    ("PacGAN4, MLP D", 4, 0, False, 8000),
    ("PacGAN4, maxout D", 4, 5, False, 4000),
    ("PacGAN4, pac_embed D", 4, 0, True, 4000),
]


def uniform(n: int, gen: torch.Generator) -> torch.Tensor:
    return (torch.rand(n, 2, generator=gen) * 2 - 1) * HALF_SIDE


def g_signal(D, pac: int, real: torch.Tensor, gen: torch.Generator, n: int = 4000) -> dict[str, float]:
    """Mean norm of G's (non-saturating) loss gradient at a uniform sample x, packed with pac - 1
    partners that are uniform too (G spread out) or real (G already on the modes): how much the
    other samples of a pack decide whether x gets a signal at all."""
    out = {}
    for partners in ("uniform", "real"):
        x = uniform(n, gen).requires_grad_(True)
        others = uniform(n * (pac - 1), gen) if partners == "uniform" else real[:n * (pac - 1)]
        packs = torch.cat([x[:, None], others.reshape(n, pac - 1, 2)], dim=1).reshape(n * pac, 2)
        (grad,) = torch.autograd.grad(F.softplus(-D(packs)).sum(), x)  # pac 1: no partners
        out[f"partners_{partners}"] = round(float(grad.norm(dim=1).mean()), 5)
    return out


def curve(pac: int, pieces: int, embed: bool, steps: int, probes: int = 16) -> list[tuple[int, float, float]]:
    torch.manual_seed(0)
    D = Discriminator(arch="mlp", data_shape=(2,), c_dim=0, width=128, depth=3, pac=pac, sn=False, mbstd=False,
                      maxout_pieces=pieces, pac_embed=embed)
    opt = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.999))
    real = torch.from_numpy(mixture("grid25", 200_000, 0.05, seed=0).x)
    test_real = torch.from_numpy(mixture("grid25", 4000 * pac, 0.05, seed=1).x)
    gen, rows = torch.Generator().manual_seed(1), []
    for step in range(1, steps + 1):
        idx = torch.randint(len(real), (64 * pac,), generator=gen)
        loss = F.softplus(-D(real[idx])).mean() + F.softplus(D(uniform(64 * pac, gen))).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % (steps // probes) == 0:
            with torch.no_grad():
                acc_real = float((D(test_real) > 0).float().mean())
                acc_fake = float((D(uniform(4000 * pac, gen)) < 0).float().mean())
            rows.append((step, round(acc_real, 3), round(acc_fake, 3)))
    return rows, g_signal(D, pac, real, gen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--only", nargs="*", type=int, help="indices into CONFIGS (default: all)")
    parser.add_argument("--steps", type=int, help="instead of each configuration's own")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = []
    for index, (label, pac, pieces, embed, steps) in enumerate(CONFIGS):
        if args.only is not None and index not in args.only:
            continue
        started = time.perf_counter()
        rows, signal = curve(pac, pieces, embed, steps if args.steps is None else args.steps)
        results.append({"label": label, "pac": pac, "maxout_pieces": pieces, "pac_embed": embed,
                        "step_real_fake": rows, "g_signal": signal, "seconds": round(time.perf_counter() - started, 1)})
        print(json.dumps(results[-1]), flush=True)
    with open(args.out, "w") as fh:
        json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
