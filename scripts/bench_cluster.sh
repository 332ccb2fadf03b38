#!/usr/bin/env bash
# `make bench-cluster`: the cluster's figures in one run, on loopback — a private Redis, worker
# hosts of one process each (`mproc worker`), `mproc bench cluster` with 1 and then 2 hosts
# (trivial tasks one per entry and batched, an apply round trip, the local Pool beside them),
# verify-primes on 2 hosts × 1 process beside the local Pool with 2 processes, and the Python
# twin on Dask `distributed` (a LocalCluster of 2 workers; installed into target/dask-venv from
# PyPI on first use). One JSON object per line on stdout.
#
#   bash scripts/bench_cluster.sh [--repeat R] [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
REPEAT=3 TASKS=2000 BATCHED=100000
while [ $# -gt 0 ]; do
    case "$1" in
        --repeat) REPEAT=$2; shift 2 ;;
        --quick) TASKS=500 BATCHED=20000; shift ;;
        *) echo "bench_cluster: unknown argument $1" >&2; exit 2 ;;
    esac
done
cargo build --release --quiet -p mproc-cli
MPROC=target/release/mproc
source scripts/redis.sh
HOSTS=()
stop_hosts() {
    for p in "${HOSTS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    for p in "${HOSTS[@]}"; do wait "$p" 2>/dev/null || true; done
    HOSTS=()
}
trap 'stop_hosts; redis_stop' EXIT
redis_start >&2
URL=$MPROC_REDIS_URL
start_host() {
    "$MPROC" worker --connect "$URL" --processes 1 2>/dev/null &
    HOSTS+=($!)
}
wait_hosts() {
    for _ in $(seq 1 200); do
        [ "$(redis-cli -p "$REDIS_PORT" --scan --pattern 'mproc:host:*' | wc -l)" -ge "$1" ] && return
        sleep 0.05
    done
    echo "bench_cluster: workers did not come up" >&2; exit 1
}
BENCH=(bench cluster --connect "$URL" --tasks "$TASKS" --batched-tasks "$BATCHED" --repeat "$REPEAT" --json)

start_host; wait_hosts 1
"$MPROC" "${BENCH[@]}" --label 1-host
start_host; wait_hosts 2
"$MPROC" "${BENCH[@]}" --label 2-hosts
PRIME=100109100129100151
"$MPROC" verify-primes --backend "$URL" --numbers "$PRIME" --repeat "$REPEAT" --json
stop_hosts
"$MPROC" verify-primes --flag rawvalue --processes 2 --numbers "$PRIME" --repeat "$REPEAT" --json | grep rawvalue

VENV=target/dask-venv
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import distributed' 2>/dev/null; then
    echo "bench_cluster: installing dask distributed into $VENV (pip, from PyPI)" >&2
    python3 -m venv "$VENV" && "$VENV/bin/pip" install -q distributed >&2
fi
"$VENV/bin/python" benches/python/cluster_dask.py --tasks "$TASKS" --batched-tasks "$BATCHED" --repeat "$REPEAT" 2>/dev/null
