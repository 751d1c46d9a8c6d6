#!/usr/bin/env bash
# Make sure a Docker engine answers and Compose v2 is available.
#
#   scripts/ensure-docker.sh            engine + compose
#   scripts/ensure-docker.sh --compose-only
#
# If `docker info` already answers, the engine is left alone. Otherwise (as
# root) Debian's docker.io is installed when dockerd is missing, dockerd is
# started detached (log + pidfile under $REPLICA_DOCKER_STATE_DIR), and the
# script waits, bounded, until `docker info` answers. The state directory
# records that this script started the engine, so scripts/stop-docker.sh stops
# only an engine started here.
#
# Compose v2: Debian bookworm only packages Compose v1, so when
# `docker compose version` fails, the trixie `docker-compose` package is
# fetched with apt (a private sources list and state directory that reuse the
# mirror of the machine's own apt sources), unpacked with `dpkg -x`, and its
# CLI plugin copied to /usr/local/lib/docker/cli-plugins/.
#
# Environment:
#   REPLICA_DOCKER_STATE_DIR   where the pidfile/log/marker live (default /var/run/staging-replica-docker)
#   REPLICA_DOCKER_OWNER       who starts the engine (.ci/run sets one per run): recorded with it, so
#                              stop-docker.sh run with another owner leaves it alone
#   REPLICA_DOCKER_WAIT_S      how long to wait for the engine (default 60)
#   REPLICA_DEBIAN_MIRROR      override the Debian mirror URI used for trixie
#
# Exit codes:
#   0  engine answers and `docker compose version` works
#   2  no engine answers and this user cannot start one (not root)
#   3  installing docker.io with apt failed
#   4  dockerd was started but did not answer in time (see the log)
#   5  Compose v2 could not be installed
#   6  the docker client is missing and could not be installed
set -euo pipefail

STATE_DIR=${REPLICA_DOCKER_STATE_DIR:-/var/run/staging-replica-docker}
WAIT_S=${REPLICA_DOCKER_WAIT_S:-60}
PLUGIN_DIR=/usr/local/lib/docker/cli-plugins
COMPOSE_ONLY=0
[[ ${1:-} == --compose-only ]] && COMPOSE_ONLY=1

log() { printf '[ensure-docker] %s\n' "$*" >&2; }
die() { local code=$1; shift; log "ERROR: $*"; exit "$code"; }

is_root() { [[ $(id -u) -eq 0 ]]; }

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

apt_updated=0
apt_update_once() {
    if [[ $apt_updated -eq 0 ]]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive timeout 300 apt-get update -qq >&2 || return 1
        apt_updated=1
    fi
}

ensure_engine() {
    if ! command -v docker >/dev/null 2>&1; then
        is_root || die 6 "the docker client is not installed (install docker.io or docker-ce-cli)"
    fi
    if command -v docker >/dev/null 2>&1 && engine_answers; then
        log "engine answers: $(docker info --format '{{.ServerVersion}} ({{.Driver}})' 2>/dev/null) — leaving it alone"
        return 0
    fi
    is_root || die 2 "no Docker engine answers and this user is not root: start one (e.g. 'sudo dockerd') and retry"

    if ! command -v dockerd >/dev/null 2>&1; then
        log "installing docker.io (engine, containerd, runc) with apt"
        local t0=$SECONDS
        apt_update_once || die 3 "apt-get update failed"
        DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends \
            docker.io >&2 || die 3 "apt-get install docker.io failed"
        log "docker.io installed in $((SECONDS - t0)) s"
        command -v docker >/dev/null 2>&1 || die 6 "docker client still missing after installing docker.io"
    fi

    mkdir -p "$STATE_DIR"
    local pidfile=$STATE_DIR/dockerd.pid logfile=$STATE_DIR/dockerd.log
    # A stale pidfile (from a run that was killed) would make dockerd refuse to start.
    if [[ -f $pidfile ]] && ! kill -0 "$(cat "$pidfile" 2>/dev/null)" 2>/dev/null; then
        rm -f "$pidfile" "$STATE_DIR/started-by-us" "$STATE_DIR/started-for"
    fi
    if [[ -f $pidfile ]]; then
        log "dockerd (pid $(cat "$pidfile")) is running but does not answer yet; waiting"
    else
        log "starting dockerd (log: $logfile)"
        # setsid + no stdin: detached from this shell, survives its exit.
        setsid dockerd --pidfile "$pidfile" >"$logfile" 2>&1 </dev/null &
        local pid=$!
        echo "$pid" >"$STATE_DIR/started-by-us"
        # Which run started it (CI sets a fresh one), so that run's stop-docker.sh stops it and no other's.
        printf '%s\n' "${REPLICA_DOCKER_OWNER:-}" >"$STATE_DIR/started-for"
    fi
    local t0=$SECONDS
    until engine_answers; do
        if [[ -f $STATE_DIR/started-by-us ]] && ! kill -0 "$(cat "$STATE_DIR/started-by-us")" 2>/dev/null; then
            tail -n 20 "$logfile" >&2 || true
            rm -f "$STATE_DIR/started-by-us"
            die 4 "dockerd exited during start-up (log: $logfile)"
        fi
        if (( SECONDS - t0 >= WAIT_S )); then
            tail -n 20 "$logfile" >&2 || true
            die 4 "dockerd did not answer within ${WAIT_S} s (log: $logfile)"
        fi
        sleep 1
    done
    # dockerd's own pidfile is authoritative (setsid may have forked).
    if [[ -f $STATE_DIR/started-by-us && -s $pidfile ]]; then
        cp "$pidfile" "$STATE_DIR/started-by-us"
    fi
    log "engine answers after $((SECONDS - t0)) s: $(docker info --format '{{.ServerVersion}} ({{.Driver}})')"
}

# The URI of the machine's own Debian mirror (deb822 or one-line format).
debian_mirror() {
    if [[ -n ${REPLICA_DEBIAN_MIRROR:-} ]]; then echo "$REPLICA_DEBIAN_MIRROR"; return; fi
    local uri=""
    shopt -s nullglob
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        # first URIs: of a stanza whose Suites are not the security suites
        uri=$(awk '
            /^[[:space:]]*$/ { if (u != "" && s !~ /security/) { print u; exit } u=""; s="" ; next }
            /^URIs:/   { u=$2 }
            /^Suites:/ { s=$0 }
            END { if (u != "" && s !~ /security/) print u }' "$f" | head -n1)
        [[ -n $uri ]] && break
    done
    if [[ -z $uri ]]; then
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [[ -f $f ]] || continue
            uri=$(awk '$1=="deb" && $0 !~ /security/ { for (i=2;i<=NF;i++) if ($i ~ /^(https?|ftp):/) { print $i; exit } }' "$f")
            [[ -n $uri ]] && break
        done
    fi
    shopt -u nullglob
    echo "${uri:-http://deb.debian.org/debian}"
}

ensure_compose() {
    if docker compose version >/dev/null 2>&1; then
        log "compose: $(docker compose version --short 2>/dev/null || docker compose version)"
        return 0
    fi
    is_root || die 5 "'docker compose' (v2) is missing and this user is not root: install the Compose v2 plugin"
    if ! command -v dpkg >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
        die 5 "'docker compose' (v2) is missing and apt/dpkg are not available to fetch it"
    fi

    local mirror tmp t0=$SECONDS
    mirror=$(debian_mirror)
    tmp=$(mktemp -d /tmp/replica-compose.XXXXXX)
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" RETURN
    log "fetching Compose v2 (trixie docker-compose) from $mirror"
    mkdir -p "$tmp/state/lists/partial" "$tmp/cache/archives/partial" "$tmp/parts" "$tmp/pkg"
    local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    echo "deb [signed-by=$keyring] $mirror trixie main" >"$tmp/sources.list"
    local aptopts=(
        -o "Dir::Etc::SourceList=$tmp/sources.list"
        -o "Dir::Etc::SourceParts=$tmp/parts"
        -o "Dir::State=$tmp/state"
        -o "Dir::Cache=$tmp/cache"
        -o "Dir::State::status=/var/lib/dpkg/status"
        -o "APT::Get::List-Cleanup=0"
        -o "APT::Sandbox::User=root"
    )
    timeout 300 apt-get "${aptopts[@]}" update -qq >&2 || die 5 "apt-get update of the trixie list failed"
    (cd "$tmp/pkg" && timeout 300 apt-get "${aptopts[@]}" download docker-compose >&2) \
        || die 5 "apt-get download docker-compose (trixie) failed"
    local deb
    deb=$(find "$tmp/pkg" -maxdepth 1 -name 'docker-compose_*.deb' | head -n1)
    [[ -n $deb ]] || die 5 "no docker-compose .deb was downloaded"
    dpkg -x "$deb" "$tmp/root"
    local plugin=$tmp/root/usr/libexec/docker/cli-plugins/docker-compose
    [[ -x $plugin ]] || die 5 "$(basename "$deb") has no usr/libexec/docker/cli-plugins/docker-compose"
    mkdir -p "$PLUGIN_DIR"
    install -m 0755 "$plugin" "$PLUGIN_DIR/docker-compose"
    docker compose version >/dev/null 2>&1 || die 5 "'docker compose version' still fails after installing $PLUGIN_DIR/docker-compose"
    log "compose $(docker compose version --short) installed from $(basename "$deb") in $((SECONDS - t0)) s"
}

if [[ $COMPOSE_ONLY -eq 0 ]]; then
    ensure_engine
fi
ensure_compose
