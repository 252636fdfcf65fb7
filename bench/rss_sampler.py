"""Peak resident memory (RSS) of the processes of a benchmark, sampled with psutil.

A background thread samples every process every ``interval`` seconds and files each one
under a role from its command line: the stage's driver (a direct child of the benchmark),
Ray's worker processes by their process title (a seed's task is titled with its run name,
``ray::<model>-s<seed>-<fingerprint>``; ``ray::RayTrainWorker``, ``ray::TrainController``,
``ray::_sample_and_embed``), everything else ignored. Peaks are
kept per (label, role) as the largest single process seen, in MB. Sampling misses spikes
shorter than the interval, so the figures are lower bounds.
"""
from __future__ import annotations

import os
import re
import threading
from contextlib import contextmanager

import psutil

ROLES = {"ray::RayTrainWorker": "train_worker", "ray::TrainController": "train_controller",
         "ray::_sample_and_embed": "eval_task_worker"}
SEED_TASK = re.compile(r"^ray::\S+-s\d+-[0-9a-f]+")  # a seed's Ray task is named after its run


class RssSampler:
    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self._peaks: dict[str, dict[str, float]] = {}
        self._label: str | None = None
        self._stop = threading.Event()

    def _role(self, proc: psutil.Process, me: int) -> str | None:
        try:
            if proc.ppid() == me:
                return "driver"
            title = " ".join(proc.cmdline()[:1])
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None
        if SEED_TASK.match(title):
            return "ray_task_worker"
        return next((role for prefix, role in ROLES.items() if title.startswith(prefix)), None)

    def _sample_once(self) -> None:
        me = os.getpid()
        peaks = self._peaks.setdefault(self._label, {})
        for proc in psutil.process_iter():
            role = self._role(proc, me)
            if role is None:
                continue
            try:
                rss = proc.memory_info().rss / 2 ** 20
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            peaks[role] = max(peaks.get(role, 0.0), rss)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample_once()

    @contextmanager
    def watch(self, label: str):
        """Sample while the block runs; peaks go under ``label`` (kept across calls)."""
        self._label, self._stop = label, threading.Event()
        thread = threading.Thread(target=self._loop, daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join()

    def peaks(self) -> dict[str, dict[str, float]]:
        return {label: {role: round(mb) for role, mb in sorted(roles.items())} for label, roles in self._peaks.items()}


if __name__ == "__main__":  # a quick self-check: this process's own child
    import subprocess
    import sys

    sampler = RssSampler()
    with sampler.watch("python -c sleep"):
        subprocess.run([sys.executable, "-c", "import time; x = bytearray(200 << 20); time.sleep(0.5)"], check=True)
    print(sampler.peaks())
