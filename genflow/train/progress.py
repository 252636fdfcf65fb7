"""What a person sees while a run trains: one labelled line per log step, or a live bar.

Several seeds (and sweep trials) train at once and their output interleaves, so every line
names its run (``gan_digits seed 1``, ``gan_ring8 trial 3f2a seed 0``) and says where it is:
``step 350/2000 (18 %)``, elapsed time and ETA, the losses and the speed. In a terminal the
same facts drive a live bar instead (tqdm in-process; Ray's tqdm_ray on Ray workers, passed in
as ``bar`` by integrations/, so this module stays free of Ray); in logs and CI, plain lines.

The driver decides (``progress_mode``) because a Ray worker's stdout is never a terminal,
even when the stage's is.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable

# keys the engine adds to a log row for the progress display only (they are not in the log)
RATE, TOTAL, ELAPSED = "steps/s", "total", "elapsed_s"
_NOT_SHOWN = {"step", "epoch", RATE, TOTAL, ELAPSED}


def progress_mode() -> str:
    """``bar`` when the driver writes to a terminal, else ``lines``; GENFLOW_PROGRESS overrides."""
    chosen = os.environ.get("GENFLOW_PROGRESS", "").strip().lower()
    if chosen in ("bar", "lines"):
        return chosen
    return "bar" if sys.stdout.isatty() and _columns() >= 40 else "lines"


def _columns() -> int:
    """The terminal's width; 0 where it has none (a pseudo-terminal nobody sized draws no bar)."""
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError):
        return 0


def run_label(name: str, seed: int, trial: str | None = None) -> str:
    return f"{name} trial {trial} seed {seed}" if trial else f"{name} seed {seed}"


def clock(seconds: float) -> str:
    """``0:42``, ``12:05``, ``1:02:05``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def losses(row: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in row.items() if k not in _NOT_SHOWN)


def progress_line(label: str, step: int, row: dict[str, Any]) -> str:
    """``[gan_digits seed 1] step 350/2000 (18 %) 0:12 elapsed, ETA 0:55 | D_loss=0.61 G_loss=1.9 | 27.3 steps/s``"""
    total, rate, elapsed = row.get(TOTAL), row.get(RATE), row.get(ELAPSED)
    where = f"step {step}" if not total else f"step {step}/{total} ({100 * step // total} %)"
    if elapsed is not None:
        where += f" {clock(elapsed)} elapsed"
        if total and rate:
            where += f", ETA {clock((total - step) / rate)}"
    parts = [f"[{label}] {where}", losses(row)]
    if rate:
        parts.append(f"{rate:.1f} steps/s")
    return " | ".join(p for p in parts if p)


class ProgressPrinter:
    """Plain lines on stdout, or a live bar made by ``bar(desc=, total=)`` (tqdm's interface)."""

    def __init__(self, label: str, bar: Callable[..., Any] | None = None):
        self.label, self._make_bar, self._bar = label, bar, None

    @property
    def live(self) -> bool:
        """Whether this run shows a live bar (else plain lines)."""
        return self._make_bar is not None

    def show(self, step: int, row: dict[str, Any]) -> None:
        if self._make_bar is None:
            # sys.stdout, not print: Ray Train V2 patches print() into a logger that echoes twice
            sys.stdout.write(progress_line(self.label, step, row) + "\n")
            sys.stdout.flush()
            return
        if self._bar is None:
            self._bar = self._make_bar(desc=self.label, total=row.get(TOTAL))
        self._bar.update(step - self._bar.n)
        self._bar.set_description(f"{self.label} {losses(row)}")
        if row.get(TOTAL) and step >= row[TOTAL]:
            self.close()

    def note(self, text: str) -> None:
        """A line about the run (resumed, probed) that is not a step."""
        sys.stdout.write(f"[{self.label}] {text}\n")
        sys.stdout.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def terminal_bar() -> Callable[..., Any]:
    """In-process bars: tqdm (installed with Ray and DVC), on stderr as tqdm does."""
    from tqdm import tqdm

    return lambda desc, total: tqdm(desc=desc, total=total, unit="step", dynamic_ncols=True)
