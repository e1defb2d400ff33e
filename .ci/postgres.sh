#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests, on 127.0.0.1 and a free port, owned by an unprivileged user.
#
#   eval "$(bash .ci/postgres.sh start)"   # prints `export LLMCOST_TEST_POSTGRES_DSN=...` (and LLMCOST_TEST_POSTGRES_DIR)
#   bash .ci/postgres.sh stop             # stops the server started above and removes its directory
#
# Installs Debian's `postgresql` if no server binaries are found (root only). Exits non-zero, saying why on stderr,
# if the server does not come up, so a CI that expects it fails instead of skipping the PostgreSQL tests.
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }

bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$d" ] && [ -x "$d/pg_ctl" ]; then
    echo "$d"
  fi
}

start() {
  local bin
  bin=$(bindir)
  if [ -z "$bin" ]; then
    if [ "$(id -u)" -ne 0 ]; then
      log "no PostgreSQL server binaries under /usr/lib/postgresql and not root to install them"
      exit 1
    fi
    log "installing Debian's postgresql"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >/tmp/llmcost-pg-apt.log 2>&1 ||
      { tail -n 20 /tmp/llmcost-pg-apt.log >&2; log "apt-get install postgresql failed"; exit 1; }
    bin=$(bindir)
    [ -n "$bin" ] || { log "postgresql installed but no pg_ctl found"; exit 1; }
  fi

  # initdb refuses to run as root: the cluster belongs to the `postgres` user (made by the Debian package), or to
  # the current user when not root.
  local owner run
  if [ "$(id -u)" -eq 0 ]; then
    owner=postgres
    id -u "$owner" >/dev/null 2>&1 || useradd --system --no-create-home "$owner"
    run=(runuser -u "$owner" --)
  else
    owner=$(id -un)
    run=()
  fi

  local dir port password
  dir=$(mktemp -d /tmp/llmcost-pg.XXXXXX)
  chown "$owner" "$dir"
  chmod 700 "$dir"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
  password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  printf '%s\n' "$password" >"$dir/pwfile"
  chown "$owner" "$dir/pwfile"

  "${run[@]}" "$bin/initdb" -D "$dir/data" -U llmcost --pwfile="$dir/pwfile" -A scram-sha-256 -E UTF8 \
    --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; log "initdb failed"; exit 1; }
  rm -f "$dir/pwfile"
  # In the configuration file, not on pg_ctl's command line, so that the tests' own `pg_ctl stop` and `start` bring
  # the server back on the same address. Tests open up to ~20 connections at once (8 writer processes and more).
  cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 100
fsync = on
CONF
  "${run[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null ||
    { tail -n 30 "$dir/server.log" >&2; log "the server did not start"; exit 1; }
  "${run[@]}" "$bin/pg_isready" -h 127.0.0.1 -p "$port" -t 30 >/dev/null ||
    { tail -n 30 "$dir/server.log" >&2; log "the server does not answer on 127.0.0.1:$port"; exit 1; }

  echo "export LLMCOST_TEST_POSTGRES_DSN='postgresql://llmcost:${password}@127.0.0.1:${port}/postgres'"
  echo "export LLMCOST_TEST_POSTGRES_DIR='${dir}'"
  echo "export LLMCOST_TEST_POSTGRES_CTL='${run[*]:+${run[*]} }${bin}/pg_ctl -D ${dir}/data -l ${dir}/server.log'"
}

stop() {
  local dir=${1:-${LLMCOST_TEST_POSTGRES_DIR:-}}
  [ -n "$dir" ] && [ -d "$dir/data" ] || { log "no server directory to stop (give it, or set LLMCOST_TEST_POSTGRES_DIR)"; exit 0; }
  local bin run=()
  bin=$(bindir)
  [ "$(id -u)" -eq 0 ] && run=(runuser -u postgres --)
  "${run[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}

case "${1:-}" in
  start) start ;;
  stop) shift; stop "$@" ;;
  *) echo "usage: $0 start|stop [dir]" >&2; exit 2 ;;
esac
