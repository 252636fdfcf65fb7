"""Why PacGAN fails on grid25 (issue #27): train a mixture GAN in-process and watch its D.

Every ``--every`` steps it measures, on 2,400 fresh real and 2,400 fresh fake samples packed as
the model packs them: D's accuracy on real packs (score > 0) and on fake packs (score < 0), and
the PacGAN protocol's modes / high quality of 2,500 samples of G's EMA (or G without one). No
Ray, no DVC; it writes the JSON and the last probe's samples (``<out>.samples.npy``); the
engine, the model and the data are the pipeline's.

    python bench/pacgan_diagnosis.py --source grid25 --pac 4 --steps 4000 --out /tmp/pac4.json \
        --set width=128 depth=3 train.lr_g=0.001 ...

``--set`` takes dotted keys of the model spec with YAML values (as ``dvc exp run -S`` does).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import yaml

from genflow.data.embedded import mixture
from genflow.data.loader import Split
from genflow.metrics.mixtures import mixture_modes
from genflow.models import registry
from genflow.models.specs import GanSpec
from genflow.train.engine import Engine


class _Quiet:
    def on_log(self, step, row):
        pass

    def on_checkpoint(self, step, state, log, final):
        pass


def build_spec(source: str, pac: int, sets: list[str]) -> GanSpec:
    spec = {"model": "gan", "dataset": source, "arch": "mlp", "z_dim": 2, "pac": pac,
            "train": {"log_every": 10_000_000, "checkpoint_every": 10_000_000}}
    for item in sets:
        key, value = item.split("=", 1)
        *parents, leaf = key.split(".")
        node = spec
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return GanSpec.model_validate(spec)


@torch.no_grad()
def probe(model, raw, std: float, seed: int) -> dict[str, float]:
    """D's accuracy on fresh real / fake packs; the protocol's modes and high quality."""
    gen = torch.Generator().manual_seed(10_000 + seed)
    real = mixture(raw["source"], 2400, std, seed=10_000 + seed, radius=raw["radius"]).x
    model.eval()
    fake = model.G(torch.randn(2400, model.spec.z_dim, generator=gen))
    real_acc = float((model.D(torch.from_numpy(real)) > 0).float().mean())
    fake_acc = float((model.D(fake) < 0).float().mean())
    samples = model.sample(2500, generator=torch.Generator().manual_seed(seed))
    model.train()
    raw["last_samples"] = samples.numpy()
    quality = mixture_modes(samples.numpy(), raw["centers"], std)
    return {"D_acc_real": real_acc, "D_acc_fake": fake_acc, **quality}


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    spec = build_spec(args.source, args.pac, args.set + [f"train.steps={args.steps}"])
    data = mixture(args.source, args.n_samples, args.std, seed=0, radius=args.radius)
    split = Split(kind="points", x=torch.from_numpy(data.x), labels=None, num_classes=0)
    torch.manual_seed(args.seed)
    model = registry.build(spec, split.shape, 0)
    engine = Engine(model, train=spec.train, seed=args.seed)
    raw = {"source": args.source, "centers": data.centers, "radius": args.radius}
    rows, started, train_s = [], time.perf_counter(), 0.0
    for until in range(args.every, args.steps + 1, args.every):
        t0 = time.perf_counter()
        engine.train = spec.train.model_copy(update={"steps": until})
        engine.fit(split, _Quiet())
        train_s += time.perf_counter() - t0
        rows.append({"step": until, **probe(model, raw, args.std, args.seed)})
        print(json.dumps(rows[-1]), flush=True)
    return {"spec": spec.model_dump(mode="json"), "seed": args.seed, "std": args.std, "source": args.source,
            "train_seconds": round(train_s, 2), "steps_per_s": round(args.steps / train_s, 1),
            "wall_seconds": round(time.perf_counter() - started, 2), "probes": rows,
            "samples": raw["last_samples"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", choices=("ring8", "grid25"), default="grid25")
    parser.add_argument("--pac", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--std", type=float, default=0.05)
    parser.add_argument("--radius", type=float, default=2.0, help="ring8 only")
    parser.add_argument("--n-samples", type=int, default=22_500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", nargs="*", default=[])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    result = run(args)
    np.save(args.out.removesuffix(".json") + ".samples.npy", result.pop("samples"))
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)
    print(f"{args.steps} steps in {result['train_seconds']} s ({result['steps_per_s']} steps/s)")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
