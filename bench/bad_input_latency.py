"""How fast bad input is rejected: every case of tests/test_bad_params.py's CASES and FILE_CASES
(goal: < 2 s each) and the broken-file cases of the prepare stage, each timed as the user meets
it, i.e. the stage command in a fresh process (interpreter start-up included), three runs, the
median kept.

Writes bench/results/bad_input_latency.json.   .venv/bin/python bench/bad_input_latency.py
"""
from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from genflow.io import code_revision  # noqa: E402
from test_bad_params import CASES, FILE_CASES, _with  # noqa: E402
from test_formats import _broken_sources  # noqa: E402

from conftest import tiny_params_dict  # noqa: E402

PYTHON = sys.executable
RUNS = 3


def _timed(cmd: list[str], cwd: Path) -> tuple[float, int]:
    times, code = [], 0
    for _ in range(RUNS):
        started = time.perf_counter()
        code = subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=120).returncode
        times.append(time.perf_counter() - started)
    return statistics.median(times), code


def main() -> None:
    results: dict[str, dict] = {"params": {}, "data": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for case_id, changes, _ in CASES:
            (tmp / "params.yaml").write_text(yaml.safe_dump(_with(changes)))
            seconds, code = _timed([PYTHON, str(ROOT / "stages/train.py"), "--model", "gan_digits"], tmp)
            results["params"][case_id] = {"seconds": round(seconds, 3), "exit_code": code}
            print(f"params {case_id:32s} {seconds:.2f} s (exit {code})", flush=True)
        for case_id, build, _ in FILE_CASES:  # the file's own text, --params / --set / --best-params, manifests
            folder = tmp / case_id
            folder.mkdir()
            script, *args = build(folder)
            seconds, code = _timed([PYTHON, str(ROOT / script), *args], folder)
            results["params"][case_id] = {"seconds": round(seconds, 3), "exit_code": code}
            print(f"params {case_id:32s} {seconds:.2f} s (exit {code})", flush=True)
        for source, (entry, name) in _broken_sources(tmp).items():
            raw = tiny_params_dict()
            raw["data"]["mine"] = entry
            (tmp / "params.yaml").write_text(yaml.safe_dump(raw))
            seconds, code = _timed([PYTHON, str(ROOT / "stages/prepare.py"), "--dataset", "mine"], tmp)
            results["data"][f"{source}: {name}"] = {"seconds": round(seconds, 3), "exit_code": code}
            print(f"data   {source:32s} {seconds:.2f} s (exit {code})", flush=True)
    params_times = [r["seconds"] for r in results["params"].values()]
    summary = {"cases": len(params_times), "median_s": round(statistics.median(params_times), 3),
               "max_s": max(params_times), "all_exit_2": all(r["exit_code"] == 2 for r in results["params"].values())}
    out = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, {platform.node()}",
           "code_revision": code_revision(), "command": "bench/bad_input_latency.py", "runs_per_case": RUNS,
           "summary": summary, **results}
    path = ROOT / "bench/results/bad_input_latency.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary), f"-> {path}")


if __name__ == "__main__":
    main()
