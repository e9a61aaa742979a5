#!/usr/bin/env bash
# GitHub runners only (.github/workflows/ci.yml): Docker with the containerd image store (needed
# for rewrite-timestamp), then the images this repository pins by digest, pulled, and their
# references exported to the job's later steps.
#
#   bash ci/github-docker.sh [base] [postgres]
#   bash ci/github-docker.sh --print base postgres   # only print NAME=reference (no Docker)
#
# base:     Dockerfile.worker's `ARG BASE_IMAGE=…@sha256:…`  -> AIRNUB_BASE_IMAGE
# postgres: deploy/compose.yaml's `${AIRNUB_POSTGRES_IMAGE:-…@sha256:…}` -> AIRNUB_POSTGRES_IMAGE
# The references are read from those files at run time: bump them there, not here.
set -euo pipefail
cd "$(dirname "$0")/.."

pinned() {
  case "$1" in
    base) sed -n 's/^ARG BASE_IMAGE=//p' Dockerfile.worker ;;
    postgres) sed -n 's/.*\${AIRNUB_POSTGRES_IMAGE:-\([^}]*\)}.*/\1/p' deploy/compose.yaml ;;
    *)
      echo "unknown image: $1 (base, postgres)" >&2
      exit 2
      ;;
  esac
}

# NAME=reference for each image asked for; fails unless each is pinned by digest.
references() {
  local what ref
  for what in "$@"; do
    ref="$(pinned "$what")"
    if [[ "$ref" != *@sha256:* ]]; then
      echo "$what: no digest-pinned reference found (got '$ref')" >&2
      exit 1
    fi
    echo "AIRNUB_$(tr '[:lower:]' '[:upper:]' <<<"$what")_IMAGE=$ref"
  done
}

if [[ "${1:-}" == --print ]]; then
  shift
  references "$@"
  exit 0
fi
: "${GITHUB_ENV:?run by GitHub Actions only (GITHUB_ENV is unset)}"
wanted="$(references "$@")"

if ! docker info --format '{{.DriverStatus}}' 2>/dev/null | grep -q io.containerd.snapshotter; then
  # Keep the runner's daemon.json, add the feature.
  sudo python3 - <<'PY'
import json
from pathlib import Path

path = Path("/etc/docker/daemon.json")
config = json.loads(path.read_text()) if path.exists() and path.read_text().strip() else {}
config.setdefault("features", {})["containerd-snapshotter"] = True
path.parent.mkdir(parents=True, exist_ok=True)
path.write_text(json.dumps(config, indent=2) + "\n")
PY
  sudo systemctl restart docker
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
fi
driver="$(docker info --format '{{.DriverStatus}}')"
echo "dockerd $(docker version --format '{{.Server.Version}}'): $driver"
grep -q io.containerd.snapshotter <<<"$driver" || {
  echo "dockerd still runs without the containerd image store" >&2
  exit 1
}

while IFS= read -r line; do
  [[ -n "$line" ]] || continue
  echo "== docker pull ${line#*=}"
  docker pull --quiet "${line#*=}"
  echo "$line" >>"$GITHUB_ENV"
done <<<"$wanted"
