#!/usr/bin/env bash
# Stop the Docker engine only if scripts/ensure-docker.sh started it, and, with
# REPLICA_DOCKER_OWNER set (.ci/run sets one per run), only if it started it for that
# owner: an engine someone else's session started stays up.
#
# Exit codes: 0 stopped (or nothing to stop), 7 dockerd did not exit in time.
set -euo pipefail

STATE_DIR=${REPLICA_DOCKER_STATE_DIR:-/var/run/staging-replica-docker}
WAIT_S=${REPLICA_DOCKER_STOP_WAIT_S:-30}
marker=$STATE_DIR/started-by-us

log() { printf '[stop-docker] %s\n' "$*" >&2; }

if [[ ! -f $marker ]]; then
    log "no engine was started by ensure-docker.sh: nothing to stop"
    exit 0
fi
owner=$(cat "$STATE_DIR/started-for" 2>/dev/null || true)
if [[ -n ${REPLICA_DOCKER_OWNER:-} && $owner != "$REPLICA_DOCKER_OWNER" ]]; then
    log "the engine was started for ${owner:-another session}, not ${REPLICA_DOCKER_OWNER}: leaving it alone"
    exit 0
fi
pid=$(cat "$marker")
if ! [[ $pid =~ ^[0-9]+$ ]] || ! kill -0 "$pid" 2>/dev/null; then
    log "dockerd (pid ${pid:-?}) is no longer running"
    rm -f "$marker" "$STATE_DIR/started-for" "$STATE_DIR/dockerd.pid"
    exit 0
fi
# Make sure the pid still is dockerd before signalling it.
if [[ $(cat "/proc/$pid/comm" 2>/dev/null) != dockerd ]]; then
    log "pid $pid is not dockerd any more: leaving it alone"
    rm -f "$marker" "$STATE_DIR/started-for"
    exit 0
fi
log "stopping dockerd (pid $pid)"
kill -TERM "$pid"
t0=$SECONDS
while kill -0 "$pid" 2>/dev/null; do
    if (( SECONDS - t0 >= WAIT_S )); then
        log "dockerd did not exit within ${WAIT_S} s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 1
        if kill -0 "$pid" 2>/dev/null; then
            log "ERROR: dockerd (pid $pid) is still running"
            exit 7
        fi
        break
    fi
    sleep 0.5
done
rm -f "$marker" "$STATE_DIR/started-for" "$STATE_DIR/dockerd.pid"
log "dockerd stopped after $((SECONDS - t0)) s"
