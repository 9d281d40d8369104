#!/usr/bin/env bash
# A PostgreSQL primary with a synchronous standby on this machine, beside the
# default server (5432), for the production recipe's fault scenario and for
# trying a failover without two machines:
#
#   scripts/postgres-standby.sh start    # primary on 5441, standby "standby1" on 5442, in sync
#   scripts/postgres-standby.sh status   # each server's role, and the standby's sync state
#   scripts/postgres-standby.sh kill     # kill -9 of the primary's postmaster (it stays down)
#   scripts/postgres-standby.sh promote  # the standby becomes the primary, writing alone
#   scripts/postgres-standby.sh stop     # stop and forget both
#
# The primary commits only once the standby has the commit
# (synchronous_commit = on, synchronous_standby_names = 'standby1'), so a
# failover loses no acknowledged order. Clients list both servers and ask for
# the writable one; after a promotion they find it by themselves:
#   ORDERBUS_DATABASE_URL="postgresql+psycopg://postgres@/test?host=127.0.0.1:5441&host=127.0.0.1:5442&target_session_attrs=read-write"
# A promoted standby has no standby of its own: `promote` clears
# synchronous_standby_names on it, or every commit would wait forever.
set -euo pipefail

DIR=${STANDBY_DIR:-/tmp/orderbus-pg}
BIN=${PG_BIN:-/usr/lib/postgresql/$(ls /usr/lib/postgresql | sort -V | tail -1)/bin}
PRIMARY=5441
STANDBY=5442

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

sql() { psql -h 127.0.0.1 -p "$1" -U postgres -d postgres -Atqc "$2"; }

wait_ready() {
  for _ in $(seq 1 60); do sql "$1" "SELECT 1" >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "postgres on $1 did not come up" >&2
  return 1
}

start() {
  mkdir -p "$DIR"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$DIR"
  as_postgres "$BIN/initdb" -D "$DIR/primary" -U postgres --auth=trust >/dev/null
  cat >> "$DIR/primary/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PRIMARY
unix_socket_directories = '$DIR'
wal_level = replica
max_wal_senders = 5
synchronous_commit = on
max_connections = 200
EOF
  echo "host replication all 127.0.0.1/32 trust" >> "$DIR/primary/pg_hba.conf"
  as_postgres "$BIN/pg_ctl" -D "$DIR/primary" -l "$DIR/primary.log" -w start >/dev/null
  wait_ready $PRIMARY
  sql $PRIMARY "CREATE DATABASE test" >/dev/null
  as_postgres "$BIN/pg_basebackup" -D "$DIR/standby" -R -X stream -c fast \
    -d "host=127.0.0.1 port=$PRIMARY user=postgres application_name=standby1"
  echo "port = $STANDBY" >> "$DIR/standby/postgresql.auto.conf"
  as_postgres "$BIN/pg_ctl" -D "$DIR/standby" -l "$DIR/standby.log" -w start >/dev/null
  wait_ready $STANDBY
  # only now: with no standby yet, every commit would wait for one
  sql $PRIMARY "ALTER SYSTEM SET synchronous_standby_names = 'standby1'" >/dev/null
  sql $PRIMARY "SELECT pg_reload_conf()" >/dev/null
  for _ in $(seq 1 60); do
    state=$(sql $PRIMARY "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby1'")
    [ "$state" = sync ] && break
    sleep 0.5
  done
  status
}

status() {
  for port in $PRIMARY $STANDBY; do
    if role=$(sql $port "SELECT CASE WHEN pg_is_in_recovery() THEN 'standby' ELSE 'primary' END" 2>/dev/null); then
      echo "$port: $role"
    else
      echo "$port: down"
    fi
  done
  sql $PRIMARY "SELECT application_name, state, sync_state FROM pg_stat_replication" 2>/dev/null || true
}

case "${1:-}" in
  start) start ;;
  status) status ;;
  kill) kill -9 "$(head -1 "$DIR/primary/postmaster.pid")" ;;
  promote)
    as_postgres "$BIN/pg_ctl" -D "$DIR/standby" -w promote >/dev/null
    sql $STANDBY "ALTER SYSTEM SET synchronous_standby_names = ''" >/dev/null
    sql $STANDBY "SELECT pg_reload_conf()" >/dev/null
    status
    ;;
  stop)
    for node in primary standby; do
      [ -d "$DIR/$node" ] && as_postgres "$BIN/pg_ctl" -D "$DIR/$node" -m immediate stop >/dev/null 2>&1 || true
    done
    rm -rf "$DIR"
    ;;
  *) echo "usage: $0 start|status|kill|promote|stop" >&2; exit 2 ;;
esac
