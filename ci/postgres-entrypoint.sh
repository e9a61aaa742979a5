#!/bin/sh
# CI only: the entrypoint of the offline PostgreSQL stand-in (airnub/postgres:15-bookworm, made by
# ci/offline_images.py because this project's CI reaches no registry), with the interface of
# the official `postgres` image: POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust),
# POSTGRES_USER (default postgres), POSTGRES_DB (default: the user), PGDATA, POSTGRES_INITDB_ARGS,
# POSTGRES_HOST_AUTH_METHOD (default scram-sha-256), *_FILE variants of the first three, and
# /docker-entrypoint-initdb.d/*.sql|*.sh run once after initdb. Started as root it only fixes the
# ownership of PGDATA and the socket folder, then drops to `postgres` with setpriv.
set -eu

# POSTGRES_PASSWORD_FILE=/run/secrets/x sets POSTGRES_PASSWORD from that file (compose secrets).
file_env() {
  eval "_value=\${$1:-} _file=\${$1_FILE:-}"
  if [ -n "$_value" ] && [ -n "$_file" ]; then
    echo "error: both $1 and $1_FILE are set (they are exclusive)" >&2
    exit 1
  fi
  if [ -n "$_file" ]; then
    _value="$(cat "$_file")"
  fi
  eval "$1=\$_value"
  # shellcheck disable=SC2163  # exports the variable named by $1
  export "$1"
  unset "$1_FILE"  # read once: the re-exec after dropping root must not see both
}

if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
  set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
  exec "$@"
fi

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA
file_env POSTGRES_PASSWORD
file_env POSTGRES_USER
file_env POSTGRES_DB
: "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}"
: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"

if [ ! -s "$PGDATA/PG_VERSION" ] && [ -z "$POSTGRES_PASSWORD" ] \
  && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
  cat >&2 <<'EOF'
error: the database is uninitialized and POSTGRES_PASSWORD is not set.
  Set POSTGRES_PASSWORD to a non-empty superuser password, e.g. `-e POSTGRES_PASSWORD=...` on
  `docker run` (or POSTGRES_PASSWORD_FILE). POSTGRES_HOST_AUTH_METHOD=trust allows every
  connection without a password instead (not recommended).
EOF
  exit 1
fi

if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /run/postgresql
  chmod 0700 "$PGDATA" || :
  chmod 3777 /run/postgresql || :
  find "$PGDATA" /run/postgresql ! -user postgres -exec chown postgres:postgres {} +
  export HOME=/var/lib/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ "$POSTGRES_HOST_AUTH_METHOD" = trust ]; then
    echo "warning: POSTGRES_HOST_AUTH_METHOD=trust: every host connection is allowed without a password" >&2
  fi
  pwfile="$(mktemp)"
  trap 'rm -f "$pwfile"' EXIT
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  # Socket connections trusted (the container's own processes), host ones by password.
  # POSTGRES_INITDB_ARGS is word-split on purpose, as in the official image.
  # shellcheck disable=SC2086
  initdb --username="$POSTGRES_USER" ${POSTGRES_PASSWORD:+--pwfile="$pwfile"} \
    --auth-local=trust --auth-host="$POSTGRES_HOST_AUTH_METHOD" ${POSTGRES_INITDB_ARGS:-}
  rm -f "$pwfile"
  printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
  printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"

  # A socket-only server for POSTGRES_DB and the init scripts: nothing can connect over TCP
  # (and `pg_isready -h 127.0.0.1` does not answer) before the real start below.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
  export PGUSER="$POSTGRES_USER" PGDATABASE=postgres
  if [ "$POSTGRES_DB" != postgres ]; then
    psql -v ON_ERROR_STOP=1 --no-psqlrc --set db="$POSTGRES_DB" <<'EOF'
CREATE DATABASE :"db";
EOF
  fi
  export PGDATABASE="$POSTGRES_DB"
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh)
        echo "running $f"
        # shellcheck disable=SC1090  # the user's init scripts
        if [ -x "$f" ]; then "$f"; else . "$f"; fi
        ;;
      *.sql)
        echo "running $f"
        psql -v ON_ERROR_STOP=1 --no-psqlrc -f "$f"
        ;;
      *) if [ -e "$f" ]; then echo "ignoring $f (only *.sh and *.sql are run)"; fi ;;
    esac
  done
  unset PGUSER PGDATABASE
  pg_ctl -D "$PGDATA" -m fast -w stop
  echo "PostgreSQL init done; starting the server"
fi

exec "$@"
