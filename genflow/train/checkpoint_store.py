"""A run's resume state: the newest few checkpoints, and the newest one that is intact.

Each checkpoint is its own ``step_<N>/`` directory, swapped in whole (``atomic_dir``),
and the previous one is only pruned after the new one is complete. A checkpoint that
was truncated or corrupted afterwards (disk full, a bad copy, bit rot) fails its sha256
check on resume; the store then says so and falls back to the one before it, instead of
stopping the run or, worse, silently restarting it from scratch.
"""
from __future__ import annotations

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
