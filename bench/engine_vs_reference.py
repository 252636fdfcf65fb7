"""The engine's step against the reference loop's, in one process, alternating blocks.

Different processes on this shared VM run up to 20 % apart (bench/train_throughput.py), so
this A/B runs both loops in the same process, in alternating blocks of 100 steps, 8 rounds,
and keeps each one's best block (its speed when the machine lets it). It also runs the
engine with parts of its step changed, to say where a difference comes from:

  reference          bench/reference_dcgan.py's loop (the official DCGAN example's structure)
  engine             genflow's Engine.train_step for `gan_digits`, as the train stage runs it
                     (params.yaml: NHWC memory layout, `train.channels_last`)
  engine_nchw        the same in the reference's memory layout: the like-for-like comparison
  engine_nchw_fresh  engine_nchw, but G's step draws fresh noise and runs G again, as the engine
                     did before it reused the D step's fake batch (the example reuses it)
  engine_nchw_no_check  engine_nchw without the per-step finiteness check of the weights

    .venv/bin/python bench/engine_vs_reference.py      (needs data/prepared/digits)

Writes bench/results/engine_vs_reference.json.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from genflow import config  # noqa: E402
from genflow.data.loader import BatchPlan  # noqa: E402
from genflow.io import code_revision  # noqa: E402
from genflow.train.worker import build_engine  # noqa: E402
from genflow.train.worker_config import worker_config  # noqa: E402
from reference_dcgan import ReferenceDCGAN  # noqa: E402

MODEL, BLOCK, ROUNDS = "gan_digits", 100, 8


def engine_stepper(nhwc: bool = True, reuse_fake: bool = True, check: bool = True):
    sets = [] if nhwc else [f"models.{MODEL}.train.channels_last=false"]
    params = config.load(ROOT / "params.yaml", sets)
    engine, data = build_engine(worker_config(MODEL, params, ROOT / "data" / "prepared").replace(threads=2))
    # the ablations only: training never runs without the check, and reuses the fake when n_critic is 1
    if not reuse_fake:
        engine.model._reuse_fake = False
        engine.phases[0].tracks = ()
    if not check:
        engine._check_weights = lambda: None
    plan = BatchPlan(len(data), engine.train.batch_size, 0, 0, 1)
    return lambda: engine.train_step(data, plan)


def main() -> None:
    torch.set_num_threads(2)
    steppers = {"reference": ReferenceDCGAN().step, "engine": engine_stepper(),
                "engine_nchw": engine_stepper(nhwc=False),
                "engine_nchw_fresh": engine_stepper(nhwc=False, reuse_fake=False),
                "engine_nchw_no_check": engine_stepper(nhwc=False, check=False)}
    for step in steppers.values():  # warm-up
        for _ in range(30):
            step()
    blocks: dict[str, list[float]] = {name: [] for name in steppers}
    for _ in range(ROUNDS):
        for name, step in steppers.items():
            start = time.perf_counter()
            for _ in range(BLOCK):
                step()
            blocks[name].append(BLOCK / (time.perf_counter() - start))
    best = {name: max(rates) for name, rates in blocks.items()}
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d"),
              "code_revision": code_revision(ROOT), "model": MODEL, "threads": 2, "block_steps": BLOCK,
              "rounds": ROUNDS, "steps_per_s_by_block": {k: [round(r, 1) for r in v] for k, v in blocks.items()},
              "best_steps_per_s": {k: round(v, 1) for k, v in best.items()},
              "engine_vs_reference": round(best["engine"] / best["reference"], 3),
              "engine_nchw_vs_reference": round(best["engine_nchw"] / best["reference"], 3)}
    out = ROOT / "bench" / "results" / "engine_vs_reference.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("best_steps_per_s", "engine_vs_reference",
                                                       "engine_nchw_vs_reference")}, indent=2))


if __name__ == "__main__":
    main()
