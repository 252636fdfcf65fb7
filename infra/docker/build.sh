#!/usr/bin/env bash
# Build (and with --push, push) both cluster images with the tags of infra/versions.env:
#   infra/docker/build.sh [--push] [cpu|gpu ...]     (default: both)
# The image records the git commit it was built from (GENFLOW_CODE_REVISION), so every
# artifact a cluster run writes names its code revision even without a .git directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=../versions.env
source infra/versions.env
push=0 variants=()
for arg in "$@"; do
  case "$arg" in
    --push) push=1 ;;
    cpu|gpu) variants+=("$arg") ;;
    -h|--help) sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown argument '$arg' (allowed: --push, cpu, gpu)" >&2; exit 2 ;;
  esac
done
[ ${#variants[@]} -gt 0 ] || variants=(cpu gpu)
revision=$(git rev-parse HEAD)
if [ -n "$(git status --porcelain --untracked-files=no -- genflow stages)" ]; then revision="$revision-dirty"; fi
for variant in "${variants[@]}"; do
  index=$CPU_TORCH_INDEX; [ "$variant" = gpu ] && index=$GPU_TORCH_INDEX
  tag="$IMAGE:$GENFLOW_VERSION-ray$RAY_VERSION-$index"
  echo "[build] $tag (torch $TORCH_VERSION from whl/$index, revision $revision)"
  docker build -f infra/docker/Dockerfile -t "$tag" \
    --build-arg PYTHON_VERSION="$PYTHON_VERSION" --build-arg TORCH_VERSION="$TORCH_VERSION" \
    --build-arg RAY_VERSION="$RAY_VERSION" --build-arg TORCH_INDEX="$index" \
    --build-arg GENFLOW_REVISION="$revision" .
  if [ "$push" = 1 ]; then docker push "$tag"; fi
done
