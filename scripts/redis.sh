#!/usr/bin/env bash
# Source this file: `redis_start` installs redis-server when missing (apt-get), starts a private
# one on 127.0.0.1 at a free port with no persistence, and exports MPROC_REDIS_URL; `redis_stop`
# shuts it down. Used by scripts/test.sh and scripts/compare.sh.

redis_start() {
    if ! command -v redis-server >/dev/null 2>&1; then
        echo "redis: installing redis-server (apt-get)"
        if [ "$(id -u)" = 0 ]; then
            (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null
        else
            (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null
        fi || { echo "redis: could not install redis-server" >&2; return 1; }
    fi
    REDIS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    REDIS_DIR=$(mktemp -d)
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --daemonize yes \
        --pidfile "$REDIS_DIR/redis.pid" --dir "$REDIS_DIR" --logfile "$REDIS_DIR/redis.log" >/dev/null
    for _ in $(seq 1 100); do
        if redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; then
            export MPROC_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"
            echo "redis: private server on 127.0.0.1:$REDIS_PORT"
            return 0
        fi
        sleep 0.05
    done
    echo "redis: server did not start; log:" >&2
    cat "$REDIS_DIR/redis.log" >&2
    return 1
}

redis_stop() {
    if [ -n "${REDIS_PORT:-}" ]; then
        redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
        rm -rf "${REDIS_DIR:-/nonexistent}"
        unset REDIS_PORT MPROC_REDIS_URL
    fi
}
