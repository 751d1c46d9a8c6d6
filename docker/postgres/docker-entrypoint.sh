#!/usr/bin/env bash
# Entry point of the Debian-based PostgreSQL stand-in (docker/postgres.Dockerfile).
# A small subset of the official image's entry point: on first start, initdb
# with POSTGRES_USER / POSTGRES_PASSWORD, create POSTGRES_DB, run
# /docker-entrypoint-initdb.d/*.sql|*.sh, then exec the server listening on all
# interfaces of the container.
set -Eeuo pipefail

log() { printf '%s [entrypoint] %s\n' "$(date -u +%FT%TZ)" "$*" >&2; }

if [[ ${1:-} == -* ]]; then
    set -- postgres "$@"
fi

if [[ ${1:-} != postgres ]]; then
    exec "$@"
fi

# As the official image: started as root, prepare the data directory (it may be
# a fresh tmpfs or volume owned by root), then drop to the postgres user.
if [[ $(id -u) == 0 ]]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
export PGDATA

# The data dir prepared at build time (PGTEMPLATE), when it fits this start: the same
# user and database, password auth, nothing else to initialise. Its password is set
# in single-user mode (no listener yet), read from stdin, never from argv.
template_fits() {
    local template=${PGTEMPLATE:-}
    [[ -n $template && -s $template/PG_VERSION && -s $template.for ]] || return 1
    [[ $(sed -n 1p "$template.for") == "$POSTGRES_USER" && $(sed -n 2p "$template.for") == "$POSTGRES_DB" ]] || return 1
    [[ $POSTGRES_HOST_AUTH_METHOD == scram-sha-256 && -n ${POSTGRES_PASSWORD:-} && -z ${POSTGRES_INITDB_ARGS:-} ]] || return 1
    [[ -z $(ls -A /docker-entrypoint-initdb.d 2>/dev/null) ]]
}

if [[ ! -s $PGDATA/PG_VERSION ]] && template_fits; then
    log "copying the data dir prepared at build time for user $POSTGRES_USER"
    mkdir -p "$PGDATA"
    cp -a "$PGTEMPLATE/." "$PGDATA/"
    chmod 700 "$PGDATA"
    out=$(printf 'ALTER ROLE "%s" PASSWORD '"'"'%s'"'"';\n' "$POSTGRES_USER" "${POSTGRES_PASSWORD//\'/\'\'}" \
        | postgres --single -D "$PGDATA" -c listen_addresses='' postgres 2>&1) || { echo "$out" >&2; exit 1; }
    if grep -q ERROR <<<"$out"; then echo "$out" >&2; exit 1; fi
    log "ready to start"
fi

if [[ ! -s $PGDATA/PG_VERSION ]]; then
    if [[ -z ${POSTGRES_PASSWORD:-} && $POSTGRES_HOST_AUTH_METHOD != trust ]]; then
        log "ERROR: POSTGRES_PASSWORD is not set (or set POSTGRES_HOST_AUTH_METHOD=trust)"
        exit 1
    fi
    mkdir -p "$PGDATA"
    chmod 700 "$PGDATA"
    log "initialising $PGDATA for user $POSTGRES_USER"
    pwfile=$(mktemp)
    trap 'rm -f "$pwfile"' EXIT
    printf '%s\n' "${POSTGRES_PASSWORD:-}" >"$pwfile"
    # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of words, as in the official image
    initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust \
        --auth-host="$POSTGRES_HOST_AUTH_METHOD" --encoding=UTF8 --locale=C.UTF-8 \
        ${POSTGRES_INITDB_ARGS:-} >/dev/null
    rm -f "$pwfile"
    trap - EXIT
    {
        echo "listen_addresses = '*'"
        echo "unix_socket_directories = '/var/run/postgresql'"
    } >>"$PGDATA/postgresql.conf"
    echo "host all all all $POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"

    # A temporary server on the Unix socket only: nothing outside sees it
    # before initialisation is complete (pg_isready -h 127.0.0.1 stays false).
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w -t 60 start >/dev/null
    psql=(psql -v ON_ERROR_STOP=1 --no-password --no-psqlrc -q --username "$POSTGRES_USER" --dbname postgres)
    if [[ $POSTGRES_DB != postgres ]]; then
        "${psql[@]}" --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    fi
    shopt -s nullglob
    for f in /docker-entrypoint-initdb.d/*; do
        case $f in
            *.sh)  log "running $f"
                   # shellcheck disable=SC1090
                   . "$f" ;;
            *.sql) log "running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
            *)     log "ignoring $f" ;;
        esac
    done
    shopt -u nullglob
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    log "initialisation complete"
fi

exec "$@"
