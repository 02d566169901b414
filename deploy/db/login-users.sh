#!/bin/sh
# Creates (or updates) the LOGIN users of the compose deployment and grants them the
# least-privilege group roles that `gpu-health schema apply` creates:
#   $WRITER_LOGIN (default gpu_health_processor) -> gpu_health_writer  (the processor)
#   $READER_LOGIN (default gpu_health_grafana)   -> gpu_health_reader  (Grafana, reports)
# Run by the one-shot `db-users` service of docker-compose.yml in the timescaledb image
# (it has psql), after `migrate`. Idempotent: a second run only resets the passwords from
# the secret files, so rotating a password is: edit the file, run deploy/make-secrets.sh,
# `docker compose up -d --force-recreate db-users gpu-health grafana`.
#
# Connection: PGHOST/PGPORT/PGUSER/PGDATABASE from the environment, the superuser's
# password from /run/secrets/postgres_password. Passwords never go on a command line:
# login-users.sql reads them from the secret files itself.
set -eu

SECRETS=${SECRETS_DIR:-/run/secrets}
for f in postgres_password writer_password reader_password; do
  if [ ! -s "$SECRETS/$f" ]; then
    echo "login-users.sh: error: secret $SECRETS/$f is missing or empty (deploy/secrets/README.md)" >&2
    exit 1
  fi
done

PGPASSWORD=$(tr -d '\r\n' <"$SECRETS/postgres_password")
export PGPASSWORD
export SECRETS_DIR="$SECRETS"

exec psql --no-psqlrc --quiet -v ON_ERROR_STOP=1 \
  -v writer_login="${WRITER_LOGIN:-gpu_health_processor}" \
  -v reader_login="${READER_LOGIN:-gpu_health_grafana}" \
  -f "$(dirname "$0")/login-users.sql"
