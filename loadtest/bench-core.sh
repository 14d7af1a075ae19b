#!/usr/bin/env bash
# make bench-core: replay 10M Segment events (~3M persons) through RocksDB with
# P=1 and P=8, next to an in-memory union-find over the same events, measured
# in the same run. Prints a markdown table and writes it to $BENCH_DIR.
#
# Environment: BIN (release binaries), BENCH_DIR (data and states),
# EVENTS (default 10000000), PERSONS (default 3000000), PARTS (default "1 8").
set -euo pipefail
BIN=${BIN:?set BIN to the release binary dir}
BENCH_DIR=${BENCH_DIR:-$HOME/.cache/idgraph/bench}
EVENTS=${EVENTS:-10000000}
PERSONS=${PERSONS:-3000000}
PARTS=${PARTS:-1 8}
mkdir -p "$BENCH_DIR"
# The generator version is part of the name: changed data is regenerated.
data="$BENCH_DIR/events-v2-$EVENTS-$PERSONS.ndjson"
if [ ! -s "$data" ]; then
  echo "generating $EVENTS events for $PERSONS persons -> $data"
  "$BIN/idgraph-loadgen" --persons "$PERSONS" --events "$EVENTS" --format segment --seed 42 --out "$data.tmp"
  mv "$data.tmp" "$data"
fi
bytes=$(stat -c %s "$data")
echo "input: $data ($((bytes / 1024 / 1024)) MiB, $EVENTS events)"

echo "baseline: in-memory union-find (same parser, no rules, no storage)"
uf=$("$BIN/idgraph-ufbase" --format segment "$data")
echo "  $uf"
uf_eps=$(echo "$uf" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["events_per_second"]))')
idents=$(echo "$uf" | python3 -c 'import json,sys; print(json.load(sys.stdin)["identifiers"])')

table="| run | events/s | batch p50 ms | batch p99 ms | peak RSS MiB | state bytes / identifier |
|---|---|---|---|---|---|
| union-find baseline (memory) | $uf_eps | - | - | - | - |"
for p in $PARTS; do
  state="$BENCH_DIR/state-p$p"; out="$BENCH_DIR/out-p$p"
  rm -rf "$state" "$out"
  echo "replay P=$p"
  IDGRAPH__STATE__PARTITIONS=$p "$BIN/idgraph" replay --format segment --report 0 --state "$state" --out "$out" "$data" 2>&1 | tail -n 1
  sz=$(du -sb "$state" | cut -f1)
  row=$(python3 - "$out/summary.json" "$sz" "$idents" "$p" <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); sz = int(sys.argv[2]); ids = int(sys.argv[3]); p = sys.argv[4]
print(f"| idgraph replay, RocksDB, P={p} | {s['events_per_second']:.0f} | {s['batch_p50_ms']:.1f} | {s['batch_p99_ms']:.1f} | {s['peak_rss_mb']:.0f} | {sz / ids:.0f} |")
PY
)
  table="$table
$row"
  cp "$out/summary.json" "$BENCH_DIR/summary-p$p.json"
  rm -rf "$out"
done
echo
echo "$table" | tee "$BENCH_DIR/results.md"
echo
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; identifiers: $idents distinct valid"
