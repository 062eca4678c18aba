#!/usr/bin/env bash
# Benchmarks (not tests): medians over repeated runs, and ratios against a
# baseline run in the same script on the same machine.
#
#   ./scripts/bench.sh              # resample: headroom vs pandas
#   ./scripts/bench.sh prometheus   # also: pull 1,000 series x 14 d x 5 min from a local Prometheus
#   ./scripts/bench.sh inference    # also: LSTM on 10,000 series beside Holt-Winters (needs models/default)
#   ./scripts/bench.sh backtest     # also: the default backtest, where its time goes
#   ./scripts/bench.sh step         # also: one decide/act step over 1,000 and 10,000 targets
#   ./scripts/bench.sh daemon       # also: the daemon's memory and idle CPU, 10,000 series x 14 d in its store
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-7}
DATA=data/sample/metrics.parquet

echo "== resample $DATA to 15 min, median of $RUNS runs"
ours=$(cargo bench -q --bench resample -- "$RUNS" 2>/dev/null | grep '^headroom ')
echo "$ours"
theirs=$(python3 - "$DATA" "$RUNS" <<'PY'
import sys, time
import pandas as pd
path, runs = sys.argv[1], int(sys.argv[2])
def once():
    t0 = time.perf_counter()
    df = pd.read_parquet(path)
    t1 = time.perf_counter()
    out = (df.set_index("timestamp").groupby(["entity", "metric"])["value"].resample("15min").mean())
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, t2 - t0, len(out)
res = [once() for _ in range(runs)]
med = lambda i: sorted(r[i] for r in res)[len(res) // 2]
print(f"pandas {pd.__version__} runs={runs} bins={res[0][3]} load_s={med(0):.4f} resample_s={med(1):.4f} total_s={med(2):.4f}")
PY
)
echo "$theirs"
o=$(sed -E 's/.*total_s=([0-9.]+).*/\1/' <<<"$ours")
p=$(sed -E 's/.*total_s=([0-9.]+).*/\1/' <<<"$theirs")
python3 -c "print(f'ratio pandas/headroom total time: {float($p)/float($o):.2f}x')"

if [ "${1:-}" = prometheus ]; then
    echo
    echo "== pull 1,000 series x 14 days x 5 min from a local backfilled Prometheus"
    cargo bench -q --bench prometheus_pull
fi

if [ "${1:-}" = inference ]; then
    echo
    echo "== LSTM batched inference: 10,000 series x 48 h x 5 quantiles, beside Holt-Winters"
    cargo bench -q --bench inference
fi

if [ "${1:-}" = step ]; then
    echo
    echo "== one decide/act step of the runner (dry-run, real audit log), median of $RUNS runs"
    cargo bench -q -p headroom-engine --bench step -- "$RUNS"
fi

if [ "${1:-}" = daemon ]; then
    echo
    echo "== headroom run with 10,000 series x 14 days x 5 min in its store: peak RSS and idle CPU"
    cargo build -q --release
    cargo bench -q -p headroom-daemon --bench resident -- 100
    cargo bench -q -p headroom-daemon --bench resident -- 10000
fi

if [ "${1:-}" = backtest ]; then
    echo
    echo "== the default backtest (data/sample, models/default, every model + auto, decision replay), 3 runs"
    cargo build -q --release
    out=$(mktemp -d)
    for i in 1 2 3; do
        start=$(date +%s.%N)
        target/release/headroom backtest --out "$out" >/dev/null 2>"$out/stderr"
        end=$(date +%s.%N)
        python3 -c "print(f'run $i: {$end - $start:.1f} s')"
        grep -E "done in|forecasts in|replayed" "$out/stderr" | sed 's/^/    /'
    done
    rm -rf "$out"
fi
