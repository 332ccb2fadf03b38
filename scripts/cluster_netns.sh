#!/usr/bin/env bash
# The cluster across real network stacks: four network namespaces joined by veth pairs — Redis in
# one, two worker hosts (`mproc worker`) in two others, the caller (`mproc job`) in the fourth.
# A whole worker host (every process in its namespace) is SIGKILLed at a random moment mid-job;
# the job must complete with every result exactly once, within a time limit. Prints one JSON
# line per run with the redelivery time (the kill until the last redelivered result arrived).
#
# Traffic goes only to loopback and to the 10.201.x.y addresses this script gives its namespaces.
# Needs root (ip netns); elsewhere it says SKIPPED and exits 0 — except under CI=true as root,
# where failing to make namespaces is a failure. Namespaces are removed on exit.
#
#   bash scripts/cluster_netns.sh [--runs N] [--tasks N] [--ms M]
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=1 TASKS=120 MS=20 LIMIT=90
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift 2 ;;
        --tasks) TASKS=$2; shift 2 ;;
        --ms) MS=$2; shift 2 ;;
        *) echo "cluster_netns: unknown argument $1" >&2; exit 2 ;;
    esac
done

skip() {
    if [ "${CI:-}" = "true" ] && [ "$(id -u)" = 0 ]; then
        echo "cluster_netns: FAILED: $1 (CI=true as root: namespaces must work)" >&2; exit 1
    fi
    echo "cluster_netns: SKIPPED: $1"; exit 0
}

[ "$(id -u)" = 0 ] || skip "needs root to make network namespaces"
if ! command -v ip >/dev/null 2>&1; then
    echo "cluster_netns: installing iproute2 (apt-get)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2) >/dev/null \
        || skip "ip (iproute2) is missing and could not be installed"
fi
if ! command -v redis-server >/dev/null 2>&1; then
    source scripts/redis.sh
    redis_start >/dev/null && redis_stop || skip "redis-server is missing and could not be installed"
fi
cargo build --release --quiet -p mproc-cli
MPROC=$(pwd)/target/release/mproc

TAG=m$$
NS_R=$TAG-redis NS_A=$TAG-wa NS_B=$TAG-wb NS_C=$TAG-caller
cleanup() {
    for ns in $NS_A $NS_B $NS_C $NS_R; do
        if ip netns list 2>/dev/null | grep -qw "$ns"; then
            for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
            ip netns del "$ns" 2>/dev/null || true
        fi
    done
}
trap cleanup EXIT
ip netns add "$NS_R" 2>/dev/null || skip "cannot make network namespaces here (ip netns add failed)"
i=0
for ns in $NS_A $NS_B $NS_C; do
    i=$((i + 1))
    ip netns add "$ns"
    ip link add "$TAG-r$i" type veth peer name "$TAG-p$i"
    ip link set "$TAG-r$i" netns "$NS_R"
    ip link set "$TAG-p$i" netns "$ns"
    ip -n "$NS_R" addr add "10.201.$i.1/24" dev "$TAG-r$i"
    ip -n "$ns" addr add "10.201.$i.2/24" dev "$TAG-p$i"
    ip -n "$NS_R" link set "$TAG-r$i" up
    ip -n "$ns" link set "$TAG-p$i" up
    ip -n "$ns" link set lo up
done
ip -n "$NS_R" link set lo up
(ip netns exec "$NS_R" redis-server --bind 10.201.1.1 10.201.2.1 10.201.3.1 --port 6379 --save "" \
    --appendonly no --protected-mode no --logfile /dev/null >/dev/null &)
for _ in $(seq 1 100); do
    ip netns exec "$NS_C" redis-cli -h 10.201.3.1 -p 6379 ping 2>/dev/null | grep -q PONG && break
    sleep 0.05
done

start_host() { # namespace, subnet
    # In a subshell: not a job of this shell, so its SIGKILL is not reported as one.
    (ip netns exec "$1" "$MPROC" worker --connect "redis://10.201.$2.1:6379/" --processes 1 \
        --reclaim-after-ms 500 2>>"${TMPDIR:-/tmp}/$TAG-$1.log" &)
}
stop_host() { # namespace: every process in it, SIGKILL (the whole host dies at once)
    for p in $(ip netns pids "$1"); do kill -9 "$p" 2>/dev/null || true; done
}

fails=0
for run in $(seq 1 "$RUNS"); do
    start_host "$NS_A" 1
    start_host "$NS_B" 2
    for _ in $(seq 1 100); do
        n=$(ip netns exec "$NS_C" redis-cli -h 10.201.3.1 --scan --pattern 'mproc:host:*' 2>/dev/null | wc -l)
        [ "$n" -ge 2 ] && break
        sleep 0.05
    done
    out=$(mktemp)
    start=$(date +%s.%N)
    timeout "$LIMIT" ip netns exec "$NS_C" "$MPROC" job --connect redis://10.201.3.1:6379/ --tasks "$TASKS" \
        --ms "$MS" --timeout "$LIMIT" >"$out" 2>&1 &
    job=$!
    # A random moment inside the job's expected span (tasks × ms / 2 hosts).
    span_ms=$((TASKS * MS / 2))
    sleep "$(awk -v s="$span_ms" -v r="$RANDOM" 'BEGIN { printf "%.3f", (0.1 + 0.7 * r / 32767) * s / 1000 }')"
    victim=$NS_A
    [ $((RANDOM % 2)) = 0 ] && victim=$NS_B
    killed=$(date +%s.%N)
    stop_host "$victim"
    if wait "$job"; then
        line=$(tail -1 "$out")
        python3 - "$line" "$killed" "$start" "$run" "$victim" <<'PY' | tee -a "${REPORT:-/dev/null}"
import json, sys
r = json.loads(sys.argv[1]); killed = float(sys.argv[2]); start = float(sys.argv[3])
last = r.get("last_redelivered_epoch")
r.update(run=int(sys.argv[4]), killed_host=sys.argv[5].split("-")[-1], kill_at_s=round(killed - start, 3),
         redelivery_s=None if last is None else round(last - killed, 3))
print(json.dumps(r))
PY
    else
        echo "cluster_netns: run $run FAILED (killed host $victim):" >&2
        cat "$out" >&2
        fails=$((fails + 1))
    fi
    rm -f "$out"
    stop_host "$NS_A"
    stop_host "$NS_B"
    left=$(ip netns exec "$NS_C" redis-cli -h 10.201.3.1 --scan --pattern 'mproc:job:*' | wc -l)
    if [ "$left" != 0 ]; then
        echo "cluster_netns: run $run left $left job keys in Redis" >&2
        fails=$((fails + 1))
    fi
done
rm -f "${TMPDIR:-/tmp}/$TAG-"*.log
if [ "$fails" != 0 ]; then
    echo "cluster_netns: FAILED: $fails of $RUNS runs" >&2; exit 1
fi
echo "cluster_netns: $RUNS of $RUNS runs passed: every result exactly once after a whole host was killed"
if [ -n "${REPORT:-}" ]; then
    python3 - "$REPORT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
red = sorted(r["redelivery_s"] for r in rows if r.get("redelivery_s") is not None)
if red:
    print(f"cluster_netns: redelivery after the kill (reclaim limit 0.5 s): min {red[0]:.3f} s, "
          f"median {red[len(red) // 2]:.3f} s, max {red[-1]:.3f} s over {len(red)} runs with a redelivered chunk; "
          f"job time median {sorted(r['seconds'] for r in rows)[len(rows) // 2]:.3f} s")
PY
fi
