#!/usr/bin/env bash
# Provision Nix for the offline flake checks (tests/nix): Debian's nix-bin, single-user as root,
# flakes enabled. A Nix installed otherwise (e.g. by the GitHub workflow's install-nix-action, a
# multi-user install with its daemon) is left as it is when flakes already work; its nix.conf
# never gets `build-users-group =`. Idempotent; well under a second when already done.
set -euo pipefail

conf_dir=/etc/nix
conf="$conf_dir/nix.conf"
wanted_lines=(
  "build-users-group ="
  "experimental-features = nix-command flakes"
)

flakes_work() {
  # builtins.getFlake exists only with the flakes feature on (and `nix eval` needs nix-command).
  [[ "$(nix eval --expr 'builtins ? getFlake' 2>/dev/null)" == true ]]
}

if ! command -v nix >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  # Uses the machine's configured apt sources; no host name is written here.
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends nix-bin >/dev/null
elif ! dpkg-query -W -f='${Status}' nix-bin 2>/dev/null | grep -q "ok installed"; then
  # Not Debian's single-user nix-bin: leave it alone, at most switch flakes on.
  if flakes_work; then
    wanted_lines=()
  else
    wanted_lines=("experimental-features = nix-command flakes")
  fi
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

flakes_work || { echo "nix runs without the flakes feature" >&2; exit 1; }
nix --version
