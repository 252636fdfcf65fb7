"""The reference for bench/train_throughput.py: a plain PyTorch DCGAN loop, no genflow engine.

Written the way the official PyTorch DCGAN example (pytorch/examples, dcgan/main.py) is:
a DataLoader over the images with shuffling, D updated on a real batch then on G's batch
(two backward passes), G updated through D on the same fake batch, BCE losses, Adam with
beta1 0.5. Two differences, both to compare like with like: G and D are genflow's modules
for `gan_digits` (so the networks are identical), and D ends in logits with
BCEWithLogitsLoss (the numerically safe form of Sigmoid + BCELoss, and genflow's
non-saturating loss). No EMA, no checks, no checkpoints: that is the point.

    .venv/bin/python bench/reference_dcgan.py --steps 1200 [--threads 2]
Prints progress lines like the engine's (`step N ... steps/s=R`, R since the loop began).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn, optim
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genflow import config  # noqa: E402
from genflow.data.loader import load_split  # noqa: E402
from genflow.models import registry  # noqa: E402


def networks(params_path: Path, model: str = "gan_digits",
             data_root: Path = ROOT / "data" / "prepared") -> tuple[nn.Module, nn.Module, object]:
    spec = config.load(params_path).models[model]
    images = load_split(data_root / spec.dataset, "train")
    gan = registry.build(spec, images.shape, images.num_classes)
    return gan.G, gan.D, (spec, images)


class ReferenceDCGAN:
    """The example's loop over its DataLoader, resumable in blocks of steps (for A/B runs).

    ``bf16``: the step under ``torch.autocast(bfloat16)``, the one-line change a user of the
    example would make (losses included: it is the plain recipe, not genflow's)."""

    def __init__(self, params_path: Path = ROOT / "params.yaml", model: str = "gan_digits",
                 data_root: Path = ROOT / "data" / "prepared", bf16: bool = False):
        torch.manual_seed(0)
        self.netG, self.netD, (self.spec, images) = networks(params_path, model, data_root)
        self.bf16 = bf16
        t = self.spec.train
        real_images = images.x.float().div_(127.5).sub_(1.0)
        self.dataloader = DataLoader(TensorDataset(real_images), batch_size=t.batch_size, shuffle=True,
                                     drop_last=True)
        self.criterion = nn.BCEWithLogitsLoss()
        self.optimizerD = optim.Adam(self.netD.parameters(), lr=t.lr_d, betas=(t.beta1, t.beta2))
        self.optimizerG = optim.Adam(self.netG.parameters(), lr=t.lr_g, betas=(t.beta1, t.beta2))
        self._batches = iter(())

    def _next_batch(self) -> torch.Tensor:
        for (real,) in self._batches:
            return real
        self._batches = iter(self.dataloader)  # a new epoch
        return self._next_batch()

    def step(self) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            self._step()

    def _step(self) -> None:
        netD, netG, criterion, real_label, fake_label = self.netD, self.netG, self.criterion, 1.0, 0.0
        real = self._next_batch()
        # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z)))
        netD.zero_grad()
        batch_size = real.size(0)
        label = torch.full((batch_size,), real_label)
        errD_real = criterion(netD(real), label)
        errD_real.backward()
        noise = torch.randn(batch_size, self.spec.z_dim)
        fake = netG(noise)
        label.fill_(fake_label)
        errD_fake = criterion(netD(fake.detach()), label)
        errD_fake.backward()
        self.optimizerD.step()
        # (2) Update G network: maximize log(D(G(z)))
        netG.zero_grad()
        label.fill_(real_label)
        errG = criterion(netD(fake), label)
        errG.backward()
        self.optimizerG.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loop = ReferenceDCGAN(args.params)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        loop.step()
        if step % 200 == 0 or step == args.steps:  # the engine's progress line, for the same parser
            print(f"[reference] step {step} steps/s={step / (time.perf_counter() - start):.6g}", flush=True)


if __name__ == "__main__":
    main()
