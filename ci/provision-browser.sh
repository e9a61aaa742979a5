#!/usr/bin/env bash
# A real browser for the compose UI test: Debian's headless-capable `chromium`, driven by
# Playwright for Python through `executable_path` (no `playwright install`: that downloads
# browsers from outside). Idempotent: a second run only checks the version.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium (Debian)"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
chromium --version
