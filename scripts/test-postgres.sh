#!/usr/bin/env bash
# Start (or reuse) a throwaway PostgreSQL cluster on loopback for the test suite and print
# its URL. Used by `make test` when SIYU_TEST_DATABASE_URL is not set.
# Usage: scripts/test-postgres.sh start|stop
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
port="${SIYU_TEST_PG_PORT:-54329}"
data="$root/var/postgres/data"
run="$root/var/postgres/run"
log="$root/var/postgres/server.log"
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
[ -n "$bin" ] || { echo "PostgreSQL server binaries not found (Debian package postgresql)" >&2; exit 1; }

as_owner() {
  # PostgreSQL refuses to run as root: run it as the postgres system user then.
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-start}" in
  start)
    mkdir -p "$root/var/postgres" "$run"
    chmod 755 "$root/var" "$root/var/postgres"
    [ "$(id -u)" -eq 0 ] && chown postgres "$root/var/postgres" "$run"
    if [ ! -f "$data/PG_VERSION" ]; then
      as_owner "$bin/initdb" -D "$data" -U siyu --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    fi
    if ! as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
      as_owner "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 start \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $run -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >/dev/null
    fi
    echo "postgres://siyu@127.0.0.1:$port/siyu"
    ;;
  stop)
    as_owner "$bin/pg_ctl" -D "$data" -m fast stop >/dev/null 2>&1 || true
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
