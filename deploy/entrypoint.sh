#!/bin/sh
# nova-grpc container entrypoint: the first argument names the role, the rest go to it.
#
#   api | conductor | compute   run that service (settings from NOVA_GRPC_* variables)
#   migrate [ARGS]              alembic upgrade head; retried while the database is not up
#                               (MIGRATE_ATTEMPTS tries, default 30, MIGRATE_INTERVAL s apart)
#   migrate --wait [ARGS]       wait until the schema is at head (init containers): loops on
#                               `--check` every MIGRATE_INTERVAL s (default 3); gives up after
#                               MIGRATE_WAIT_TIMEOUT s when that is set and not 0
#   manage [ARGS]               nova-grpc-manage (tokens, images, pki, db sync)
#   novactl [ARGS]              the public API client
#   anything else               executed as is (e.g. `sh`, `python`, `grpcurl`)
set -eu

PYTHON="${PYTHON:-python}"

usage() {
  echo "usage: entrypoint.sh api|conductor|compute|migrate [--wait]|manage|novactl [ARGS...]" >&2
  echo "       entrypoint.sh COMMAND [ARGS...]   (any other command runs as is)" >&2
}

migrate_wait() {
  interval="${MIGRATE_INTERVAL:-3}"
  timeout="${MIGRATE_WAIT_TIMEOUT:-0}"
  started=$(date +%s)
  while :; do
    if output=$("$PYTHON" -m services.common.db --check "$@" 2>&1); then
      echo "migrate --wait: schema at head (${output##*
})"
      return 0
    fi
    # Only the last line: a database that is not up yet would print a whole traceback.
    echo "migrate --wait: not at head yet: ${output##*
}" >&2
    if [ "$timeout" != 0 ] && [ $(($(date +%s) - started)) -ge "$timeout" ]; then
      echo "migrate --wait: gave up after ${timeout}s" >&2
      return 1
    fi
    sleep "$interval"
  done
}

migrate() {
  attempts="${MIGRATE_ATTEMPTS:-30}"
  interval="${MIGRATE_INTERVAL:-3}"
  attempt=1
  until "$PYTHON" -m services.common.db "$@"; do
    if [ "$attempt" -ge "$attempts" ]; then
      echo "migrate: failed after $attempt attempts" >&2
      return 1
    fi
    echo "migrate: attempt $attempt of $attempts failed; again in ${interval}s" >&2
    attempt=$((attempt + 1))
    sleep "$interval"
  done
}

if [ "$#" -eq 0 ]; then
  usage
  exit 2
fi

role="$1"
shift
case "$role" in
  api)
    exec "$PYTHON" -m services.api "$@"
    ;;
  conductor)
    exec "$PYTHON" -m services.conductor "$@"
    ;;
  compute)
    exec "$PYTHON" -m services.compute "$@"
    ;;
  migrate)
    if [ "${1:-}" = "--wait" ]; then
      shift
      migrate_wait "$@"
    else
      migrate "$@"
    fi
    ;;
  manage)
    exec "$PYTHON" -m services.cli.manage "$@"
    ;;
  novactl)
    exec "$PYTHON" -m services.cli "$@"
    ;;
  -h | --help | help)
    usage
    ;;
  *)
    exec "$role" "$@"
    ;;
esac
