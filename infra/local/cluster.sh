#!/usr/bin/env bash
# A multi-node Ray cluster on this one host: a head node and N worker nodes started with
# --node-ip-address=127.0.0.1, each with its own raylet, object store and port block. It
# behaves like a real cluster for scheduling (STRICT_SPREAD puts workers on different nodes),
# which is how the tests prove multi-node training without a second machine.
# (Ray 2.60 registers a loopback node under the host's primary address, and its gRPC
# servers listen on every interface, token-protected; its Prometheus endpoints, which are not,
# are turned off below; infra/README.md, "Security".)
#
#   infra/local/cluster.sh start [--workers N] [--cpus C] [--port P] [--state DIR]
#   infra/local/cluster.sh status [--state DIR]
#   infra/local/cluster.sh stop [--state DIR]
#
# start prints `export RAY_ADDRESS=... RAY_AUTH_TOKEN_PATH=...`; every genflow command run with
# it attaches to the cluster (start makes the token in DIR unless RAY_AUTH_TOKEN(_PATH) names one).
# stop ends exactly the processes start began (their process groups, by the PIDs recorded in
# DIR); it never runs `ray stop`, which would kill every Ray process on the host.
# Defaults: 1 worker node, 1 CPU per node, a free-looking port block, DIR=.ray_cluster.
set -euo pipefail

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "cluster.sh: $*" >&2; exit 2; }

action=${1:-}; [ $# -gt 0 ] && shift
workers=1 cpus=1 port=${GENFLOW_RAY_PORT:-} state=${GENFLOW_RAY_CLUSTER_DIR:-.ray_cluster}
while [ $# -gt 0 ]; do
  case "$1" in
    --workers) workers=${2:?--workers needs a number}; shift 2 ;;
    --cpus) cpus=${2:?--cpus needs a number}; shift 2 ;;
    --port) port=${2:?--port needs a number}; shift 2 ;;
    --state) state=${2:?--state needs a directory}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
[[ "$workers" =~ ^[0-9]+$ ]] || die "--workers: '$workers' is not a whole number"
[[ "$cpus" =~ ^[0-9]+$ && "$cpus" -ge 1 ]] || die "--cpus: '$cpus' is not a whole number >= 1"

# Ray 2.60 starts clusters with token auth; joining nodes and drivers must use the token too.
export RAY_AUTH_MODE=token RAY_USAGE_STATS_ENABLED=0
# Several nodes: an inherited RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (set by genflow's loopback-only local
# instances for their clients) would make `ray start --address` refuse to join a worker node.
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1
# Nodes registered under the host's address serve Prometheus metrics, unauthenticated, on every
# interface: each dashboard agent's export port (off with RAY_enable_metrics_collection=false), and on
# the head the dashboard's and the autoscaler's, which have no switch: a port out of range makes Ray
# log one error and serve nothing there. genflow reads none of them.
export RAY_enable_metrics_collection=false DASHBOARD_METRIC_PORT=70000 AUTOSCALER_METRIC_PORT=70000

# The cluster's token: the caller's (RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH), or one made by `start`
# in DIR (this user only; removed by stop). `ray start --head` refuses to start without one, and a
# fresh machine has no ~/.ray/auth_token.
use_state_token() {
  [ -z "${RAY_AUTH_TOKEN:-}" ] && [ -z "${RAY_AUTH_TOKEN_PATH:-}" ] && [ -f "$state/auth_token" ] \
    && export RAY_AUTH_TOKEN_PATH="$(cd "$state" && pwd)/auth_token"
  return 0
}
make_state_token() {
  if [ -z "${RAY_AUTH_TOKEN:-}" ] && [ -z "${RAY_AUTH_TOKEN_PATH:-}" ]; then
    (umask 077; od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$state/auth_token")
  fi
  use_state_token
}

# Node i's ports form a block of 100 above the head's GCS port, so nodes on one host never collide.
node_ports() {
  local base=$((port + 100 * ($1 + 1)))
  echo "--node-manager-port=$base --object-manager-port=$((base + 1)) --dashboard-agent-listen-port=$((base + 2))" \
       "--dashboard-agent-grpc-port=$((base + 3)) --metrics-export-port=$((base + 4))" \
       "--runtime-env-agent-port=$((base + 5)) --min-worker-port=$((base + 10)) --max-worker-port=$((base + 99))"
}

# setsid: each node leads its own process group, so stop can end the node and everything it spawned.
launch() {  # launch NAME ARGS...
  local name=$1; shift
  # shellcheck disable=SC2046
  setsid ray start --block --node-ip-address=127.0.0.1 --num-cpus="$cpus" --object-store-memory=$((128 << 20)) \
    --disable-usage-stats "$@" >"$state/$name.log" 2>&1 &
  echo $! >"$state/$name.pid"
}

alive_nodes() {
  ray list nodes --address "127.0.0.1:$(cat "$state/port")" --filter state=ALIVE --format json 2>/dev/null \
    | python -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo 0
}

start() {
  command -v ray >/dev/null || die "no 'ray' on PATH (activate .venv or run through make)"
  [ -e "$state/port" ] && die "a cluster is already recorded in $state (run: $0 stop --state $state)"
  port=${port:-$((20000 + (RANDOM % 110) * 100))}  # below the ephemeral range (32768+)
  [ $((port + 100 * (workers + 2))) -lt 65535 ] || die "--port $port leaves no room for $workers worker nodes"
  mkdir -p "$state"; echo "$port" >"$state/port"
  make_state_token
  # Ray's unix sockets live under its temp dir and their paths must stay under 108 bytes
  mktemp -d /tmp/genflow-ray.XXXXXX >"$state/tempdir"
  # shellcheck disable=SC2046
  launch head --head --port="$port" --ray-client-server-port=$((port + 1)) --include-dashboard=true \
    --dashboard-host=127.0.0.1 --dashboard-port=$((port + 2)) --temp-dir="$(cat "$state/tempdir")" $(node_ports 0)
  wait_for 1 head
  for i in $(seq 1 "$workers"); do
    # Nodes on one host share the head's session directory, so the head's log monitor already
    # forwards every node's worker output; a second monitor would print each line twice.
    # One node at a time: raylets that register at the same moment on one host can time out.
    # shellcheck disable=SC2046
    launch "worker-$i" --address="127.0.0.1:$port" --include-log-monitor=false $(node_ports "$i")
    wait_for $((i + 1)) "worker-$i"
  done
  echo "[cluster] $((workers + 1)) nodes on 127.0.0.1 ($cpus CPU each); dashboard http://127.0.0.1:$((port + 2))"
  echo "export RAY_ADDRESS=127.0.0.1:$port RAY_AUTH_MODE=token${RAY_AUTH_TOKEN_PATH:+ RAY_AUTH_TOKEN_PATH=$RAY_AUTH_TOKEN_PATH}"
}

wait_for() {  # wait_for NODE_COUNT LAST_LAUNCHED
  local deadline=$((SECONDS + ${GENFLOW_RAY_START_TIMEOUT:-120}))
  while [ "$SECONDS" -lt "$deadline" ]; do
    [ "$(alive_nodes)" -ge "$1" ] && return 0
    if ! kill -0 "$(cat "$state/$2.pid")" 2>/dev/null; then
      tail -n 30 "$state/$2.log" >&2; stop >/dev/null; die "node '$2' exited while starting (log above)"
    fi
    sleep 0.5
  done
  tail -n 20 "$state"/*.log >&2; stop >/dev/null
  die "the cluster did not reach $1 nodes within ${GENFLOW_RAY_START_TIMEOUT:-120} s (logs above)"
}

live_in_groups() {  # how many processes of these process groups still run (zombies count as gone)
  ps -eo pgid=,stat= | awk -v groups=" $* " 'index(groups, " " $1 " ") && $2 !~ /^Z/ {n++} END {print n + 0}'
}

stop() {
  [ -d "$state" ] || { echo "[cluster] nothing recorded in $state"; return 0; }
  local pids=() pid
  # workers first, head last: nodes that lose their head only log errors while they wait to be stopped
  for f in $(ls -r "$state"/*.pid 2>/dev/null); do pids+=("$(cat "$f")"); done
  # TERM to each `ray start --block` alone: it shuts its node's processes down in order within
  # seconds (TERM to the whole group makes the head linger ~30 s). A head that has run jobs can
  # still hang on; after the grace period (GENFLOW_RAY_STOP_GRACE, 10 s) KILL the groups.
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq $((${GENFLOW_RAY_STOP_GRACE:-10} * 5))); do
    [ "$(live_in_groups "${pids[@]}")" = 0 ] && break; sleep 0.2
  done
  if [ "$(live_in_groups "${pids[@]}")" != 0 ]; then
    echo "[cluster] killing what is left after the grace period:" >&2
    ps -eo pgid=,pid=,comm= | awk -v groups=" ${pids[*]} " 'index(groups, " " $1 " ") {print "  " $2, $3}' >&2
    for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
    for _ in $(seq 25); do [ "$(live_in_groups "${pids[@]}")" = 0 ] && break; sleep 0.2; done
  fi
  [ -s "$state/tempdir" ] && rm -rf "$(cat "$state/tempdir")"
  rm -rf "$state"
  echo "[cluster] stopped ${#pids[@]} nodes"
}

status() {  # the live nodes, from the GCS (`ray status` lags a few seconds behind a joining node)
  [ -e "$state/port" ] || die "no cluster recorded in $state"
  local address="127.0.0.1:$(cat "$state/port")"
  echo "address $address"
  ray list nodes --address "$address" --filter state=ALIVE --format json | python -c '
import json, sys
for node in json.load(sys.stdin):
    role = "head" if node["is_head_node"] else "worker"
    cpus = node["resources_total"].get("CPU", 0)
    print("node", node["node_id"][:12], role, "ALIVE", f"CPU={cpus:g}")'
}

use_state_token
case "$action" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  -h|--help|help|"") usage ;;
  *) die "unknown command '$action'; allowed: start, status, stop" ;;
esac
