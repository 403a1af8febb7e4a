#!/bin/sh
# Starts Flower, Celery's monitor, on the broker of inferq's Celery workers (the webhook
# worker, the feeder and the inference workers): INFERQ_REDIS_URL. Flower's own FLOWER_*
# variables apply (FLOWER_PORT, FLOWER_ADDRESS, ...); arguments are passed on to it.
#
# It refuses to start without basic auth: Flower can shut workers down and has no password of
# its own. FLOWER_BASIC_AUTH=user:password (several pairs comma-separated); Flower reads it
# from the environment, so the password is not on a command line.
set -eu

refuse() {
  echo "flower: $1; set FLOWER_BASIC_AUTH=user:password (e.g. in .env), there is no default" >&2
  exit 2
}

auth=${FLOWER_BASIC_AUTH:-}
[ -n "$auth" ] || refuse "FLOWER_BASIC_AUTH is not set"
case ",$auth," in
  *,,*) refuse "FLOWER_BASIC_AUTH has an empty entry" ;;
esac
# Each comma-separated pair needs a user and a password; no globbing of what it holds.
set -f
old_ifs=$IFS
IFS=,
for pair in $auth; do
  case $pair in
    ?*:?*) ;;
    *) refuse "FLOWER_BASIC_AUTH has an entry that is not user:password" ;;
  esac
done
IFS=$old_ifs
set +f

exec celery --broker "${INFERQ_REDIS_URL:-redis://127.0.0.1:6379/0}" flower "$@"
