#!/usr/bin/env bash
# Run a command with a local Ray head node up for its whole duration, then stop exactly
# the processes that node started (by process group; never `ray stop`, which would kill
# every Ray process on the machine).
#
#   infra/local/with-ray.sh dvc repro
#
# Each train stage then attaches through RAY_ADDRESS instead of starting (and tearing
# down) a Ray instance of its own, which saves several seconds per stage.
# The head listens on 127.0.0.1 only. It is stopped however the command ends: on exit,
# Ctrl-C, SIGTERM, or SIGKILL (once every process the command started has ended too).
set -euo pipefail

group_alive() { ps -eo pgid=,stat= | awk -v g="$head_pid" '$1 == g && $2 !~ /^Z/ {n++} END {exit n == 0}'; }
stop_head() {
  # TERM to `ray start --block` alone shuts its processes down in order within seconds (TERM to
  # the whole group makes the head linger); whatever is left after 10 s is killed.
  kill -TERM "$head_pid" 2>/dev/null || true
  for _ in $(seq 50); do group_alive || break; sleep 0.2; done
  kill -KILL -- "-$head_pid" 2>/dev/null || true
  wait "$head_pid" 2>/dev/null || true
  rm -rf "$workdir"
}

if [ "${1:-}" = "--stop-head-when-closed" ]; then  # the watchdog started below (internal)
  head_pid=$2 workdir=$3
  trap '' INT TERM HUP
  cat >/dev/null || true  # returns once every holder of the pipe's write end has ended
  stop_head
  exit 0
fi
if [ "$#" -eq 0 ] || [ "$1" = "--help" ] || [ "$1" = "-h" ]; then
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0
fi
if [ -n "${RAY_ADDRESS:-}" ]; then exec "$@"; fi  # a cluster is already given: use it
command -v ray >/dev/null || { echo "with-ray.sh: no 'ray' on PATH (activate .venv or run via make)" >&2; exit 2; }

port=${GENFLOW_RAY_PORT:-$((20000 + RANDOM % 20000))}
# nproc honours OMP_NUM_THREADS (1 in the tests, often set by users): the CPUs this process may use instead
cpus=${GENFLOW_RAY_CPUS:-$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)}
workdir=$(mktemp -d "${TMPDIR:-/tmp}/genflow-ray.XXXXXX")
# Ray 2.60 starts local clusters with token auth; clients must be told to use the token too.
export RAY_AUTH_MODE=token RAY_USAGE_STATS_ENABLED=0 RAY_TRAIN_HEALTH_CHECK_INTERVAL_S=${RAY_TRAIN_HEALTH_CHECK_INTERVAL_S:-0.5}
# `ray start --head` refuses to start without a token, and a fresh machine has no ~/.ray/auth_token.
# This head lives only as long as the command, so it gets a token of its own, in its own temp dir
# (readable by this user only, removed with the head); the stages inherit RAY_AUTH_TOKEN_PATH.
# A token the caller already chose (RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH) is used as it is.
if [ -z "${RAY_AUTH_TOKEN:-}" ] && [ -z "${RAY_AUTH_TOKEN_PATH:-}" ]; then
  (umask 077; od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$workdir/auth_token")
  export RAY_AUTH_TOKEN_PATH="$workdir/auth_token"
fi

# A single-node head whose address is 127.0.0.1 (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0). Without it Ray
# registers the node under the host's primary address, --node-ip-address or not, and so binds its
# gRPC servers and its Prometheus endpoints (an unauthenticated /metrics) on every interface. Its
# clients (`ray status` below, the command's drivers) need the variable too: without it they take
# 127.0.0.1 for the primary address, where nothing of this head listens.
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
setsid ray start --head --block --node-ip-address=127.0.0.1 --port="$port" \
  --num-cpus="$cpus" --object-store-memory=$((256 << 20)) --include-dashboard=true \
  --dashboard-host="${GENFLOW_RAY_DASHBOARD_HOST:-127.0.0.1}" --dashboard-port=0 --temp-dir="$workdir" \
  >"$workdir/head.log" 2>&1 &
head_pid=$!
# The watchdog: a process in a session of its own (a Ctrl-C, or a kill of this process group, misses
# it) that reads a pipe whose write end only this script, and then the command, hold. Once every one
# of them has ended, however (SIGKILL too), it stops the head. The head started before the pipe
# existed, so it holds no write end.
exec {alive}> >(exec setsid bash "$0" --stop-head-when-closed "$head_pid" "$workdir")
trap stop_head EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for _ in $(seq 120); do
  if ray status --address "127.0.0.1:$port" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$head_pid" 2>/dev/null; then cat "$workdir/head.log" >&2; exit 1; fi
  sleep 0.5
done
ray status --address "127.0.0.1:$port" >/dev/null 2>&1 \
  || { tail -n 30 "$workdir/head.log" >&2; echo "with-ray.sh: the Ray head did not answer within 60 s" >&2; exit 1; }
# `ray start` names the dashboard's (random) port once the whole node is up, a moment after the GCS answers
dashboard=""
for _ in $(seq 60); do
  dashboard=$(sed -n "s/.*RAY_API_SERVER_ADDRESS='\(http[^']*\)'.*/\1/p" "$workdir/head.log" | head -n 1)
  [ -n "$dashboard" ] && break; sleep 0.25
done
echo "[with-ray] local Ray head on 127.0.0.1:$port (pid $head_pid, $cpus CPUs); dashboard ${dashboard:-not started (see $workdir/head.log)}"
# The command takes this process's place (exec), so a SIGTERM or SIGINT sent to this PID reaches the
# command itself: bash would run a trap only once a foreground command had ended. The watchdog stops
# the head when the command has ended (it holds the pipe's write end, {alive}).
trap - EXIT INT TERM
export RAY_ADDRESS="127.0.0.1:$port"
exec "$@"
