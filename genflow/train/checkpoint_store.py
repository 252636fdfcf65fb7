"""A run's resume state: the newest few checkpoints, and the newest one that is intact.

Each checkpoint is its own ``step_<N>/`` directory, swapped in whole (``atomic_dir``),
and the previous one is only pruned after the new one is complete. A checkpoint that
was truncated or corrupted afterwards (disk full, a bad copy, bit rot) fails its sha256
check on resume; the store then says so and falls back to the one before it, instead of
stopping the run or, worse, silently restarting it from scratch.

``resume`` goes further than the hash, which a forger can rewrite along with the file: a
candidate must also load (weights-only), hold a training state of the right types, fit
the freshly built model and optimizers tensor for tensor, and lie within the run's steps.
Whatever fails is skipped with ``skipping checkpoint <path>: <why>``. When nothing usable
is left the run starts from step 0 and says so: training is deterministic, so this costs
time but gives the very result an uninterrupted run would, and refusing instead would stop
a stage (or a sweep trial) on something only deleting the directory by hand could fix.
"""
from __future__ import annotations

import posixpath
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

from genflow.errors import DataError
from genflow.io import atomic_dir
from genflow.train import checkpoint

PREFIX = "step_"


def _step_of(path: Path) -> int:
    return int(path.name[len(PREFIX):])


def _warn(message: str) -> None:
    sys.stderr.write(f"[genflow] {message}\n")
    sys.stderr.flush()


def first_intact(candidates: Iterable[Any], verify: Callable[[Any], Any], label: Callable[[Any], str] = str):
    """The first candidate (newest first) that ``verify`` accepts, warning about each one it skips."""
    for candidate in candidates:
        try:
            verify(candidate)
            return candidate
        except DataError as err:
            _warn(f"skipping checkpoint {label(candidate)}: {err}; trying the previous one")
    return None


class CheckpointStore:
    """``root/step_<N>/`` checkpoints of one run; keeps the newest ``keep``."""

    def __init__(self, root: str | Path, keep: int = 2):
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.root, self.keep = Path(root), keep

    def checkpoints(self) -> list[Path]:
        """Every complete-looking checkpoint directory, newest first."""
        if not self.root.is_dir():
            return []
        dirs = [d for d in self.root.iterdir()
                if d.is_dir() and d.name.startswith(PREFIX) and d.name[len(PREFIX):].isdigit()]
        return sorted(dirs, key=_step_of, reverse=True)

    def save(self, state: dict[str, Any], log: list[dict[str, Any]], meta: dict[str, Any]) -> Path:
        path = self.root / f"{PREFIX}{int(state['step']):09d}"
        with atomic_dir(path) as tmp:
            checkpoint.save(tmp, state, log, meta)
        for old in self.checkpoints()[self.keep:]:
            shutil.rmtree(old, ignore_errors=True)
        return path

    def latest(self) -> Path | None:
        """The newest checkpoint whose sha256 checks out (None: start from scratch)."""
        return first_intact(self.checkpoints(), checkpoint.verify)

    def describe_latest(self) -> str:
        latest = self.latest()
        return f"{latest} (step {_step_of(latest)})" if latest else "none (no checkpoint was written yet)"


# what Engine.state_dict() holds
RESUME_STATE_TYPES = {"model": dict, "optimizers": list, "step": int, "rng": dict}
Candidates = None | str | Path | Iterable[str | Path | tuple[str, Path]]


def labelled(candidates: Candidates) -> Iterable[tuple[str, Path]]:
    """``(label, directory)`` pairs from a directory, several (newest first), or pairs already
    (the Ray path labels local copies with the checkpoint's URI); lazily, so that a copy is
    only made when it is tried."""
    if candidates is None:
        return []
    if isinstance(candidates, (str, Path)):
        return [(str(candidates), Path(candidates))]
    return (item if isinstance(item, tuple) else (str(item), Path(item)) for item in candidates)


def _one_line(err: BaseException) -> str:
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__
    return text if len(text) <= 300 else text[:299] + "…"


def _check_optimizer_shapes(engine) -> None:
    """Optimizer.load_state_dict checks the groups' sizes, not the tensors': a moment of the wrong
    shape would only fail at the first step, mid-run."""
    for index, optimizer in enumerate(engine.optimizers):
        for group in optimizer.param_groups:
            for param in group["params"]:
                for name, value in optimizer.state.get(param, {}).items():
                    if hasattr(value, "shape") and value.ndim > 0 and value.shape != param.shape:
                        raise DataError(f"optimizer {index}'s {name} has shape {tuple(value.shape)}, "
                                        f"its parameter {tuple(param.shape)}")


def restore_into(engine, state: dict[str, Any], log: list[dict[str, Any]]) -> None:
    """Load a training state into a freshly built engine, or raise DataError saying why it does not
    fit (the engine may then be half-loaded: build another)."""
    for key, kind in RESUME_STATE_TYPES.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise DataError(f"its state has no '{key}' {kind.__name__}")
    if not 0 <= state["step"] <= engine.train.steps:
        raise DataError(f"step {state['step']} is outside this run's 0..{engine.train.steps}")
    if len(state["optimizers"]) != len(engine.optimizers):
        raise DataError(f"{len(state['optimizers'])} optimizer states for {len(engine.optimizers)} optimizers")
    try:
        engine.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as err:
        raise DataError(f"does not fit this model ({_one_line(err)})") from None
    _check_optimizer_shapes(engine)
    engine.log = log


def resume(build: Callable[[], tuple[Any, Any]], candidates: Candidates) -> tuple[Any, Any, str | None]:
    """``build()``'s fresh ``(engine, data)``, loaded from the first candidate (newest first) that
    is usable; the label of that candidate, or None when training starts from step 0."""
    engine, data = build()
    touched, skipped = False, []
    for label, directory in labelled(candidates):
        try:
            state, log, _ = checkpoint.load(directory)
            if touched:  # a candidate that failed half-way through loading left its mark
                engine, data = build()
            touched = True
            restore_into(engine, state, log)
            return engine, data, label
        except DataError as err:
            skipped.append(label)
            _warn(f"skipping checkpoint {label}: {err}")
    if skipped:
        where = posixpath.dirname(skipped[-1].rstrip("/"))
        _warn(f"no usable checkpoint left in {where} ({len(skipped)} skipped): training starts from step 0")
        if touched:
            engine, data = build()
    return engine, data, None
