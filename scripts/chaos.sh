#!/usr/bin/env bash
# Fault injection: runs `mproc verify-primes` and `mproc counters` over and over and, at a random
# moment of each run, SIGKILLs a worker or the parent, stops and continues a worker, sends SIGINT
# to the whole process group, or does nothing — sometimes under resource limits, sometimes several
# instances at once. Each run is classified, and after each one the script looks for leftovers.
#
#   scripts/chaos.sh [--seconds S] [--runs N] [--parallel P] [--seed X] [--bin PATH]
#
# Outcomes per run:
#   ok        exit 0 with the right answer
#   error     a clean one-line error (exit 1, one `mproc: ...` line on stderr)
#   interrupt exit 130 (SIGINT handled) or killed by SIGINT
#   killed    the parent was SIGKILLed (the fault itself)
#   unclean   any other exit (a panic, several lines of stderr, another signal): listed, not fatal
#   WRONG     a prime reported composite, a guarded counter that lost updates, a missing row
#   HANG      not finished within the deadline (the group is killed then)
# Leftovers after each run (checked for up to 2 s): a /dev/shm/mproc-* of a dead creator, a manager
# directory in the run's private TMPDIR, a process still in the run's process group. Other files
# left in that TMPDIR are counted in the `files` column (not fatal).
# Exits non-zero on any WRONG, HANG or leftover.
set -uo pipefail
cd "$(dirname "$0")/.."

SECONDS_LIMIT=120
RUNS_LIMIT=600
PARALLEL=3
SEED=${RANDOM}
BIN=target/release/mproc
DEADLINE=20
PRIME=1000000000000037

while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) SECONDS_LIMIT=$2; shift 2 ;;
        --runs) RUNS_LIMIT=$2; shift 2 ;;
        --parallel) PARALLEL=$2; shift 2 ;;
        --seed) SEED=$2; shift 2 ;;
        --bin) BIN=$2; shift 2 ;;
        *) echo "chaos: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -x "$BIN" ] || { echo "chaos: $BIN not built (cargo build --release -p mproc-cli)" >&2; exit 2; }
RANDOM=$SEED

WORK=$(mktemp -d "${TMPDIR:-/tmp}/chaos.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
RESULTS=$WORK/results

# Segments of dead creators that were there before we started are not ours.
dead_segments() {
    local f pid
    for f in /dev/shm/mproc-*; do
        [ -e "$f" ] || continue
        pid=$(basename "$f" | cut -d- -f2)
        kill -0 "$pid" 2>/dev/null || basename "$f"
    done
}
dead_segments | sort >"$WORK/baseline"

FAULTS=(none kill-worker kill-parent stop-worker sigint-group)

# one_run ID COMMAND FAULT LIMIT: runs one instance and appends its classification to $RESULTS.
one_run() {
    local id=$1 cmd=$2 fault=$3 limit=$4
    local dir=$WORK/run$id
    mkdir -p "$dir/tmp"
    local -a argv
    case $cmd in
        verify) argv=("$BIN" verify-primes --numbers "$PRIME" --repeat 2 --processes 2 --json) ;;
        counters) argv=("$BIN" counters --processes 3 --count 2000 --barrier --variant value-lock,file-lock --json) ;;
    esac
    local ulim=":"
    case $limit in
        vmem) ulim="ulimit -v 400000" ;;
        nofile) ulim="ulimit -n 64" ;;
    esac
    # Its own process group (job control on: the pid is the group's id; without it a background
    # job would also start with SIGINT ignored, and a shell cannot undo that for its children, so
    # the SIGINT fault would never reach mproc), its own TMPDIR (manager directories and lock
    # files land there, so leftovers are attributable).
    set -m
    TMPDIR=$dir/tmp bash -c "$ulim; exec \"\$@\"" _ "${argv[@]}" >"$dir/out" 2>"$dir/err" &
    local pid=$!
    set +m
    local delay=$((RANDOM % 40))
    sleep "0.0$(printf %02d "$delay")"
    local victim=""
    case $fault in
        kill-worker | stop-worker)
            local kids="" try
            for try in 1 2 3 4 5 6 7 8; do
                kids=$(pgrep -P "$pid" 2>/dev/null | tr '\n' ' ')
                [ -n "$kids" ] && break
                sleep 0.005
            done
            if [ -n "$kids" ]; then
                local -a k=($kids)
                victim=${k[$((RANDOM % ${#k[@]}))]}
            fi
            ;;
    esac
    case $fault in
        kill-worker) [ -n "$victim" ] && kill -KILL "$victim" 2>/dev/null ;;
        kill-parent) kill -KILL "$pid" 2>/dev/null ;;
        stop-worker)
            if [ -n "$victim" ]; then
                kill -STOP "$victim" 2>/dev/null
                sleep 0.2
                kill -CONT "$victim" 2>/dev/null
            fi
            ;;
        sigint-group) kill -INT -- "-$pid" 2>/dev/null ;;
    esac
    local applied=$fault
    if [ "$fault" = kill-worker ] || [ "$fault" = stop-worker ]; then
        [ -n "$victim" ] || applied="$fault(missed)"
    fi
    # Wait with a deadline: a timer kills the group if the run overruns it.
    local outcome="" rc
    # (`&&`: when the run ends in time, the sleep is killed and the timer does nothing.)
    ( sleep "$DEADLINE" </dev/null >/dev/null 2>&1 && touch "$dir/hung" && kill -KILL -- "-$pid" 2>/dev/null ) &
    local timer=$!
    wait "$pid"
    rc=$?
    pkill -P "$timer" 2>/dev/null
    kill "$timer" 2>/dev/null
    wait "$timer" 2>/dev/null
    if [ -e "$dir/hung" ]; then
        outcome=HANG
        echo "== HANG: $cmd $fault $limit (pid $pid)" >>"$WORK/details"
    else
        outcome=$(classify "$cmd" "$rc" "$dir")
    fi
    # Leftovers: the group, segments of dead creators, anything in the private TMPDIR.
    local left="" i files=""
    for i in $(seq 1 40); do
        left=""
        pgrep -g "$pid" >/dev/null 2>&1 && left="$left processes"
        compgen -G "$dir/tmp/mproc-manager-*" >/dev/null && left="$left manager-dir"
        [ -n "$(dead_segments | sort | comm -23 - "$WORK/baseline")" ] && left="$left shm"
        [ -z "$left" ] && break
        sleep 0.05
    done
    # Other files in the run's TMPDIR (the counters' lock and data files): reported, not fatal.
    [ -n "$(ls -A "$dir/tmp" 2>/dev/null)" ] && files=FILES
    if [ -n "$left" ]; then
        {
            echo "== LEFTOVER ($left): $cmd $fault $limit (pid $pid, rc $rc)"
            ps -o pid,ppid,pgid,stat,cmd -g "$pid" 2>/dev/null
            ls -la "$dir/tmp" 2>/dev/null
            dead_segments | sort | comm -23 - "$WORK/baseline"
        } >>"$WORK/details"
        pkill -KILL -g "$pid" 2>/dev/null
        rm -rf "$dir/tmp"/*
        dead_segments | sort >"$WORK/baseline"
    fi
    if [ "$outcome" = WRONG ] || [ "$outcome" = unclean ]; then
        { echo "== $outcome: $cmd $applied $limit rc=$rc"; cat "$dir/out" "$dir/err"; } >>"$WORK/details"
    fi
    echo "$cmd $applied $limit $outcome ${left:+LEFTOVER} $files" >>"$RESULTS"
    rm -rf "$dir"
}

# classify CMD RC DIR: prints the outcome.
classify() {
    local cmd=$1 rc=$2 dir=$3
    local wrong=""
    case $cmd in
        verify)
            grep -q '"is_prime":false' "$dir/out" && wrong=1
            [ "$rc" = 0 ] && [ "$(grep -c '"is_prime":true' "$dir/out")" != 2 ] && wrong=1
            ;;
        counters)
            # A row that reports lost updates for a guarded variant is a wrong answer whatever the
            # exit code: the tool must fail instead of printing it.
            grep -q '"lost":[1-9]' "$dir/out" && wrong=1
            grep -q '"lost":-' "$dir/out" && wrong=1
            [ "$rc" = 0 ] && [ "$(grep -c '"lost":0' "$dir/out")" != 2 ] && wrong=1
            ;;
    esac
    if [ -n "$wrong" ]; then echo WRONG; return; fi
    local lines
    lines=$(wc -l <"$dir/err")
    case $rc in
        0) echo ok ;;
        1) if [ "$lines" = 1 ] && grep -q '^mproc: ' "$dir/err"; then echo error; else echo unclean; fi ;;
        130) echo interrupt ;;
        137) echo killed ;;
        *) echo unclean ;;
    esac
}

start=$(date +%s)
runs=0
while [ $runs -lt "$RUNS_LIMIT" ] && [ $(($(date +%s) - start)) -lt "$SECONDS_LIMIT" ]; do
    # Sometimes several instances at once.
    batch=1
    [ $((RANDOM % 3)) = 0 ] && batch=$((1 + RANDOM % PARALLEL))
    for _ in $(seq 1 $batch); do
        cmds=(verify counters)
        cmd=${cmds[$((RANDOM % 2))]}
        fault=${FAULTS[$((RANDOM % ${#FAULTS[@]}))]}
        limit=none
        case $((RANDOM % 6)) in
            0) limit=vmem ;;
            1) limit=nofile ;;
        esac
        # Its stderr is only the shell's job notices ("Killed"): the findings go to files.
        one_run "$runs" "$cmd" "$fault" "$limit" 2>>"$WORK/noise" &
        runs=$((runs + 1))
    done
    wait
done

echo "chaos: $runs runs in $(($(date +%s) - start)) s (seed $SEED)"
printf '%-9s %-20s %5s %5s %5s %5s %5s %5s %5s %5s %6s %5s\n' command fault runs ok error intr killed unclean WRONG HANG leftov files
awk '{
    key = $1 " " $2; n[key]++; c[key, $4]++
    if ($5 == "LEFTOVER") l[key]++
    if ($5 == "FILES" || $6 == "FILES") f[key]++
} END {
    for (k in n) {
        split(k, p, " ")
        printf "%-9s %-20s %5d %5d %5d %5d %5d %5d %5d %5d %6d %5d\n", p[1], p[2], n[k], c[k, "ok"], c[k, "error"],
            c[k, "interrupt"], c[k, "killed"], c[k, "unclean"], c[k, "WRONG"], c[k, "HANG"], l[k], f[k]
    }
}' "$RESULTS" | sort
awk '{ t[$3]++ } END { printf "limits:"; for (k in t) printf " %s=%d", k, t[k]; print "" }' "$RESULTS"
if [ -s "$WORK/details" ]; then
    echo "--- details (first 80 lines)"
    head -80 "$WORK/details"
fi
bad=$(awk '$4 == "WRONG" || $4 == "HANG" || $5 == "LEFTOVER"' "$RESULTS" | wc -l)
if [ "$bad" -gt 0 ]; then
    echo "chaos: FAILED: $bad runs wrong, hung or left something behind" >&2
    exit 1
fi
echo "chaos: 0 wrong, 0 hangs, 0 leftovers"
