-- LOGIN users for the group roles of schema/001_tables.sql, run by login-users.sh as the
-- superuser (psql variables writer_login and reader_login; the passwords are read from
-- the secret files under $SECRETS_DIR by psql itself, so they appear on no command line).
-- Idempotent: creates a missing user, then (re)sets its attributes and password and its
-- single group role. The users own nothing and get no privilege of their own.

\set ON_ERROR_STOP on
\set writer_password `cat "$SECRETS_DIR/writer_password"`
\set reader_password `cat "$SECRETS_DIR/reader_password"`

-- The group roles come from `gpu-health schema apply` (the `migrate` service).
DO $$
BEGIN
    IF (SELECT count(*) FROM pg_roles
        WHERE rolname IN ('gpu_health_writer', 'gpu_health_reader')) <> 2 THEN
        RAISE EXCEPTION 'roles gpu_health_writer / gpu_health_reader are missing: '
                        'run `gpu-health schema apply` as the owner first';
    END IF;
END
$$;

SELECT :'writer_login' <> :'reader_login'
       AND :'writer_login' NOT IN ('gpu_health_writer', 'gpu_health_reader', current_user)
       AND :'reader_login' NOT IN ('gpu_health_writer', 'gpu_health_reader', current_user)
       AS logins_ok \gset
\if :logins_ok
\else
    \warn 'login-users.sql: writer_login and reader_login must differ from each other, from the group roles and from the superuser'
    SELECT 1 / 0 AS invalid_login_names;
\endif

BEGIN;

SELECT format('CREATE ROLE %I LOGIN', :'writer_login')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'writer_login') \gexec
SELECT format('CREATE ROLE %I LOGIN', :'reader_login')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'reader_login') \gexec

-- Plain login users: no superuser, no role or database creation, no replication; they
-- act only through the group role they inherit. The processor needs a handful of
-- connections (sink, refresh and retention tasks); Grafana's pool a few more.
SELECT format('ALTER ROLE %I WITH LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE '
              'NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 16 PASSWORD %L',
              :'writer_login', :'writer_password') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE '
              'NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 32 PASSWORD %L',
              :'reader_login', :'reader_password') \gexec

GRANT gpu_health_writer TO :"writer_login";
GRANT gpu_health_reader TO :"reader_login";

-- Dashboards only read: make every session of the reader read-only by default, and
-- stop a runaway panel query after a minute.
SELECT format('ALTER ROLE %I SET default_transaction_read_only = on', :'reader_login') \gexec
SELECT format('ALTER ROLE %I SET statement_timeout = %L', :'reader_login', '60s') \gexec

COMMIT;

\echo login-users.sql: :writer_login -> gpu_health_writer, :reader_login -> gpu_health_reader
