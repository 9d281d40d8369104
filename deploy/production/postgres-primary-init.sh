#!/bin/sh
# Runs once, when db1's data folder is created (docker-entrypoint-initdb.d): a role the
# standby replicates with, allowed from the stack's network. A commit returns only once the
# standby "standby1" has it (synchronous_standby_names on the command line), so a failover
# loses no order orderbus acknowledged.
set -e
psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" <<SQL
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD '$REPLICATION_PASSWORD';
SQL
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
