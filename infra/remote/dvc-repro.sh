#!/usr/bin/env bash
# The DVC pipeline on a Ray cluster, run from its head node (a KubeRay RayJob's entrypoint,
# or `ray exec` through the cluster launcher): check out the code at a revision, pull what
# the DVC remote already has, `dvc repro` with every stage attached to this cluster's Ray,
# push every output back to the remote.
#
#   infra/remote/dvc-repro.sh [dvc repro targets...]
#
# Environment:
#   GENFLOW_GIT_URL   clone this repository ...        (unset: use GENFLOW_WORKDIR as it is)
#   GENFLOW_GIT_REV   ... at this revision (default: the default branch's head)
#   GENFLOW_WORKDIR   the DVC workspace (default /workspace/genflow); on more than one node it
#                     must be on storage every node mounts (infra/README.md, "Shared storage")
#   GENFLOW_DVC_REMOTE  a DVC remote URL (s3://bucket/prefix or a path) to pull from and push
#                     to; unset: the repository's default remote
#   RAY_ADDRESS       set by Ray for a job's entrypoint; unset: this node's Ray (127.0.0.1:6379)
set -euo pipefail
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi

workdir=${GENFLOW_WORKDIR:-/workspace/genflow}
if [ -n "${GENFLOW_GIT_URL:-}" ]; then
  # a workspace from an earlier run keeps its outputs and DVC cache: fetch and switch revision
  if [ -d "$workdir/.git" ]; then
    git -C "$workdir" fetch --quiet "$GENFLOW_GIT_URL" "${GENFLOW_GIT_REV:-HEAD}"
    git -C "$workdir" checkout --quiet --force FETCH_HEAD
  else
    git clone --quiet "$GENFLOW_GIT_URL" "$workdir"
    git -C "$workdir" checkout --quiet "${GENFLOW_GIT_REV:-HEAD}"
  fi
fi
[ -f "$workdir/dvc.yaml" ] || { echo "dvc-repro.sh: $workdir has no dvc.yaml (set GENFLOW_GIT_URL or GENFLOW_WORKDIR)" >&2; exit 2; }
cd "$workdir"

# The stages import this checkout's genflow, and Ray ships it to the workers; with a .git
# directory here, the artifacts record this checkout's commit rather than the image's.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
[ -d .git ] && unset GENFLOW_CODE_REVISION
export RAY_ADDRESS=${RAY_ADDRESS:-127.0.0.1:6379} RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}
export DVC_NO_ANALYTICS=1 RAY_USAGE_STATS_ENABLED=0

if [ -n "${GENFLOW_DVC_REMOTE:-}" ]; then
  dvc remote add --local --force --default genflow-cluster "$GENFLOW_DVC_REMOTE"
fi
# Outputs the remote already holds are not recomputed; the rest are built by repro.
if dvc remote default >/dev/null 2>&1; then dvc pull --allow-missing; fi
dvc repro "$@"
if dvc remote default >/dev/null 2>&1; then
  dvc push
else
  echo "[dvc-repro] no DVC remote configured: outputs stay in $workdir" >&2
fi
echo "[dvc-repro] done: code $(git rev-parse HEAD 2>/dev/null || echo "${GENFLOW_CODE_REVISION:-unknown}"), dvc.lock sha256 $(sha256sum dvc.lock | cut -c1-16)"
