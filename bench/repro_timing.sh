#!/usr/bin/env bash
# Time the default pipeline the way a new user meets it: a fresh clone, `make repro`
# (venv + install, timed apart, then dvc repro), then a second, no-op `dvc repro`. Writes
# bench/results/repro_timing.json; docs/benchmarks.md quotes it.
#
#   bash bench/repro_timing.sh [CLONE_DIR]
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$(mktemp -d /tmp/genflow-bench.XXXXXX)/genflow}
git clone -q "$src" "$dest"
cd "$dest"
t0=$(date +%s.%N)
make install > install.log 2>&1
start=$(date +%s.%N)
# every line stamped with its time, for the per-stage breakdown below
make repro 2>&1 | python3 -u -c 'import sys, time
for line in sys.stdin: sys.stdout.write(f"{time.time():.2f} {line}"); sys.stdout.flush()' > repro.log
test "${PIPESTATUS[0]}" -eq 0
mid=$(date +%s.%N)
PATH="$dest/.venv/bin:$PATH" dvc repro > noop.log 2>&1
end=$(date +%s.%N)
grep -q "Data and pipelines are up to date" noop.log
stages=$(grep -c "^[0-9.]* Running stage" repro.log)
mkdir -p "$src/bench/results"
python3 - "$src/bench/results/repro_timing.json" "$t0" "$start" "$mid" "$end" "$stages" "$(git rev-parse HEAD)" <<'PY'
import json, platform, os, re, sys, datetime
path, t0, start, mid, end, stages, rev = sys.argv[1:]
# a stage runs from its "Running stage" line to the next one (the last one: to the end)
marks = [(float(t), m.group(1)) for t, line in (l.split(" ", 1) for l in open("repro.log") if " " in l)
         if (m := re.match(r"Running stage '([^']+)'", line))]
marks.append((float(mid), None))
per_stage = {name: round(b - a, 1) for (a, name), (b, _) in zip(marks, marks[1:])}
kinds = {}
for name, seconds in per_stage.items():
    kinds[name.split("@")[0]] = round(kinds.get(name.split("@")[0], 0.0) + seconds, 1)
result = {"per_stage_kind_s": kinds, "per_stage_s": per_stage, "install_s": round(float(start) - float(t0), 1), "dvc_repro_s": round(float(mid) - float(start), 1), "noop_dvc_repro_s": round(float(end) - float(mid), 2),
          "stages_run": int(stages), "code_revision": rev, "date": datetime.date.today().isoformat(),
          "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}"}
json.dump(result, open(path, "w"), indent=2)
print(json.dumps(result))
PY
