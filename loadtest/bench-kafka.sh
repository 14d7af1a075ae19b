#!/usr/bin/env bash
# make bench-kafka: end-to-end events/s of `idgraph run` through tansu, next
# to the raw consume rate of the same (lz4) input topic measured in the same
# run. Prints one JSON line per figure and keeps them in $BENCH_DIR.
set -euo pipefail
BIN=${BIN:?} TANSU=${TANSU:?} BENCH_DIR=${BENCH_DIR:-$HOME/.cache/idgraph/bench}
EVENTS=${EVENTS:-200000} PERSONS=${PERSONS:-50000} PARTS=${PARTS:-4}
work=$(mktemp -d); mkdir -p "$BENCH_DIR"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$TANSU" broker --listener-url tcp://127.0.0.1:$port --advertised-listener-url tcp://127.0.0.1:$port --storage-engine memory://tansu/ >"$work/tansu.log" 2>&1 &
broker=$!
engine=
cleanup() {
  if [ -n "$engine" ]; then kill "$engine" 2>/dev/null; wait "$engine" 2>/dev/null; fi
  kill "$broker" 2>/dev/null; wait "$broker" 2>/dev/null; rm -rf "$work"
}
trap cleanup EXIT
up=
for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && { up=1; break; }; sleep 0.1; done
[ -n "$up" ] || { echo "tansu did not start; see $work/tansu.log"; exit 1; }
"$TANSU" topic create --broker tcp://127.0.0.1:$port touchpoints --partitions "$PARTS" >/dev/null
"$BIN/idgraph-loadgen" --persons "$PERSONS" --events "$EVENTS" --format segment --out "$work/events.ndjson" >/dev/null
"$BIN/idgraph-produce" --brokers 127.0.0.1:$port --topic touchpoints "$work/events.ndjson"
raw=$("$BIN/idgraph-consume" --brokers 127.0.0.1:$port --topic touchpoints --count-only --idle-ms 2000)
echo "raw consume: $raw"
cat >"$work/e.toml" <<TOML
[kafka]
brokers = "127.0.0.1:$port"
[[inputs]]
topic = "touchpoints"
format = "segment"
[state]
dir = "$work/state"
partitions = $PARTS
[http]
listen = "127.0.0.1:0"
TOML
"$BIN/idgraph" run --config "$work/e.toml" >"$work/run.out" 2>"$work/engine.log" &
engine=$!
alive() { kill -0 "$engine" 2>/dev/null || { echo "the engine exited; log:"; tail -5 "$work/engine.log"; exit 1; }; }
until grep -q '^http:' "$work/run.out" 2>/dev/null; do alive; sleep 0.05; done
http=$(sed -n 's|^http: http://\([^/]*\)/.*|\1|p' "$work/run.out")
# The clock starts when the engine is ready (state open, consumers placed).
until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$http/readyz")" = 200 ]; do alive; sleep 0.02; done
start=$(date +%s.%N)
deadline=$(( $(date +%s) + 1800 ))
metric() { curl -s "http://$http/metrics" | awk -v m="$1" 'index($0, m) == 1 {s += $NF} END {print s + 0}'; }
last=-1; stable_since=$(date +%s.%N)
while true; do
  read_=$(metric 'idgraph_ingest_events_total'); cmds=$(metric 'idgraph_core_commands_total')
  now=$(date +%s.%N)
  if [ "$cmds" != "$last" ]; then last=$cmds; stable_since=$now; fi
  if [ "${read_%.*}" -ge "$EVENTS" ] && python3 -c "import sys; sys.exit(0 if $now - $stable_since > 2 else 1)"; then break; fi
  alive; [ "$(date +%s)" -lt "$deadline" ] || { echo "timed out"; exit 1; }
  sleep 0.1
done
curl -s "http://$http/metrics" | grep -E "^idgraph_(core_batch_seconds|outbox_deliver_seconds)_(sum|count)|^idgraph_core_commands_total|^idgraph_output_records_total" >&2
secs=$(python3 -c "print(round($stable_since - $start, 3))")
e2e=$(python3 -c "print(round($EVENTS / ($stable_since - $start)))")
p50p99=$(curl -s "http://$http/metrics" | python3 -c '
import sys
b=[(float(l.split("le=\"")[1].split("\"")[0]) if "+Inf" not in l else float("inf"), float(l.split()[-1])) for l in sys.stdin if l.startswith("idgraph_core_batch_seconds_bucket")]
n=b[-1][1]
q=lambda f: next((le if le != float("inf") else -1) for le,c in b if c >= f*n)
print(f"{q(0.5)} {q(0.99)}")')
line="{\"events\": $EVENTS, \"partitions\": $PARTS, \"end_to_end_seconds\": $secs, \"end_to_end_per_second\": $e2e, \"batch_p50_le_s\": ${p50p99% *}, \"batch_p99_le_s\": ${p50p99#* }, \"raw\": $raw}"
echo "$line" | tee "$BENCH_DIR/bench-kafka-$(date +%Y%m%d-%H%M%S).json"
