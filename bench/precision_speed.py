"""bf16 and torch.compile against fp32: steps/s, images/s and MFU against both matmul peaks.

One process, 2 torch threads. In the same run it measures:

1. the machine's two peaks: the best of 5 products of two 2048 x 2048 matrices in fp32 and in
   bf16 (this CPU has avx512_bf16);
2. per model, the engine's training step in fp32 and in bf16 (genflow/train/precision.py), as
   the train stage builds it (params.yaml's layout: NHWC for the conv models), in alternating
   timed blocks of ~1 s, ROUNDS rounds, each variant's best block (its speed when this shared
   VM lets it; the machine drifts by 30 % between hours, so only side-by-side ratios count);
3. for the DCGAN-style GANs, `gan_digits` (8 px) and `gan_sprites` (32 px, presets/systems):
   the reference loop (bench/reference_dcgan.py, the official DCGAN example's structure,
   same G and D, fp32 NCHW; and with the example's step under bf16 autocast), and the engine
   in one Ray actor (its own worker process, as a Ray task runs the engine), in the same
   rotation;
4. torch.compile (``--compile``): each model's compile time (first steps) and its steps/s.

A step's FLOPs come from ``torch.utils.flop_counter`` (matmuls and convolutions of every
phase, forward and backward; the same count in both precisions). MFU = FLOPs x steps/s over
a peak: against fp32's and against bf16's.

    .venv/bin/python bench/precision_speed.py [--compile] [--rounds 5]
      (needs data/prepared/{digits,ring8,grid25} and presets/systems/data/prepared/sprites:
       `make repro`, or stages/prepare.py --dataset <name> in each project)

Writes bench/results/precision_speed.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from genflow import config  # noqa: E402
from genflow.data.loader import BatchPlan  # noqa: E402
from genflow.io import code_revision  # noqa: E402
from genflow.train.worker import build_engine  # noqa: E402
from genflow.train.worker_config import worker_config  # noqa: E402
from reference_dcgan import ReferenceDCGAN  # noqa: E402

SYSTEMS = ROOT / "presets" / "systems"
# (params file, data root, model): the default roster's families, and the 32-px systems GANs
MODELS = [(ROOT / "params.yaml", ROOT / "data" / "prepared", name) for name in
          ("gan_digits", "wgangp_digits", "vae_digits", "vaegan_digits", "gan_ring8", "gan_grid25")] + \
         [(SYSTEMS / "params.yaml", SYSTEMS / "data" / "prepared", name) for name in ("gan_sprites", "stylegan_sprites")]
REFERENCED = ("gan_digits", "gan_sprites")  # the DCGAN-style GANs: beside the reference loop and in Ray
THREADS = 2  # --threads: the default roster's seeds train with 1 thread each (ray.threads_per_worker)


def set_threads(threads: int) -> None:
    global THREADS
    THREADS = threads
    torch.set_num_threads(threads)


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeat: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best


def engine(params_path: Path, data_root: Path, name: str, sets: list[str]):
    params = config.load(params_path, sets)
    eng, data = build_engine(worker_config(name, params, data_root).replace(threads=THREADS))
    plan = BatchPlan(len(data), eng.train.batch_size, 0, 0, 1)
    return eng, (lambda: eng.train_step(data, plan))


def flops_per_step(step) -> int | None:
    """None where the counter cannot follow the step (a gradient penalty's double backward)."""
    try:
        with FlopCounterMode(display=False) as counter:
            step()
    except RuntimeError:
        return None
    return counter.get_total_flops()


class RayEngine:
    """The engine in a Ray actor (its own process, 2 threads), stepped in blocks on request."""

    def __init__(self, params_path: str, data_root: str, name: str, sets: list[str], threads: int):
        set_threads(threads)
        _, self.step = engine(Path(params_path), Path(data_root), name, sets)

    def block(self, steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        return steps / (time.perf_counter() - start)


def ray_stepper(params_path: Path, data_root: Path, name: str, sets: list[str]):
    import ray

    if not ray.is_initialized():
        # one CPU per actor's worth of scheduling: the actors take turns, never run together
        ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    actor = ray.remote(num_cpus=1)(RayEngine).remote(str(params_path), str(data_root), name, sets, THREADS)
    return lambda steps: ray.get(actor.block.remote(steps))


def timed_block(step, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def variants(compile_too: bool) -> dict[str, dict]:
    """name -> {model, batch, step (a callable) or block (steps -> steps/s), flops_of (a model)}."""
    found: dict[str, dict] = {}
    for params_path, data_root, name in MODELS:
        for precision in ("fp32", "bf16"):
            sets = [f"models.{name}.train.precision={precision}"]
            eng, step = engine(params_path, data_root, name, sets)
            found[f"{name}/{precision}"] = {"model": name, "precision": precision, "step": step,
                                            "batch": eng.train.batch_size}
            if compile_too:
                started = time.perf_counter()
                eng, step = engine(params_path, data_root, name, sets + [f"models.{name}.train.compile=true"])
                for _ in range(3):  # compiles G and D (and the last-batch shapes, if any)
                    step()
                found[f"{name}/{precision}+compile"] = {"model": name, "precision": precision, "step": step,
                                                        "batch": eng.train.batch_size,
                                                        "compile_s": time.perf_counter() - started}
    for params_path, data_root, name in MODELS:
        if name not in REFERENCED:
            continue
        batch = found[f"{name}/fp32"]["batch"]
        for label, bf16 in (("reference", False), ("reference_bf16", True)):
            loop = ReferenceDCGAN(params_path, name, data_root, bf16=bf16)
            found[f"{name}/{label}"] = {"model": name, "precision": "bf16" if bf16 else "fp32",
                                        "step": loop.step, "batch": batch}
        for precision in ("fp32", "bf16"):
            found[f"{name}/{precision} ray actor"] = {
                "model": name, "precision": precision, "batch": batch,
                "block": ray_stepper(params_path, data_root, name, [f"models.{name}.train.precision={precision}"])}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--block-seconds", type=float, default=1.0)
    parser.add_argument("--compile", action="store_true", help="also measure train.compile: true")
    parser.add_argument("--threads", type=int, default=THREADS)
    parser.add_argument("--models", nargs="*", help="only these models (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "precision_speed.json")
    args = parser.parse_args()
    set_threads(args.threads)
    if args.models:
        MODELS[:] = [m for m in MODELS if m[2] in args.models]
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"matmul peaks: fp32 {peaks['fp32'] / 1e9:.1f}, bf16 {peaks['bf16'] / 1e9:.1f} GFLOP/s", flush=True)
    runs = variants(args.compile)
    flops = {}
    for key, run in runs.items():
        if run["model"] not in flops and "step" in run and run["precision"] == "fp32":
            flops[run["model"]] = flops_per_step(run["step"])
        block = run.get("block") or (lambda steps, step=run["step"]: timed_block(step, steps))
        block(3)  # warm-up
        rate = block(5)
        run["block_steps"] = max(5, int(rate * args.block_seconds))
        run["block"], run["rates"] = block, []
    for round_ in range(args.rounds):
        for key, run in runs.items():
            run["rates"].append(run["block"](run["block_steps"]))
        print(f"round {round_ + 1}/{args.rounds}: " + ", ".join(f"{k} {r['rates'][-1]:.1f}" for k, r in runs.items()),
              flush=True)
    table = {}
    for key, run in runs.items():
        best, model_flops = max(run["rates"]), flops[run["model"]]
        table[key] = {"steps_per_s_by_block": [round(r, 2) for r in run["rates"]], "best_steps_per_s": round(best, 2),
                      "images_per_s": round(best * run["batch"]), "flops_per_step": model_flops,
                      "mfu_vs_fp32_peak": model_flops and round(model_flops * best / peaks["fp32"], 4),
                      "mfu_vs_bf16_peak": model_flops and round(model_flops * best / peaks["bf16"], 4),
                      **({"compile_s": round(run["compile_s"], 1)} if "compile_s" in run else {})}
    ratios = {f"{name}: bf16 / fp32": round(table[f"{name}/bf16"]["best_steps_per_s"]
                                            / table[f"{name}/fp32"]["best_steps_per_s"], 3) for _, _, name in MODELS}
    ratios.update({f"{key}: compiled / eager": round(row["best_steps_per_s"] / table[key.split("+")[0]]["best_steps_per_s"], 3)
                   for key, row in table.items() if key.endswith("+compile")})
    for name in [n for n in REFERENCED if f"{n}/reference" in table]:
        reference = table[f"{name}/reference"]["best_steps_per_s"]
        for variant in ("fp32", "bf16", "fp32 ray actor", "bf16 ray actor", "reference_bf16"):
            key = f"{name}/{variant}"
            ratios[f"{key} / fp32 reference"] = round(table[key]["best_steps_per_s"] / reference, 3)
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the end",
              "date": time.strftime("%Y-%m-%d %H:%M"), "code_revision": code_revision(ROOT),
              "torch": torch.__version__, "threads": THREADS, "rounds": args.rounds,
              "matmul_peak_flops_per_s": {k: round(v) for k, v in peaks.items()}, "ratios": ratios, "variants": table}
    out = args.out
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(ratios, indent=2))


if __name__ == "__main__":
    main()
