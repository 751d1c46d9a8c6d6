# Stand-in for postgres:16-alpine built from Debian's PostgreSQL (15 on
# bookworm), for machines where no container registry answers.
# Honours the official image's POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB /
# POSTGRES_HOST_AUTH_METHOD / PGDATA and /docker-entrypoint-initdb.d, and ships
# pg_isready. Starts as root like the official image and drops to postgres.
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
ARG PG_MAJOR=15
# No cluster at install time: the entrypoint creates one at first start.
RUN mkdir -p /etc/postgresql-common \
 && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        postgresql-${PG_MAJOR} \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/run/postgresql /var/lib/postgresql/data /docker-entrypoint-initdb.d \
 && chown -R postgres:postgres /var/run/postgresql /var/lib/postgresql \
 && chmod 2777 /var/run/postgresql
ENV PATH=/usr/lib/postgresql/${PG_MAJOR}/bin:$PATH \
    PGDATA=/var/lib/postgresql/data \
    LANG=C.UTF-8
# A data dir initialised at build time for the compose stack's user and database
# (its password a random one nobody keeps): the entry point copies it and sets the
# run's password, instead of an initdb and a temporary server at every start.
ARG TEMPLATE_USER=replica
ARG TEMPLATE_DB=replica
ENV PGTEMPLATE=/var/lib/postgresql/template
RUN set -e; \
    pw=$(mktemp); head -c 24 /dev/urandom | base64 > "$pw"; chown postgres "$pw"; \
    setpriv --reuid=postgres --regid=postgres --init-groups initdb -D "$PGTEMPLATE" \
        --username="$TEMPLATE_USER" --pwfile="$pw" --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 --wal-segsize=1 >/dev/null; \
    rm -f "$pw"; \
    printf "listen_addresses = '*'\nunix_socket_directories = '/var/run/postgresql'\n" >> "$PGTEMPLATE/postgresql.conf"; \
    echo "host all all all scram-sha-256" >> "$PGTEMPLATE/pg_hba.conf"; \
    echo "CREATE DATABASE \"$TEMPLATE_DB\";" | setpriv --reuid=postgres --regid=postgres --init-groups \
        postgres --single -D "$PGTEMPLATE" -c listen_addresses='' postgres > /tmp/template.log 2>&1; \
    ! grep -q ERROR /tmp/template.log; rm -f /tmp/template.log; \
    printf '%s\n%s\n' "$TEMPLATE_USER" "$TEMPLATE_DB" > "$PGTEMPLATE.for"
COPY docker/postgres/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
