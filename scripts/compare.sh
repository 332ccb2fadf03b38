#!/usr/bin/env bash
# `make compare`: the Python programs under benches/python and mproc's, in the same run.
# Starts a private redis-server (and installs Python's redis client) for the Redis variant, and
# installs numpy for the pi twin when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/redis.sh
trap redis_stop EXIT
redis_start || echo "compare: no redis-server; the redis variant is left out"
if [ -n "${MPROC_REDIS_URL:-}" ] && ! python3 -c "import redis" 2>/dev/null; then
    python3 -m pip install --quiet redis || echo "compare: could not install Python's redis client"
fi
if ! python3 -c "import numpy" 2>/dev/null; then
    python3 -m pip install --quiet numpy || echo "compare: could not install numpy; the numpy rows of pi are left out"
fi
python3 scripts/compare.py --mproc target/release/mproc "$@"
