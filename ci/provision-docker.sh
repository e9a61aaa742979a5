#!/usr/bin/env bash
# Provision a Docker engine (BuildKit new enough for rewrite-timestamp), buildx and compose v2
# from Debian packages (and Debian's docker-registry, which tests/remote runs on 127.0.0.1), start
# dockerd with the containerd image store, and load two offline debootstrap stand-ins for the
# official images, the base and PostgreSQL 15 (ci/offline_images.py: no registry is reachable in
# this project's CI, so nothing users run depends on them).
# An engine that already runs (>= 26, with buildx and compose, e.g. a GitHub runner's) is used
# as it is; images already loaded under $AIRNUB_BASE_IMAGE / $AIRNUB_POSTGRES_IMAGE (the GitHub
# workflow pulls the digest-pinned official ones) are not remade.
#
# Idempotent: a second run only checks versions, that `docker info` answers and that both images
# are loaded (about a second). Mirror URLs are read from /etc/apt/sources.list.d/ at run time.
# Needs root (apt-get, dockerd).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE="${AIRNUB_BASE_IMAGE:-airnub/base:bookworm}"
POSTGRES_IMAGE="${AIRNUB_POSTGRES_IMAGE:-airnub/postgres:15-bookworm}"
STATE=/var/lib/airnub-docker
DAEMON_JSON="$STATE/daemon.json"
DOCKERD_LOG=/var/log/airnub-dockerd.log
export DEBIAN_FRONTEND=noninteractive

need_install() {
  # docker.io >= 26 (bookworm's 20.10 lacks rewrite-timestamp), plus buildx, compose, debootstrap.
  local v
  v="$(dpkg-query -W -f='${Version}' docker.io 2>/dev/null || true)"
  [[ -z "$v" ]] && return 0
  dpkg --compare-versions "$v" ge 26 || return 0
  for p in docker-cli docker-buildx docker-compose containerd debootstrap docker-registry; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || return 0
  done
  return 1
}

engine_usable() {
  # A running engine >= 26 (rewrite-timestamp) with the buildx and compose plugins.
  local v
  v="$(docker version --format '{{.Server.Version}}' 2>/dev/null || true)"
  [[ -n "$v" ]] || return 1
  dpkg --compare-versions "${v%%[-+~]*}" ge 26 || return 1
  docker buildx version >/dev/null 2>&1 && docker compose version >/dev/null 2>&1
}

apt_install() {
  # Missing packages from the machine's configured apt sources.
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  echo "installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_packages() {
  local sources=/etc/apt/sources.list.d/debian.sources mirror list lists
  mirror="$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' "$sources")"
  [[ -n "$mirror" ]] || { echo "no Debian mirror found in $sources" >&2; exit 1; }
  mkdir -p "$STATE/lists/partial"
  list="$STATE/trixie.sources"
  lists="$STATE/lists"
  # Bookworm lines as configured, plus trixie main from the same mirror (private list: the
  # system's own apt configuration stays untouched).
  { cat "$sources"; printf '\nTypes: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$mirror"; } >"$list"
  local opts=(-o "Dir::Etc::sourcelist=$list" -o Dir::Etc::sourceparts=- -o "Dir::State::Lists=$lists"
    -o APT::Default-Release=bookworm)
  apt-get "${opts[@]}" update -qq
  apt-get "${opts[@]}" install -y -qq --no-install-recommends \
    docker.io/trixie docker-cli/trixie docker-buildx/trixie docker-compose/trixie \
    containerd/trixie debootstrap iptables ca-certificates docker-registry >/dev/null
}

start_dockerd() {
  docker info >/dev/null 2>&1 && return 0
  mkdir -p "$STATE"
  # The containerd image store lets buildx's `docker` driver honour rewrite-timestamp=true.
  printf '{"features": {"containerd-snapshotter": true}}\n' >"$DAEMON_JSON"
  # setsid: own session, default signal dispositions, survives this script.
  setsid dockerd --config-file "$DAEMON_JSON" >>"$DOCKERD_LOG" 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return 0
    sleep 1
  done
  echo "dockerd did not answer within 60 s; see $DOCKERD_LOG" >&2
  tail -n 30 "$DOCKERD_LOG" >&2 || true
  exit 1
}

check_store() {
  local driver
  driver="$(docker info --format '{{.DriverStatus}}' 2>/dev/null || true)"
  if ! grep -q "io.containerd.snapshotter" <<<"$driver"; then
    echo "warning: dockerd runs without the containerd image store; image builds will not be" \
      "reproducible (restart it with {\"features\": {\"containerd-snapshotter\": true}})" >&2
    # CI must not go on to skip or fake the reproducibility checks.
    [[ "${AIRNUB_REQUIRE_ALL:-}" == 1 ]] && exit 1
  fi
}

if engine_usable; then
  echo "using the running Docker engine $(docker version --format '{{.Server.Version}}')"
  apt_install docker-registry
elif need_install; then
  echo "installing docker.io, buildx, compose (trixie) and debootstrap"
  install_packages
fi
start_dockerd
check_store
docker buildx version
docker compose version

# The two stand-ins are independent debootstrap runs (~1 min each, mostly waiting on the
# mirror): they are made side by side.
builds=()
if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  echo "base image $BASE_IMAGE already loaded"
else
  apt_install debootstrap
  echo "making the offline base image $BASE_IMAGE (debootstrap, ~1 min)"
  python3 ci/offline_images.py --tag "$BASE_IMAGE" &
  builds+=($!)
fi
if docker image inspect "$POSTGRES_IMAGE" >/dev/null 2>&1; then
  echo "postgres image $POSTGRES_IMAGE already loaded"
else
  apt_install debootstrap
  echo "making the offline PostgreSQL image $POSTGRES_IMAGE (debootstrap, ~1 min)"
  python3 ci/offline_images.py --image postgres --tag "$POSTGRES_IMAGE" &
  builds+=($!)
fi
for pid in "${builds[@]}"; do
  wait "$pid"
done
