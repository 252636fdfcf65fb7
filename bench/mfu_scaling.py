"""How close a training step runs to the machine's limit, and what all-reduce costs per step.

One run, one machine state:

1. the matmul peak: best of 5 products of two 4096 x 4096 float32 matrices (2 threads);
2. per model: the FLOPs of one training step of the engine (``torch.utils.flop_counter``,
   forward and backward, every phase), its step time in-process (2 threads, after warm-up,
   the best of 3 blocks of 100 steps), and their ratio to the peak (MFU);
3. all-reduce: two processes on this machine with gloo (what CPU DDP uses), the median time to
   all-reduce float32 buffers from 4 KB to 16 MB; the ring model T(N) = 2(N-1)a + 2(N-1)/N S/B
   takes its latency a from the smallest and its bandwidth B from the largest and, with the
   measured compute per
   step, predicts DDP's efficiency (weak scaling, no overlap of all-reduce with backward: a
   lower bound) at 8 and 64 workers;
4. the GPU estimate, for DCGAN-64 (64 x 64 RGB, width 64, batch 64 per GPU: the GPU section's
   model): its FLOPs and gradient bytes are counted here, but its step time on a GPU and the
   interconnect figures are assumptions, stated in GPU_* below, not measurements (no GPU here).

    .venv/bin/python bench/mfu_scaling.py      (needs data/prepared from `make repro`)

Writes bench/results/mfu_scaling.json.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genflow import config  # noqa: E402
from genflow.data.loader import BatchPlan  # noqa: E402
from genflow.io import code_revision  # noqa: E402
from genflow.train.worker import build_engine  # noqa: E402
from genflow.train.worker_config import worker_config  # noqa: E402

MODELS = ("gan_digits", "vaegan_digits", "gan_grid25")
SIZES_BYTES = [4 << 10, 64 << 10, 1 << 20, 4 << 20, 16 << 20]
# Stated, not measured: NCCL ring bus bandwidth and per-hop latency, inside a node (NVLink) and
# across nodes (one 400 Gb/s InfiniBand link per GPU); the compute estimate assumes 40 % MFU.
GPU_LINKS = {"8 GPUs, one node (NVLink)": (8, 200e9, 10e-6), "64 GPUs, 8 nodes (IB 400 Gb/s)": (64, 40e9, 30e-6)}
H100_BF16_DENSE = 989e12
GPU_MFU, GPU_STEP_FLOOR_S = 0.4, 1e-3  # a GAN step is ~200 kernels: launch-bound below ~1 ms
DCGAN64 = {"model": "gan", "dataset": "sprites64", "arch": "conv", "loss": "ns", "z_dim": 128, "width": 64,
           "train": {"batch_size": 64}}


def matmul_peak(n: int = 4096, repeat: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeat))
    return 2 * n ** 3 / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def step_profile(name: str, params, steps: int = 100) -> dict:
    engine, data = build_engine(worker_config(name, params, ROOT / "data" / "prepared").replace(threads=2))
    plan = BatchPlan(len(data), engine.train.batch_size, 0, 0, 1)
    for _ in range(20):
        engine.train_step(data, plan)
    with FlopCounterMode(display=False) as counter:
        engine.train_step(data, plan)
    flops = counter.get_total_flops()
    # the best of 3 blocks, like the matmul peak: the machine's capability, not its noise
    seconds = min(_timed(lambda: [engine.train_step(data, plan) for _ in range(steps)]) for _ in range(3)) / steps
    n_params = sum(p.numel() for net in engine.model.network_names
                   for p in getattr(engine.model, net).parameters())
    return {"flops_per_step": flops, "step_s": seconds, "achieved_flops_per_s": flops / seconds,
            "grad_bytes_per_step": 4 * n_params}


def dcgan64_counts() -> dict:
    """FLOPs and gradient bytes of one DCGAN-64 training step, counted on random images."""
    from genflow.data.loader import Split
    from genflow.models import registry
    from genflow.models.specs import SPEC_BY_MODEL
    from genflow.train.engine import Engine

    spec = SPEC_BY_MODEL["gan"].model_validate(DCGAN64)
    model = registry.build(spec, (3, 64, 64), 0)
    engine = Engine(model, train=spec.train, seed=0)
    images = Split(kind="image", x=torch.randint(0, 256, (256, 3, 64, 64), dtype=torch.uint8), labels=None,
                   num_classes=0)
    with FlopCounterMode(display=False) as counter:
        engine.train_step(images, BatchPlan(len(images), spec.train.batch_size, 0, 0, 1))
    n_params = sum(p.numel() for net in ("G", "D") for p in getattr(model, net).parameters())
    return {"flops_per_step": counter.get_total_flops(), "grad_bytes_per_step": 4 * n_params}


def _allreduce_worker(rank: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    times = {}
    for size in SIZES_BYTES:
        buf = torch.ones(size // 4)
        for _ in range(5):
            dist.all_reduce(buf)
        samples = []
        for _ in range(50):
            dist.barrier()
            samples.append(_timed(lambda: dist.all_reduce(buf)))
        times[size] = statistics.median(samples)
    if rank == 0:
        queue.put(times)
    dist.destroy_process_group()


def allreduce_times() -> dict[int, float]:
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    port = 29500 + os.getpid() % 1000
    procs = [ctx.Process(target=_allreduce_worker, args=(rank, port, queue)) for rank in range(2)]
    for proc in procs:
        proc.start()
    times = queue.get()
    for proc in procs:
        proc.join()
    return times


def fit_ring(times: dict[int, float]) -> tuple[float, float]:
    """The ring at N = 2, T = 2a + S/B: latency a from the smallest buffer (where S/B is
    negligible), bandwidth B from the largest (where 2a is)."""
    small, large = min(times), max(times)
    latency = times[small] / 2
    return latency, large / max(times[large] - 2 * latency, 1e-9)


def ring_time(n: int, size: float, latency: float, bandwidth: float) -> float:
    return 2 * (n - 1) * latency + 2 * (n - 1) / n * size / bandwidth


def cpu_scaling(profile: dict, latency: float, bandwidth: float) -> dict:
    compute, size = profile["step_s"], profile["grad_bytes_per_step"]
    return {"compute_s_per_step": compute, "allreduce_s_at_2": ring_time(2, size, latency, bandwidth),
            "efficiency": {n: round(compute / (compute + ring_time(n, size, latency, bandwidth)), 3)
                           for n in (2, 8, 64)}}


def gpu_scaling(counts: dict) -> dict:
    compute = max(counts["flops_per_step"] / (GPU_MFU * H100_BF16_DENSE), GPU_STEP_FLOOR_S)
    size = counts["grad_bytes_per_step"] / 2  # bf16 gradients
    return {**counts, "compute_s_per_step_assumed": compute,
            "efficiency": {label: round(compute / (compute + ring_time(n, size, lat, bw)), 3)
                           for label, (n, bw, lat) in GPU_LINKS.items()}}


def main() -> None:
    torch.set_num_threads(2)
    params = config.load(ROOT / "params.yaml")
    peak = matmul_peak()
    print(f"matmul peak (2 threads): {peak / 1e9:.1f} GFLOP/s", flush=True)
    profiles = {}
    for name in MODELS:
        profiles[name] = step_profile(name, params)
        profiles[name]["mfu"] = profiles[name]["achieved_flops_per_s"] / peak
        print(f"{name}: {profiles[name]['flops_per_step'] / 1e6:.1f} MFLOP/step, "
              f"{1 / profiles[name]['step_s']:.1f} steps/s, MFU {profiles[name]['mfu']:.1%}", flush=True)
    times = allreduce_times()
    latency, bandwidth = fit_ring(times)
    print(f"gloo all-reduce, 2 processes: latency {latency * 1e6:.0f} us, bandwidth {bandwidth / 1e9:.2f} GB/s")
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d"),
              "code_revision": code_revision(ROOT), "matmul_peak_flops_per_s": peak,
              "models": profiles, "allreduce_s_by_bytes": {str(k): v for k, v in times.items()},
              "ring_fit": {"latency_s": latency, "bandwidth_bytes_per_s": bandwidth},
              "cpu_scaling": {name: cpu_scaling(p, latency, bandwidth) for name, p in profiles.items()},
              "gpu_assumptions": {"links": {k: {"n": n, "bus_bandwidth_bytes_per_s": bw, "latency_s": lat}
                                            for k, (n, bw, lat) in GPU_LINKS.items()},
                                  "mfu": GPU_MFU, "step_floor_s": GPU_STEP_FLOOR_S,
                                  "h100_bf16_dense_flops_per_s": H100_BF16_DENSE},
              "gpu_scaling_estimate": {"dcgan64": gpu_scaling(dcgan64_counts())}}
    out = ROOT / "bench" / "results" / "mfu_scaling.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("cpu_scaling", "gpu_scaling_estimate")}, indent=2))


if __name__ == "__main__":
    main()
