#!/usr/bin/env bash
# Quick start: the whole stack on this machine (README).
#
#   ./deploy/up.sh [--sample]
#
# Sets up .venv, then runs `storemon up`, which starts Kafka and PostgreSQL
# from deploy/local (unless KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL are set),
# the worker, the reporter and the API. Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT="$PWD"
# shellcheck source=deploy/venv.sh
source "$REPO_ROOT/deploy/venv.sh"
exec storemon up "$@"
