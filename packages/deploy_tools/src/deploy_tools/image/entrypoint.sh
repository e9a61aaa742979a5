#!/bin/sh
# Worker image entrypoint. No arguments, or only options (`--pool x`): start a Prefect worker
# with them. Anything else (`prefect flow-run execute`, `python -c ...`) runs as given, so a
# Docker work pool can use this image for its flow-run containers too.
set -e
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
  exec prefect worker start "$@"
fi
exec "$@"
