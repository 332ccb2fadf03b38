#!/usr/bin/env bash
# `make test`: everything CI runs. Installs what the tests need (redis-server), runs lint, every test (unit,
# integration, doc, and the criterion benches once each in test mode), then checks that nothing
# was left behind: no mproc segment in /dev/shm whose creator is gone, no stray test process.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

if cargo clippy --version >/dev/null 2>&1 && cargo fmt --version >/dev/null 2>&1; then
    bash scripts/lint.sh
elif [ "${CI:-}" = "true" ]; then
    echo "test: clippy/rustfmt missing (rustup component add clippy rustfmt)" >&2; exit 1
else
    echo "test: clippy/rustfmt not installed; skipping lint (CI runs it)"
fi

# The Redis tests need a server: a private one on 127.0.0.1 at a free port, stopped on exit.
source scripts/redis.sh
trap redis_stop EXIT
if ! redis_start; then
    if [ "${CI:-}" = "true" ]; then
        echo "test: redis-server is needed under CI=true and could not be started" >&2
        exit 1
    fi
    echo "test: no redis-server; the Redis tests will be skipped"
fi

# The examples as programs first: a test starts `ipc_unrelated` as a server and a client
# (`--all-targets` builds examples only as test harnesses).
cargo build --workspace --all-features --examples
cargo test --workspace --all-features --all-targets
cargo test --workspace --all-features --doc

# The cluster across network namespaces, one short run (skips where namespaces cannot be made).
bash scripts/cluster_netns.sh --runs 1

# Leftovers: segments of processes that no longer exist, and test binaries still running.
leaked=""
for f in /dev/shm/mproc-*; do
    [ -e "$f" ] || continue
    pid=$(basename "$f" | cut -d- -f2)
    kill -0 "$pid" 2>/dev/null || leaked="$leaked $(basename "$f")"
done
if [ -n "$leaked" ]; then
    echo "test: FAILED: /dev/shm segments left behind:$leaked" >&2; exit 1
fi
for d in "${TMPDIR:-/tmp}"/mproc-manager-*; do
    [ -e "$d" ] || continue
    pid=$(basename "$d" | cut -d- -f3)
    kill -0 "$pid" 2>/dev/null || leaked="$leaked $d"
done
if [ -n "$leaked" ]; then
    echo "test: FAILED: manager directories left behind:$leaked" >&2; exit 1
fi
strays=$(pgrep -f "$(pwd)/target/debug/" || true)
if [ -n "$strays" ]; then
    echo "test: FAILED: test processes left running: $strays" >&2; exit 1
fi
echo "test: no /dev/shm segment, manager directory or test process left behind"
