"""The one training engine: runs any registered model through its phases.

Plain PyTorch, no Ray import. Under ``torch.distributed`` (Ray Train, torchrun)
each network is wrapped in its own DDP; in-process it runs unwrapped. What to
do with logs and checkpoints is left to a :class:`Reporter`, so the same loop
serves the in-process mode, Ray Train workers and the tests.
"""
from __future__ import annotations

import copy
import time
import warnings
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn

from genflow.data.loader import BatchPlan, Split
from genflow.errors import DivergenceError
from genflow.models.base import GenerativeModel, StepContext
from genflow.train import precision
from genflow.train.checkpoint import rng_state, set_rng_state
from genflow.train.monitor import Monitor
from genflow.train.progress import ELAPSED, RATE, TOTAL, ProgressPrinter


class Reporter(Protocol):
    def on_log(self, step: int, row: dict[str, float]) -> None: ...

    def on_checkpoint(self, step: int, state: dict[str, Any] | None, log: list[dict[str, Any]], final: bool) -> None:
        """Called on every rank at the same steps (Ray's report is a barrier); ``state`` only on rank 0."""


class PrintReporter:
    """Progress on stdout (genflow.train.progress: labelled lines, or a live bar made by ``bar``);
    keeps an in-memory copy of each checkpoint (tests, quick runs)."""

    def __init__(self, label: str = "train", bar=None):
        self.label, self.checkpoints = label, []
        self.progress = ProgressPrinter(label, bar)

    def on_log(self, step: int, row: dict[str, float]) -> None:
        self.progress.show(step, row)

    def on_checkpoint(self, step, state, log, final) -> None:
        if state is not None:  # a snapshot: state_dict() tensors alias the live weights
            self.checkpoints.append((step, copy.deepcopy(state)))


def distributed() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _wrap(net: nn.Module, device: torch.device) -> nn.Module:
    # broadcast_buffers=False: BatchNorm statistics change between the forward passes of one
    # phase (real, then fake); each rank keeps its own, as DCGAN-style training expects.
    # (torch 2.13 suggests forward_sync_buffers, which still syncs at every init; keep this.)
    device_ids = [device.index] if device.type == "cuda" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return nn.parallel.DistributedDataParallel(net, device_ids=device_ids, broadcast_buffers=False)


class Engine:
    """Holds the optimizers and wrappers of one model and steps it through its phases."""

    # evaluation during training (genflow.train.monitor), set by whoever builds the run; its
    # state (best snapshot, patience) is part of every checkpoint when it probes
    monitor: Monitor | None = None

    def __init__(self, model: GenerativeModel, *, train, seed: int, device: torch.device | None = None):
        self.model, self.train, self.seed = model, train, seed
        self.device = device or torch.device("cpu")
        self.rank, self.world_size = distributed()
        self.memory_format = torch.channels_last if train.channels_last and model.is_image else None
        if self.memory_format is not None:
            model.to(memory_format=self.memory_format)
        self.phases = model.phases()
        self.wrappers = {name: _wrap(getattr(model, name), self.device) if self.world_size > 1
                         else getattr(model, name) for name in model.network_names}
        if train.precision == "bf16":
            precision.return_fp32([getattr(model, name) for name in model.network_names])
        if train.compile:
            precision.require_compiler(self.device)
            self.wrappers = precision.compiled(self.wrappers)
        # cached: walking the modules for every phase was 4-8 % of a small model's step
        self._network_params = {name: list(getattr(model, name).parameters()) for name in model.network_names}
        # fused: one kernel per optimizer step instead of a few per tensor; 13 % more steps/s
        # for the small MLP GANs on CPU, no change for conv nets (docs/benchmarks.md)
        self.optimizers = [torch.optim.Adam(self._owned_params(p.owns), lr=p.lr, betas=(train.beta1, train.beta2),
                                            fused=True) for p in self.phases]
        self.batches_per_step = max(p.repeats for p in self.phases)
        self._parameters = list(model.parameters())  # checked for finiteness after every step
        self._grad_on: set[str] = set()  # every network starts frozen; each phase thaws what it owns
        model.requires_grad_(False)
        self.step = 0
        self.log: list[dict[str, Any]] = []

    def _autocast(self):
        return precision.autocast(self.device, self.train.precision)

    def _owned_params(self, owns: tuple[str, ...]) -> list[nn.Parameter]:
        return [p for name in owns for p in self._network_params[name]]

    def _freeze_all_but(self, owns: tuple[str, ...]) -> None:
        for name, params in self._network_params.items():
            if (name in self._grad_on) != (name in owns):
                for p in params:
                    p.requires_grad_(name in owns)
                self._grad_on ^= {name}
        self.model.set_active({name: self.wrappers[name] for name in owns})

    # -- state -----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {"model": self.model.state_dict(), "optimizers": [o.state_dict() for o in self.optimizers],
                 "step": self.step, "rng": rng_state()}
        if self.monitor is not None and self.monitor.active:  # absent when off: today's checkpoints, byte for byte
            state["monitor"] = self.monitor.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        for opt, opt_state in zip(self.optimizers, state["optimizers"]):
            opt.load_state_dict(opt_state)
        self.step = int(state["step"])
        set_rng_state(state["rng"])
        if self.monitor is not None and self.monitor.active:
            self.monitor.load_state_dict(state["monitor"])

    def apply_settings(self) -> None:
        """Set every optimiser's learning rate and Adam betas to this engine's spec. A loaded
        optimiser state brings back the values it was saved with (load_state_dict restores the
        param_groups whole): PBT loads a donor's state under perturbed values (genflow.sweep.pbt).
        The rest of a spec (n_critic, loss weights) already took effect when the engine was built."""
        for phase, optimizer in zip(self.phases, self.optimizers):
            for group in optimizer.param_groups:
                group["lr"], group["betas"] = phase.lr, (self.train.beta1, self.train.beta2)

    # -- one step --------------------------------------------------------------
    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=self.memory_format) if self.memory_format is not None else x

    def train_step(self, data: Split, plan: BatchPlan) -> dict[str, torch.Tensor]:
        if not self.model.training:  # train() walks every module: only when something switched it off
            self.model.train()
        batches = [data.batch(plan.indices(self.step * self.batches_per_step + r))
                   for r in range(self.batches_per_step)]
        batches = [(self._to_device(x), None if c is None else c.to(self.device)) for x, c in batches]
        logs: dict[str, torch.Tensor] = {}
        for index, (phase, opt) in enumerate(zip(self.phases, self.optimizers)):
            self._freeze_all_but(phase.owns + phase.tracks)
            for repeat in range(phase.repeats):
                ctx = StepContext(step=self.step, seed=self.seed, phase=index, repeat=repeat,
                                  rank=self.rank, world_size=self.world_size)
                with self._autocast():
                    loss, phase_logs = phase.loss(batches[repeat], ctx)
                if not torch.isfinite(loss):
                    raise DivergenceError(self.step, f"phase {phase.name} loss is {loss.item()}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            logs.update(phase_logs)
        self.model.set_active({})
        self.model.update_ema()
        self._check_weights()
        self.step += 1
        return logs

    def fit(self, data: Split, reporter: Reporter) -> list[dict[str, Any]]:
        """Train from ``self.step`` to ``train.steps`` (or an early stop); report logs and checkpoints."""
        t = self.train
        plan = BatchPlan(len(data), t.batch_size, self.seed, self.rank, self.world_size)
        started, first_step = time.perf_counter(), self.step
        while self.step < t.steps and not self._stopped():
            logs = self.train_step(data, plan)
            probed = self._probe(logs)
            final = self.step == t.steps or self._stopped()
            if self.step % t.log_every == 0 or final or probed:
                row = {"step": self.step, "epoch": plan.epoch_of(self.step - 1),
                       **{k: round(float(v), 6) for k, v in {**logs, **probed}.items()}}
                self.log.append(row)
                # rate, total and elapsed time go to the progress display only: the log must be reproducible
                elapsed = time.perf_counter() - started
                rate = (self.step - first_step) / max(elapsed, 1e-9)
                reporter.on_log(self.step, {**row, RATE: rate, TOTAL: t.steps, ELAPSED: elapsed})
            if self.step % t.checkpoint_every == 0 or final:
                state = self.state_dict() if self.rank == 0 else None
                reporter.on_checkpoint(self.step, state, list(self.log), final=final)
        return self.log

    def _stopped(self) -> bool:
        return self.monitor is not None and self.monitor.stopped

    def _probe(self, logs: dict[str, torch.Tensor]) -> dict[str, float]:
        """The monitor's probe of this step on rank 0 (nothing when none is due). The global RNGs
        are put back afterwards: probing must not change what training draws next. Under DDP
        rank 0's early stop is broadcast, so every rank leaves the loop at the same step."""
        monitor = self.monitor
        if monitor is None or not monitor.due(self.step, self.train.steps):
            return {}
        values = {}
        if self.rank == 0:
            saved = rng_state()
            values = monitor.observe(self.step, self.model.state_dict(), {k: float(v) for k, v in logs.items()})
            set_rng_state(saved)
        if self.world_size > 1:
            flag = torch.tensor([monitor.stopped_at], dtype=torch.int64, device=self.device)
            dist.broadcast(flag, src=0)
            monitor.stopped_at = int(flag.item())
        return values

    def _check_weights(self) -> None:
        """Every step, so no checkpoint ever holds a non-finite weight: one fused reduction
        over all parameters (2-4 % of a small step, docs/benchmarks.md), then a per-tensor
        search only on failure."""
        if torch.stack(torch._foreach_norm(self._parameters)).isfinite().all():
            return
        for name, p in self.model.named_parameters():
            if not torch.isfinite(p).all():
                raise DivergenceError(self.step, f"parameter {name} is not finite")
        raise DivergenceError(self.step, "the parameters' norm overflows float32")
