# Stand-in for ghcr.io/shopify/toxiproxy built on the project image: the
# project's Toxiproxy-compatible server behind the same entry points as the
# real image (/toxiproxy with Go-style flags, /toxiproxy-cli for healthchecks),
# so the compose file runs either unchanged.
ARG REPLICA_IMAGE=staging-replica/replica:latest
FROM ${REPLICA_IMAGE}
COPY docker/toxiproxy/toxiproxy /toxiproxy
COPY docker/toxiproxy/toxiproxy-cli /toxiproxy-cli
# Fail the build, not the stack, when the server module is missing.
RUN python -c "import faults.toxiproxy.__main__" || \
    { echo "faults.toxiproxy is not importable in the project image" >&2; exit 1; }
EXPOSE 8474
ENTRYPOINT ["/toxiproxy"]
CMD ["-host=0.0.0.0"]
