#!/usr/bin/env bash
# `make run`: the engine on its embedded broker, fed with generated
# touchpoints at a bounded rate. Runs until Ctrl-C.
set -euo pipefail
BIN=${BIN:?} RUN_DIR=${RUN_DIR:-out/run} EVENTS=${EVENTS:-20000} RATE=${RATE:-2000}
rm -rf "$RUN_DIR" && mkdir -p "$RUN_DIR"
"$BIN/idgraph-loadgen" --persons $((EVENTS / 10)) --events "$EVENTS" --format segment \
  --out "$RUN_DIR/events.ndjson" --truth "$RUN_DIR/truth.ndjson"
IDGRAPH__STATE__DIR="$RUN_DIR/state" "$BIN/idgraph" run > >(tee "$RUN_DIR/run.out") 2> "$RUN_DIR/engine.log" &
ENGINE=$!
trap 'kill -TERM $ENGINE 2>/dev/null; wait $ENGINE 2>/dev/null' EXIT INT TERM
for _ in $(seq 1 300); do
  grep -q '^http:' "$RUN_DIR/run.out" 2>/dev/null && break
  kill -0 $ENGINE 2>/dev/null || break
  sleep 0.1
done
grep -q '^http:' "$RUN_DIR/run.out" || { echo "engine did not start; see $RUN_DIR/engine.log"; exit 1; }
BOOT=$(awk '/^kafka bootstrap:/ {print $3}' "$RUN_DIR/run.out")
METRICS=$(sed -n 's|^http: \(http://[^ ]*/metrics\).*|\1|p' "$RUN_DIR/run.out")
echo "feeding $EVENTS generated touchpoints to topic touchpoints at $RATE/s (log: $RUN_DIR/engine.log)"
"$BIN/idgraph-produce" --brokers "$BOOT" --topic touchpoints --rate "$RATE" "$RUN_DIR/events.ndjson"
cat <<MSG

read the outputs with any Kafka client at $BOOT, for instance:
  $BIN/idgraph-consume --brokers $BOOT --topic idgraph.profiles --compact | head -n 3
  $BIN/idgraph-consume --brokers $BOOT --topic idgraph.lifecycle | head -n 3
metrics: curl -s $METRICS | grep ^idgraph_core
the engine keeps running; Ctrl-C stops it (graceful: batch finished, outbox drained)
MSG
wait $ENGINE
