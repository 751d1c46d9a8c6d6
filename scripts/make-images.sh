#!/usr/bin/env bash
# Build every image the compose stack needs (`make images` calls this).
#
# For each base image — python:3.11-slim, postgres:16-alpine, redis:7-alpine,
# ghcr.io/shopify/toxiproxy:2.12.0 — the official image is used when it is
# already present or a registry answers a (bounded) pull. Otherwise a local
# stand-in is built from Debian's packages: a Debian base made with debootstrap
# (cached as an image), then Python / PostgreSQL / Redis images on it, and the
# project's Toxiproxy-compatible server behind the real image's entry points.
# Then the project image is built, and the choices are written to
# .replica/images.env, which `docker compose --env-file` and the compose driver
# read.
#
# Usage: scripts/make-images.sh [--stand-ins | --official] [--no-pull]
#   --stand-ins   never pull: build every stand-in (what CI does here)
#   --official    use only official images (fail if one cannot be had)
#   --no-pull     use images already present; build stand-ins for the others
#
# Environment:
#   REPLICA_IMAGES_MODE   auto (default) | stand-ins | official
#   EXTRA_CA_CERT         PEM file of extra CA certificates trusted by pip at
#                         build time (TLS-inspecting proxies); it is appended to
#                         the host's system bundle in docker/ca-bundle.crt
#   REPLICA_HOST_CA=0     do not put the host's system CA bundle into builds
#   PYTHON_IMAGE / POSTGRES_IMAGE / REDIS_IMAGE / TOXIPROXY_IMAGE / DEBIAN_IMAGE
#                         the official images to try (defaults below)
#   REPLICA_IMAGE         tag of the project image (default staging-replica/replica:latest)
#   REPLICA_PULL_TIMEOUT_S  bound of one pull attempt (default 300)
#   REPLICA_DEBIAN_MIRROR   mirror for debootstrap (default: the machine's apt mirror)
#
# Exit codes:
#   0 ok; 10 no Docker engine answers; 11 bad usage; 12 an official image was
#   required but cannot be had; 13 debootstrap (or installing it) failed;
#   14 an image build failed
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

MODE=${REPLICA_IMAGES_MODE:-auto}
NO_PULL=0
for arg in "$@"; do
    case $arg in
        --stand-ins) MODE=stand-ins ;;
        --official) MODE=official ;;
        --no-pull) NO_PULL=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "make-images: unknown argument: $arg" >&2; exit 11 ;;
    esac
done
case $MODE in auto|stand-ins|official) ;; *) echo "make-images: REPLICA_IMAGES_MODE must be auto, stand-ins or official" >&2; exit 11 ;; esac

OFFICIAL_PYTHON=${PYTHON_IMAGE:-python:3.11-slim}
OFFICIAL_POSTGRES=${POSTGRES_IMAGE:-postgres:16-alpine}
OFFICIAL_REDIS=${REDIS_IMAGE:-redis:7-alpine}
OFFICIAL_TOXIPROXY=${TOXIPROXY_IMAGE:-ghcr.io/shopify/toxiproxy:2.12.0}
OFFICIAL_DEBIAN=${DEBIAN_IMAGE:-debian:bookworm-slim}
REPLICA_IMAGE=${REPLICA_IMAGE:-staging-replica/replica:latest}
PULL_TIMEOUT=${REPLICA_PULL_TIMEOUT_S:-300}

LOCAL_DEBIAN=staging-replica/debian:bookworm
LOCAL_PYTHON=staging-replica/python:3.11-bookworm
LOCAL_POSTGRES=staging-replica/postgres:15-bookworm
LOCAL_REDIS=staging-replica/redis:7-bookworm
LOCAL_TOXIPROXY=staging-replica/toxiproxy:latest

ENV_FILE=$ROOT/.replica/images.env
T_START=$SECONDS

log() { printf '[make-images %3ds] %s\n' "$((SECONDS - T_START))" "$*" >&2; }
die() { local code=$1; shift; log "ERROR: $*"; exit "$code"; }

TMP=$(mktemp -d /tmp/replica-images.XXXXXX)
cleanup() { rm -rf "$TMP"; }
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

timeout 20 docker info >/dev/null 2>&1 \
    || die 10 "no Docker engine answers ('docker info' failed): run scripts/ensure-docker.sh (as root) or start Docker"

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# Registries that did not answer once are not asked again in this run.
declare -A DEAD_REGISTRY=()
registry_of() {
    local ref=$1 first=${1%%/*}
    if [[ $ref == */* && ( $first == *.* || $first == *:* || $first == localhost ) ]]; then
        echo "$first"
    else
        echo docker.io
    fi
}

# Usable official image: present, or pulled within the bound.
obtain() {
    local ref=$1 reg
    have_image "$ref" && { log "using $ref (present)"; return 0; }
    [[ $MODE == stand-ins || $NO_PULL -eq 1 ]] && return 1
    reg=$(registry_of "$ref")
    [[ -n ${DEAD_REGISTRY[$reg]:-} ]] && return 1
    log "pulling $ref (at most ${PULL_TIMEOUT} s)"
    local t0=$SECONDS out
    if out=$(timeout "$PULL_TIMEOUT" docker pull -q "$ref" 2>&1); then
        log "pulled $ref in $((SECONDS - t0)) s"
        return 0
    fi
    log "cannot pull $ref: $(tail -n1 <<<"$out")"
    DEAD_REGISTRY[$reg]=1
    return 1
}

# A lean build context: the project's sources and the docker/ files, never the
# virtualenv, .git or caches.
stage_context() {
    local ctx=$TMP/context
    rm -rf "$ctx"
    mkdir -p "$ctx"
    cp pyproject.toml "$ctx/"
    [[ -f README.md ]] && cp README.md "$ctx/"
    local d
    for d in replica faults docker; do
        [[ -d $d ]] || continue
        tar -C "$ROOT" --exclude='__pycache__' --exclude='*.pyc' -cf - "$d" | tar -C "$ctx" -xf -
    done
    echo "$ctx"
}

# docker/ca-bundle.crt (git-ignored): the host's CA bundle plus EXTRA_CA_CERT,
# so pip inside builds trusts what the host trusts (TLS-inspecting proxies).
prepare_ca_bundle() {
    local out=$ROOT/docker/ca-bundle.crt new=$TMP/ca-bundle.crt
    : >"$new"
    if [[ ${REPLICA_HOST_CA:-1} != 0 ]]; then
        local f
        for f in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/cert.pem; do
            if [[ -s $f ]]; then cat "$f" >>"$new"; break; fi
        done
    fi
    if [[ -n ${EXTRA_CA_CERT:-} ]]; then
        [[ -s $EXTRA_CA_CERT ]] || die 11 "EXTRA_CA_CERT=$EXTRA_CA_CERT is not a readable, non-empty file"
        { echo; cat "$EXTRA_CA_CERT"; } >>"$new"
        log "build CA bundle: extra certificates from $EXTRA_CA_CERT"
    fi
    if [[ -s $new ]]; then
        cmp -s "$new" "$out" 2>/dev/null || cp "$new" "$out"
    else
        rm -f "$out"
    fi
}

build() { # build TAG DOCKERFILE [--build-arg ...]
    local tag=$1 file=$2; shift 2
    local t0=$SECONDS logf=$TMP/build-${tag//[\/:]/_}.log
    log "building $tag ($file)"
    if ! docker build --force-rm -f "$CONTEXT/$file" -t "$tag" "$@" "$CONTEXT" >"$logf" 2>&1; then
        tail -n 40 "$logf" >&2
        die 14 "building $tag failed (see above)"
    fi
    log "built $tag in $((SECONDS - t0)) s"
}

debian_mirror() {
    if [[ -n ${REPLICA_DEBIAN_MIRROR:-} ]]; then echo "$REPLICA_DEBIAN_MIRROR"; return; fi
    local uri
    uri=$(awk '/^URIs:/ && !/security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    [[ -z $uri ]] && uri=$(awk '$1=="deb" && !/security/ {for(i=2;i<=NF;i++) if ($i ~ /^(https?|ftp):/) {print $i; exit}}' /etc/apt/sources.list 2>/dev/null || true)
    echo "${uri:-http://deb.debian.org/debian}"
}

# The Debian base of the stand-ins: the official debian image when it can be
# had, else debootstrap --variant=minbase imported as an image (cached).
debian_base() {
    if obtain "$OFFICIAL_DEBIAN"; then DEBIAN_BASE=$OFFICIAL_DEBIAN; return; fi
    DEBIAN_BASE=$LOCAL_DEBIAN
    if have_image "$LOCAL_DEBIAN"; then log "using $LOCAL_DEBIAN (cached)"; return; fi
    [[ $(id -u) -eq 0 ]] || die 13 "building the Debian base needs root (debootstrap); or pull $OFFICIAL_DEBIAN"
    if ! command -v debootstrap >/dev/null 2>&1; then
        log "installing debootstrap with apt"
        { timeout 300 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq debootstrap; } >"$TMP/apt.log" 2>&1 \
            || { tail -n 20 "$TMP/apt.log" >&2; die 13 "cannot install debootstrap"; }
    fi
    local mirror dir=$TMP/rootfs t0=$SECONDS
    mirror=$(debian_mirror)
    log "debootstrap --variant=minbase bookworm from $mirror (about 30 s)"
    if ! timeout 900 debootstrap --variant=minbase bookworm "$dir" "$mirror" >"$TMP/debootstrap.log" 2>&1; then
        tail -n 20 "$TMP/debootstrap.log" >&2
        die 13 "debootstrap failed"
    fi
    # apt must not keep downloaded packages in the images built on it
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    log "debootstrap done in $((SECONDS - t0)) s; importing as $LOCAL_DEBIAN"
    tar -C "$dir" -c . | docker import \
        --change 'ENV LANG=C.UTF-8' --change 'CMD ["bash"]' - "$LOCAL_DEBIAN" >/dev/null \
        || die 13 "docker import of the Debian base failed"
    rm -rf "$dir"
    log "Debian base ready in $((SECONDS - t0)) s"
}

log "mode: $MODE"
CONTEXT=$(stage_context)
prepare_ca_bundle
[[ -f $ROOT/docker/ca-bundle.crt ]] && cp "$ROOT/docker/ca-bundle.crt" "$CONTEXT/docker/ca-bundle.crt"

need_debian=0
if obtain "$OFFICIAL_PYTHON"; then PY=$OFFICIAL_PYTHON; else PY=""; need_debian=1; fi
if obtain "$OFFICIAL_POSTGRES"; then PG=$OFFICIAL_POSTGRES; else PG=""; need_debian=1; fi
if obtain "$OFFICIAL_REDIS"; then RD=$OFFICIAL_REDIS; else RD=""; need_debian=1; fi
if obtain "$OFFICIAL_TOXIPROXY"; then TP=$OFFICIAL_TOXIPROXY; else TP=""; fi

if [[ $MODE == official ]]; then
    missing=()
    [[ -z $PY ]] && missing+=("$OFFICIAL_PYTHON")
    [[ -z $PG ]] && missing+=("$OFFICIAL_POSTGRES")
    [[ -z $RD ]] && missing+=("$OFFICIAL_REDIS")
    [[ -z $TP ]] && missing+=("$OFFICIAL_TOXIPROXY")
    [[ ${#missing[@]} -eq 0 ]] || die 12 "official images not available: ${missing[*]} (drop --official to build stand-ins)"
fi

if [[ $need_debian -eq 1 ]]; then
    debian_base
    if [[ -z $PY ]]; then build "$LOCAL_PYTHON" docker/python.Dockerfile --build-arg "DEBIAN_IMAGE=$DEBIAN_BASE"; PY=$LOCAL_PYTHON; fi
    if [[ -z $PG ]]; then build "$LOCAL_POSTGRES" docker/postgres.Dockerfile --build-arg "DEBIAN_IMAGE=$DEBIAN_BASE"; PG=$LOCAL_POSTGRES; fi
    if [[ -z $RD ]]; then build "$LOCAL_REDIS" docker/redis.Dockerfile --build-arg "DEBIAN_IMAGE=$DEBIAN_BASE"; RD=$LOCAL_REDIS; fi
fi

build "$REPLICA_IMAGE" docker/replica.Dockerfile --build-arg "PYTHON_IMAGE=$PY"

if [[ -z $TP ]]; then
    build "$LOCAL_TOXIPROXY" docker/toxiproxy.Dockerfile --build-arg "REPLICA_IMAGE=$REPLICA_IMAGE"
    TP=$LOCAL_TOXIPROXY
fi

mkdir -p "$(dirname "$ENV_FILE")"
cat >"$ENV_FILE.tmp" <<EOF
# Written by scripts/make-images.sh on $(date -u +%FT%TZ); read by
# 'docker compose --env-file .replica/images.env' and the compose driver.
PYTHON_IMAGE=$PY
POSTGRES_IMAGE=$PG
REDIS_IMAGE=$RD
TOXIPROXY_IMAGE=$TP
REPLICA_IMAGE=$REPLICA_IMAGE
EOF
mv "$ENV_FILE.tmp" "$ENV_FILE"

log "images ready in $((SECONDS - T_START)) s (written to ${ENV_FILE#"$ROOT"/}):"
sed -n '/^[A-Z]/p' "$ENV_FILE" | sed 's/^/    /' >&2
