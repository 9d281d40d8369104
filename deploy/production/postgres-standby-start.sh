#!/bin/sh
# db2: on first start, copy db1 (pg_basebackup -R writes the standby's connection, named
# standby1 so db1 waits for it), then run as its synchronous standby. After a promotion
# (docs/deployment.md, "Several machines") it runs as the primary from the same folder.
set -e
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  until pg_isready -h "$PRIMARY_HOST" -q; do sleep 2; done
  export PGPASSWORD="$REPLICATION_PASSWORD"
  pg_basebackup -h "$PRIMARY_HOST" -U replicator -D "$PGDATA" -R -X stream -c fast \
    -d "application_name=standby1"
  chmod 700 "$PGDATA"
fi
exec postgres -D "$PGDATA"
