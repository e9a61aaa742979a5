#!/bin/sh
# Install the locked .deb files of $1 (deploy_tools/image/debs.py) with dpkg, offline, leaving
# the layer reproducible: only what the base lacks or has older is installed (dpkg checks the
# dependencies), dpkg's logs and -old copies are removed, and everything the install wrote gets
# the mtime $2 (the lock's commit time), so the layer is the same from commit to commit.
set -eu
debs=$1 epoch=$2
start=$(( $(date +%s) - 1 ))
set --
for deb in "$debs"/*.deb; do
  [ -e "$deb" ] || continue
  name=$(dpkg-deb --field "$deb" Package)
  version=$(dpkg-deb --field "$deb" Version)
  have=$(dpkg-query --show --showformat '${db:Status-Status} ${Version}' "$name" 2>/dev/null || true)
  case $have in
    "installed "*) dpkg --compare-versions "${have#installed }" lt "$version" || continue ;;
  esac
  set -- "$@" "$deb"
done
[ $# -eq 0 ] && exit 0
# No documentation, manuals or translations (git's docs hold a test suite of its contrib
# tools); the copyright files stay.
DEBIAN_FRONTEND=noninteractive dpkg --install --force-confold \
  --path-exclude='/usr/share/doc/*' --path-include='/usr/share/doc/*/copyright' \
  --path-exclude='/usr/share/man/*' --path-exclude='/usr/share/info/*' \
  --path-exclude='/usr/share/locale/*' "$@"
# dpkg still makes the directories of what it excluded: drop the empty ones of each package's
# own documentation folder.
for deb in "$@"; do
  doc=/usr/share/doc/$(dpkg-deb --field "$deb" Package)
  [ ! -d "$doc" ] || find "$doc" -mindepth 1 -depth -type d -empty -delete
done
rm -f /var/log/dpkg.log /var/log/alternatives.log /var/lib/dpkg/*-old \
  /var/cache/debconf/*-old /var/cache/ldconfig/aux-cache
# Where dpkg writes (/bin, /lib are /usr's on Debian); the build's own mounts left alone.
find /etc /usr /var -xdev -newermt "@$start" ! -path /etc/hosts ! -path /etc/hostname \
  ! -path /etc/resolv.conf -exec touch -h -d "@$epoch" {} +
