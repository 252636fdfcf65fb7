"""The diagnosis figure of docs/results/mixtures.md (issue #27), from the JSON the two
diagnosis scripts wrote:

    python bench/pacgan_figure.py --gan bench/results/pacgan_diagnosis_pac1.json \
        --pac bench/results/pacgan_diagnosis_pac4.json --d-only bench/results/pacgan_d_only.json \
        --out docs/images/pacgan-diagnosis.png

Panels: D's accuracy on fresh real and fake packs during training (GAN vs PacGAN4, the default
roster's grid25 setting); D alone against a fixed uniform fake (how many steps a packed D needs);
the final samples of both over the true means.
"""
from __future__ import annotations

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from genflow.data.embedded import mixture_centers  # noqa: E402


def _training(ax, runs: dict[str, dict]) -> None:
    for (label, run), color in zip(runs.items(), ("tab:blue", "tab:red")):
        steps = [row["step"] for row in run["probes"]]
        ax.plot(steps, [row["D_acc_real"] for row in run["probes"]], color=color, label=f"{label}: real packs")
        ax.plot(steps, [row["D_acc_fake"] for row in run["probes"]], color=color, ls="--",
                label=f"{label}: fake packs")
        ax.plot(steps, [row["high_quality"] for row in run["probes"]], color=color, ls=":",
                label=f"{label}: high quality")
    ax.axhline(0.5, color="grey", lw=0.5)
    ax.set(xlabel="training step", ylabel="D accuracy / share", ylim=(0, 1.02),
           title="in the GAN: D's accuracy and G's high quality")
    ax.legend(fontsize=6)


def _d_only(ax, rows: list[dict]) -> None:
    for row in rows:
        steps, real, fake = zip(*row["step_real_fake"])
        ax.plot(steps, (np.array(real) + np.array(fake)) / 2, label=row["label"])
    ax.axhline(0.5, color="grey", lw=0.5)
    ax.set(xlabel="D step", ylabel="balanced accuracy", ylim=(0.4, 1.02),
           title="D alone: real packs vs uniform packs")
    ax.legend(fontsize=6)


def _samples(ax, samples: np.ndarray, title: str) -> None:
    centers = mixture_centers("grid25")
    ax.scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.4)
    ax.scatter(centers[:, 0], centers[:, 1], s=12, marker="x", c="red")
    ax.set(xlim=(-6, 6), ylim=(-6, 6), aspect="equal", title=title)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name in ("gan", "pac", "d-only", "out"):
        parser.add_argument(f"--{name}", required=True)
    args = parser.parse_args()
    runs = {label: json.load(open(path)) for label, path in (("GAN", args.gan), ("PacGAN4", args.pac))}
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
    _training(axes[0], runs)
    _d_only(axes[1], json.load(open(args.d_only)))
    for ax, (label, path) in zip(axes[2:], (("GAN", args.gan), ("PacGAN4", args.pac))):
        last = runs[label]["probes"][-1]
        samples = np.load(path.removesuffix(".json") + ".samples.npy")
        _samples(ax, samples, f"{label}, step {last['step']}: {last['modes']} modes, "
                              f"{100 * last['high_quality']:.1f} % HQ")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)


if __name__ == "__main__":
    main()
