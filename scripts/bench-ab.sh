#!/usr/bin/env bash
# Alternating A/B runs of mpbench: the checkout in $1 (for example a `git worktree add` of an
# earlier commit) against this one, RUNS times each (default 3), each run printing the JSON
# figures named in FIGURES. This machine's speed drifts within minutes, so only alternating
# pairs are evidence of a change.
#
#   scripts/bench-ab.sh /work/wt/base                     # the loader leg
#   BENCH_LEGS=query FIGURES=query_current_p50_ms scripts/bench-ab.sh ../base
set -euo pipefail
base=$(cd "${1:?usage: scripts/bench-ab.sh BASE_CHECKOUT}" && pwd)
here=$(cd "$(dirname "$0")/.." && pwd)
export BENCH_LEGS=${BENCH_LEGS:-loader} BENCH_SCALE=${BENCH_SCALE:-1.0}
figures=${FIGURES:-loader_rows_per_s loader_vs_direct_pair direct_rows_per_s}
for i in $(seq "${RUNS:-3}"); do
	for side in base here; do
		dir=$base; [ "$side" = here ] && dir=$here
		json=$(cd "$dir" && go run ./bench/cmd/mpbench 2>/dev/null | tail -n 1)
		line="$side $i:"
		for f in $figures; do
			line+=" $f=$(printf '%s' "$json" | grep -o "\"$f\":[0-9.]*" | cut -d: -f2)"
		done
		echo "$line"
	done
done
