#!/usr/bin/env bash
# make bench-kafka: runs loadtest/bench-kafka.sh RUNS times (default 3) and
# prints the median of each figure. The end-to-end rate through tansu moves
# by a factor of up to four between runs of the same binary (it follows how
# the input is cut into batches; docs/BENCHMARKS.md), so one run says little.
set -euo pipefail
RUNS=${RUNS:-3}
here=$(dirname "$0")
lines=$(mktemp)
trap 'rm -f "$lines"' EXIT
for i in $(seq 1 "$RUNS"); do
  echo "run $i of $RUNS"
  # Not `tee /dev/stderr`: where stderr is a file, that opens it again at
  # offset 0, and each run's lines overwrote the previous run's.
  "$here/bench-kafka.sh" | tee >(cat >&2) | tail -n 1 >>"$lines"
done
python3 - "$lines" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
med = lambda f: round(statistics.median(f(r) for r in runs))
print(json.dumps({
    "runs": len(runs),
    "end_to_end_per_second_median": med(lambda r: r["end_to_end_per_second"]),
    "end_to_end_per_second_all": [r["end_to_end_per_second"] for r in runs],
    "batches_all": [r.get("batches") for r in runs],
    "core_ms_per_batch_median": {k: round(statistics.median(r["core_ms_per_batch"][k] for r in runs), 2)
                                 for k in sorted(runs[0].get("core_ms_per_batch", {}))},
    "raw_per_second_median": med(lambda r: r["raw"]["per_second"]),
    "mock_end_to_end_per_second_median": med(lambda r: r["mock"]["end_to_end_per_second"]),
    "half_load_event_to_output_p99_le_s": [r["half_load"]["event_to_output_p99_le_s"] for r in runs],
    "half_load_event_to_profile_p50_le_s": [r["half_load"].get("event_to_profile_p50_le_s") for r in runs],
    "half_load_event_to_profile_p99_le_s": [r["half_load"].get("event_to_profile_p99_le_s") for r in runs],
}))
PY
