#!/usr/bin/env bash
# Run a command with a local Ray head node up for its whole duration, then stop exactly
# the processes that node started (by process group; never `ray stop`, which would kill
# every Ray process on the machine).
#
#   infra/local/with-ray.sh dvc repro
#
# Each train stage then attaches through RAY_ADDRESS instead of starting (and tearing
# down) a Ray instance of its own, which saves several seconds per stage.
set -euo pipefail
if [ "$#" -eq 0 ] || [ "$1" = "--help" ] || [ "$1" = "-h" ]; then
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0
fi
if [ -n "${RAY_ADDRESS:-}" ]; then exec "$@"; fi  # a cluster is already given: use it
command -v ray >/dev/null || { echo "with-ray.sh: no 'ray' on PATH (activate .venv or run via make)" >&2; exit 2; }

port=${GENFLOW_RAY_PORT:-$((20000 + RANDOM % 20000))}
cpus=${GENFLOW_RAY_CPUS:-$(nproc)}
workdir=$(mktemp -d "${TMPDIR:-/tmp}/genflow-ray.XXXXXX")
# Ray 2.60 starts local clusters with token auth; clients must be told to use the token too.
export RAY_AUTH_MODE=token RAY_USAGE_STATS_ENABLED=0 RAY_TRAIN_HEALTH_CHECK_INTERVAL_S=${RAY_TRAIN_HEALTH_CHECK_INTERVAL_S:-0.5}

setsid ray start --head --block --node-ip-address=127.0.0.1 --port="$port" --num-cpus="$cpus" --object-store-memory=$((256 << 20)) \
  --include-dashboard=true --dashboard-host="${GENFLOW_RAY_DASHBOARD_HOST:-127.0.0.1}" --dashboard-port=0 --temp-dir="$workdir" >"$workdir/head.log" 2>&1 &
head_pid=$!
stop_head() {
  kill -TERM -- "-$head_pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$head_pid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL -- "-$head_pid" 2>/dev/null || true
  rm -rf "$workdir"
}
trap stop_head EXIT INT TERM

for _ in $(seq 120); do
  if ray status --address "127.0.0.1:$port" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$head_pid" 2>/dev/null; then cat "$workdir/head.log" >&2; exit 1; fi
  sleep 0.5
done
echo "[with-ray] local Ray head on 127.0.0.1:$port (pid $head_pid, $cpus CPUs)"
RAY_ADDRESS="127.0.0.1:$port" "$@"
