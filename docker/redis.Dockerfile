# Stand-in for redis:7-alpine built from Debian's redis-server (7.0 on
# bookworm), for machines where no container registry answers.
# Like the official image: `redis-server` on 6379 as the redis user, data in
# /data, redis-cli available for healthchecks.
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown redis:redis /data
WORKDIR /data
USER redis
EXPOSE 6379
# No config file: listen on all interfaces of the container; the compose file
# turns protected mode off, as the official image does.
CMD ["redis-server", "--protected-mode", "no"]
