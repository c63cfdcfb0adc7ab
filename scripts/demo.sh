#!/usr/bin/env bash
# make demo: run the whole pipeline locally on the sample job and show what was loaded.
# Starts `marketpipe dev` (embedded NATS, the vendor simulator, the five stages, and a private
# clickhouse-server unless one answers on CLICKHOUSE_ADDR), submits examples/eod-prices.yaml
# with live progress, prints the job's status and a summary of what it loaded, and stops.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-./bin}
STATE=${DEMO_STATE_DIR:-.marketpipe/demo}
mkdir -p "$STATE"
LOG="$STATE/dev.log"

"$BIN/marketpipe" dev --state-dir "$STATE" >"$LOG" 2>&1 &
DEV=$!
stop() {
  kill -TERM "$DEV" 2>/dev/null || true
  wait "$DEV" 2>/dev/null || true
}
trap stop EXIT

echo "==> starting marketpipe dev (log: $LOG)"
for _ in $(seq 1 240); do
  if grep -q "dev: ready" "$LOG"; then break; fi
  if ! kill -0 "$DEV" 2>/dev/null; then
    echo "marketpipe dev exited:"; cat "$LOG"; exit 1
  fi
  sleep 0.5
done
grep "^dev:" "$LOG" || true
grep -q "dev: ready" "$LOG" || { echo "marketpipe dev not ready after 120s:"; tail -50 "$LOG"; exit 1; }

echo
# --again: the demo's state persists, and a second demo within 24 hours would otherwise be
# refused as a duplicate of the first (what submit does to protect a vendor bill).
echo "==> marketpipe submit examples/eod-prices.yaml --wait --again"
JOB=$("$BIN/marketpipe" submit examples/eod-prices.yaml --wait --again --timeout 5m)
echo
echo "==> marketpipe status $JOB"
# The jobs table is written by the loader as events arrive: give it a moment to see "loaded".
for _ in $(seq 1 20); do
  if "$BIN/marketpipe" status "$JOB" 2>/dev/null | grep -q "^state *loaded"; then break; fi
  sleep 0.5
done
"$BIN/marketpipe" status "$JOB"
echo
echo "==> recent jobs"
"$BIN/marketpipe" status
echo
echo "==> marketpipe query --security 'IBM US Equity' --field PX_LAST --from 2026-01-02 --to 2026-01-09"
"$BIN/marketpipe" query --security 'IBM US Equity' --field PX_LAST --from 2026-01-02 --to 2026-01-09
