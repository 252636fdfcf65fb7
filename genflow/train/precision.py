"""Mixed precision and compilation for the engine (``train.precision``, ``train.compile``).

bf16 runs the convolutions and matmuls of every network's forward (and so their backward) in
bfloat16 under ``torch.autocast``, with fp32 master weights and fp32 Adam state: bf16 has
fp32's exponent range, so no loss scaler is needed. What would lose accuracy stays fp32:

* **the losses and penalties**: every network returns its outputs in fp32 (a forward hook),
  so the code of a phase that turns scores into a loss (softplus, means, squared errors,
  R1's gradient norm, KL terms) runs on fp32 tensors. CPU autocast's own fp32 list covers
  the named loss functions but not ``softplus`` or plain reductions, which would otherwise
  run in bf16 on bf16 scores (3 significant digits). Not covered: features a model reads
  through a method rather than a network call (``D.features`` in VAE-GAN's feature error and
  SRGAN's perceptual loss) stay bf16, so that squared error is taken in bf16; VAE-GAN's
  metrics in bf16 were within fp32's CI (docs/benchmarks.md), SRGAN's were not measured.
* **normalisation statistics**: BatchNorm's running mean and variance are fp32 buffers, and
  its batch statistics are accumulated in fp32 by the CPU and CUDA kernels for bf16 inputs.
* **the metrics**: evaluation, the probes and the exports run outside autocast, in fp32.

Measured speed and quality: docs/benchmarks.md ("bf16 and torch.compile").
"""
from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from genflow.errors import ConfigError


def autocast(device: torch.device, precision: str):
    """A fresh context manager per call: bf16 autocast, or nothing for fp32."""
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _to_fp32(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.float() if value.dtype == torch.bfloat16 else value
    if isinstance(value, tuple):
        return tuple(_to_fp32(v) for v in value)
    if isinstance(value, list):
        return [_to_fp32(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_fp32(v) for k, v in value.items()}
    return value


def _fp32_output_hook(module: nn.Module, args: tuple, output: Any) -> Any:
    return _to_fp32(output)


def return_fp32(networks: list[nn.Module]) -> None:
    """Every call of these networks returns fp32 tensors, whoever calls them (the phase
    through its wrapper, or a model calling its own tracked network directly)."""
    for net in networks:
        net.register_forward_hook(_fp32_output_hook)


def require_compiler(device: torch.device) -> None:
    """Refuse ``train.compile`` where its backend cannot build kernels: Inductor needs a C++
    compiler on CPU (``$CXX`` or g++) and Triton on CUDA, and without them it fails only at the
    first step, with a long traceback from deep inside the compiler stack."""
    import importlib.util
    import shutil
    import socket

    if device.type == "cuda":
        if importlib.util.find_spec("triton") is None:
            raise ConfigError("train.compile: true on a CUDA device needs Triton, which is not installed on "
                              f"{socket.gethostname()}; install it (pip install triton) or set train.compile: false")
        return
    from torch._inductor import config as inductor  # its documented settings: where it looks for the compiler

    cxx = inductor.cpp.cxx[-1] if isinstance(inductor.cpp.cxx, (list, tuple)) else inductor.cpp.cxx
    if not cxx or shutil.which(cxx) is None:
        raise ConfigError(f"train.compile: true on CPU needs a C++ compiler, and {cxx!r} ($CXX, else g++) is not "
                          f"on PATH on {socket.gethostname()}; install one (e.g. apt install g++) or set "
                          "train.compile: false (it is slower on small CPU models anyway: docs/benchmarks.md)")


def compiled(wrappers: dict[str, nn.Module]) -> dict[str, nn.Module]:
    """``torch.compile`` of each network's training wrapper (the module or its DDP wrapper).

    Only the wrappers are compiled: the model keeps its own modules, so state dicts and
    checkpoints carry no ``_orig_mod.`` prefix, and evaluation runs eagerly. The cost is paid
    at the first steps (and again if a shape changes, e.g. the last batch of a different size)."""
    return {name: torch.compile(wrapper, dynamic=False) for name, wrapper in wrappers.items()}
