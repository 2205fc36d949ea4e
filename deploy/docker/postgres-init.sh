#!/usr/bin/env bash
# Run once by the postgres image when it initialises its data (docker-compose.yml mounts
# it in /docker-entrypoint-initdb.d): the application role `storemon`, neither superuser
# nor able to create roles or databases, owning the database `storemon` (so it can create
# its schemas and large objects). POSTGRES_USER (`postgres`) stays the only superuser.
set -euo pipefail

# As an SQL literal: quotes doubled.
password="${STOREMON_DB_PASSWORD:?set STOREMON_DB_PASSWORD}"
password="${password//\'/\'\'}"
# The password goes on stdin, never on a command line.
psql -v ON_ERROR_STOP=1 -q --username "$POSTGRES_USER" --dbname postgres <<SQL
CREATE ROLE storemon LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD '$password';
ALTER DATABASE "$POSTGRES_DB" OWNER TO storemon;
SQL
