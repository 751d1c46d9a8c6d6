# The project image: backend (default), auth service and the Toxiproxy-compatible
# fault proxy, chosen by command:
#   python -m replica.backend
#   python -m replica.auth
#   python -m faults.toxiproxy --host 0.0.0.0 --port 8474 --config FILE
#
# Build context: the repository root (scripts/make-images.sh stages a lean copy).
#   docker build -f docker/replica.Dockerfile -t staging-replica/replica .
#
# PYTHON_IMAGE: any image with Python 3.11+ and its venv module (default: the
# official slim image; scripts/make-images.sh swaps in a Debian-built one when
# no registry answers).
# Extra CA bundle: put a PEM bundle at docker/ca-bundle.crt (git-ignored) and
# pip uses it (PIP_CERT) at build time — for TLS-inspecting proxies.
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# The glob makes the bundle optional; this Dockerfile always matches.
COPY docker/ca-bundle.cr[t] docker/replica.Dockerfile /tmp/build-ca/
RUN python3 -m venv /opt/venv \
 && { [ -s /tmp/build-ca/ca-bundle.crt ] || rm -f /tmp/build-ca/ca-bundle.crt; } \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin replica

WORKDIR /src
# Dependencies first, from pyproject.toml alone, so source edits rebuild only the
# last layer.
COPY pyproject.toml ./
RUN set -e; \
    if [ -f /tmp/build-ca/ca-bundle.crt ]; then export PIP_CERT=/tmp/build-ca/ca-bundle.crt; fi; \
    mkdir -p replica faults; touch replica/__init__.py faults/__init__.py README.md; \
    pip install . ; \
    pip uninstall -y staging-replica; \
    rm -rf /src/* /src/.[!.]* 2>/dev/null || true

COPY pyproject.toml README.m[d] ./
COPY replica ./replica
COPY faults ./faults
RUN set -e; \
    if [ -f /tmp/build-ca/ca-bundle.crt ]; then export PIP_CERT=/tmp/build-ca/ca-bundle.crt; fi; \
    [ -f README.md ] || touch README.md; \
    pip install --no-deps . ; \
    cd / && rm -rf /src /tmp/build-ca; \
    python -c "import replica, faults"

WORKDIR /
USER replica
EXPOSE 8000 8081 8474
CMD ["python", "-m", "replica.backend"]
