#!/usr/bin/env bash
# Provision Nix for the offline flake checks (tests/nix): Debian's nix-bin, single-user as root,
# flakes enabled. Idempotent; returns in well under a second when already done.
set -euo pipefail

conf_dir=/etc/nix
conf="$conf_dir/nix.conf"
wanted_lines=(
  "build-users-group ="
  "experimental-features = nix-command flakes"
)

if ! command -v nix >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  # Uses the machine's configured apt sources; no host name is written here.
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends nix-bin >/dev/null
fi

mkdir -p "$conf_dir"
touch "$conf"
for line in "${wanted_lines[@]}"; do
  key="${line%% =*}"
  if ! grep -qxF "$line" "$conf"; then
    # Replace any other value for the same key, then append ours.
    sed -i "/^[[:space:]]*${key}[[:space:]]*=/d" "$conf"
    printf '%s\n' "$line" >>"$conf"
  fi
done

nix --version
