#!/usr/bin/env bash
# make bench-kafka: end-to-end events/s of `idgraph run` through tansu, next
# to the raw consume rate of the same (lz4) input topic measured in the same
# run; then the latencies at half that rate (per event, to the first profile
# version that holds it; per batch, to its last hop's outputs); then the same
# end-to-end measure through the embedded mock cluster (fewer events: it
# keeps at most 5 MiB per partition). Prints one JSON line and keeps it in
# $BENCH_DIR.
set -euo pipefail
BIN=${BIN:?} TANSU=${TANSU:?} BENCH_DIR=${BENCH_DIR:-$HOME/.cache/idgraph/bench}
EVENTS=${EVENTS:-200000} PERSONS=${PERSONS:-50000} PARTS=${PARTS:-4}
HALF_SECONDS=${HALF_SECONDS:-10} MOCK_EVENTS=${MOCK_EVENTS:-50000}
work=$(mktemp -d); mkdir -p "$BENCH_DIR"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$TANSU" broker --listener-url tcp://127.0.0.1:$port --advertised-listener-url tcp://127.0.0.1:$port --storage-engine memory://tansu/ >"$work/tansu.log" 2>&1 &
broker=$!
engine=
stop_engine() {
  if [ -n "$engine" ]; then kill "$engine" 2>/dev/null || true; wait "$engine" 2>/dev/null || true; engine=; fi
}
cleanup() { stop_engine; kill "$broker" 2>/dev/null; wait "$broker" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
up=
for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && { up=1; break; }; sleep 0.1; done
[ -n "$up" ] || { echo "tansu did not start; see $work/tansu.log"; exit 1; }
"$TANSU" topic create --broker tcp://127.0.0.1:$port touchpoints --partitions "$PARTS" >/dev/null
"$BIN/idgraph-loadgen" --persons "$PERSONS" --events "$EVENTS" --format segment --out "$work/events.ndjson" >/dev/null
"$BIN/idgraph-produce" --brokers 127.0.0.1:$port --topic touchpoints "$work/events.ndjson"
raw=$("$BIN/idgraph-consume" --brokers 127.0.0.1:$port --topic touchpoints --count-only --idle-ms 2000)
echo "raw consume: $raw"

# start_engine NAME [BROKERS]: runs `idgraph run` (embedded broker without
# BROKERS); sets $engine, $http and $bootstrap once /readyz answers 200.
start_engine() {
  local name=$1 brokers=${2:-}
  {
    [ -n "$brokers" ] && printf '[kafka]\nbrokers = "%s"\n' "$brokers"
    printf '[[inputs]]\ntopic = "touchpoints"\nformat = "segment"\n[state]\ndir = "%s"\npartitions = %s\n[http]\nlisten = "127.0.0.1:0"\n' "$work/state-$name" "$PARTS"
  } >"$work/$name.toml"
  "$BIN/idgraph" run --config "$work/$name.toml" >"$work/$name.out" 2>"$work/$name.log" &
  engine=$!
  until grep -q '^http:' "$work/$name.out" 2>/dev/null; do alive; sleep 0.05; done
  http=$(sed -n 's|^http: http://\([^/]*\)/.*|\1|p' "$work/$name.out")
  bootstrap=$(sed -n 's|^kafka bootstrap: ||p' "$work/$name.out")
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$http/readyz")" = 200 ]; do alive; sleep 0.02; done
}
alive() { kill -0 "$engine" 2>/dev/null || { echo "the engine exited; log:"; tail -5 "$work"/*.log; exit 1; }; }
# wait_done N: until N input records are read and the partitions were idle
# for 2 s (and polling, not inside a long batch); prints the time the last
# command was seen. One curl and two awk
# per 0.1 s poll: the poller shares the machine's two cores with the engine
# and the broker, so it stays cheap (no interpreter start-up per poll).
wait_done() {
  local target=$1 last=-1 stable_since=$EPOCHREALTIME idle_at=0 deadline=$(( ${EPOCHREALTIME%.*} + 1800 ))
  while true; do
    local read_ cmds idle now
    read -r read_ cmds idle < <(curl -s "http://$http/metrics" | tee "$work/metrics.now" | awk '
      index($0, "idgraph_ingest_events_total") == 1 {r += $NF}
      index($0, "idgraph_core_commands_total") == 1 {c += $NF}
      index($0, "idgraph_phase_seconds_total{phase=\"core_poll\"}") == 1 {p = $NF}
      END {printf "%d %d %s\n", r, c, p + 0}')
    now=$EPOCHREALTIME
    # The metrics as of the last command seen (the phases without the quiet end).
    if [ "$cmds" != "$last" ]; then last=$cmds; stable_since=$now; idle_at=$idle; cp "$work/metrics.now" "$work/metrics.last"; fi
    # Done: everything read, no command for 2 s, and the core spent most of
    # them polling for records (the commands counter moves at the end of a
    # batch: a batch longer than 2 s is not an idle core).
    if [ "$read_" -ge "$target" ] && awk -v a="$now" -v b="$stable_since" -v i="$idle" -v j="$idle_at" 'BEGIN {exit !(a - b > 2 && i - j > 1.5)}'; then break; fi
    alive; [ "${now%.*}" -lt "$deadline" ] || { echo "timed out" >&2; exit 1; }
    sleep 0.1
  done
  echo "$stable_since"
}
# buckets NAME: the cumulative bucket counts of a histogram, one per line.
buckets() { curl -s "http://$http/metrics" | grep "^$1_bucket" | awk '{print $NF}'; }
# quantiles NAME BEFORE AFTER: p50 and p99 bucket bounds of the difference.
quantiles() {
  curl -s "http://$http/metrics" | grep "^$1_bucket" | python3 -c '
import sys
bounds=[l.split("le=\"")[1].split("\"")[0] for l in sys.stdin]
after=[float(x) for x in sys.argv[2].split()]; before=[float(x) for x in sys.argv[1].split()] or [0.0]*len(after)
d=[a-b for a,b in zip(after, before)]; n=d[-1]
q=lambda f: next((b if b != "+Inf" else "inf") for b,c in zip(bounds,d) if c >= f*n) if n else "none"
print(q(0.5), q(0.99))' "$2" "$3"
}

# 1. Maximum rate through tansu.
start_engine tansu "127.0.0.1:$port"
start=$EPOCHREALTIME
done_at=$(wait_done "$EVENTS")
curl -s "http://$http/metrics" | grep -E "^idgraph_phase_seconds_total|^idgraph_(core_batch_seconds|outbox_deliver_seconds)_(sum|count)|^idgraph_core_commands_total|^idgraph_output_records_total" >&2
# The core's batches and its time per phase, per batch in ms, as of the
# last command (the rate follows how many batches the input is cut into:
# BENCHMARKS).
per_batch=$(awk '
  index($0, "idgraph_core_batches_total ") == 1 {b = $NF}
  index($0, "idgraph_phase_seconds_total{phase=\"core_") == 1 {split($1, a, "\""); t[a[2]] = $NF}
  END {printf "\"batches\": %d, \"core_ms_per_batch\": {", b; sep = "";
       for (k in t) {printf "%s\"%s\": %.2f", sep, substr(k, 6), (b ? 1000 * t[k] / b : 0); sep = ", "}; printf "}"}' "$work/metrics.last")
secs=$(python3 -c "print(round($done_at - $start, 3))")
e2e=$(python3 -c "print(round($EVENTS / ($done_at - $start)))")
bq=$(quantiles idgraph_core_batch_seconds "" "$(buckets idgraph_core_batch_seconds | tr '\n' ' ')")

# 2. Event-to-output latency at half that rate (same engine, new events).
half=${HALF_RATE:-$(( e2e / 2 ))}; n2=$(( half * HALF_SECONDS ))
"$BIN/idgraph-loadgen" --persons "$PERSONS" --events "$n2" --seed 2 --format segment --out "$work/half.ndjson" >/dev/null
before=$(buckets idgraph_core_event_to_output_seconds | tr '\n' ' ')
pbefore=$(buckets idgraph_core_event_to_profile_seconds | tr '\n' ' ')
"$BIN/idgraph-produce" --brokers 127.0.0.1:$port --topic touchpoints --rate "$half" "$work/half.ndjson" 2>/dev/null
wait_done $(( EVENTS + n2 )) >/dev/null
lq=$(quantiles idgraph_core_event_to_output_seconds "$before" "$(buckets idgraph_core_event_to_output_seconds | tr '\n' ' ')")
pq=$(quantiles idgraph_core_event_to_profile_seconds "$pbefore" "$(buckets idgraph_core_event_to_profile_seconds | tr '\n' ' ')")
stop_engine

# 3. The embedded mock cluster (librdkafka's), same measure, fewer events.
head -n "$MOCK_EVENTS" "$work/events.ndjson" >"$work/mock.ndjson"
start_engine mock
start=$EPOCHREALTIME
"$BIN/idgraph-produce" --brokers "$bootstrap" --topic touchpoints "$work/mock.ndjson" 2>/dev/null
mdone=$(wait_done "$MOCK_EVENTS")
mock_e2e=$(python3 -c "print(round($MOCK_EVENTS / ($mdone - $start)))")
mraw=$("$BIN/idgraph-consume" --brokers "$bootstrap" --topic touchpoints --count-only --idle-ms 2000)
stop_engine

line="{\"events\": $EVENTS, \"partitions\": $PARTS, \"end_to_end_seconds\": $secs, \"end_to_end_per_second\": $e2e, $per_batch, \"batch_p50_le_s\": \"${bq% *}\", \"batch_p99_le_s\": \"${bq#* }\", \"raw\": $raw, \"half_load\": {\"rate\": $half, \"events\": $n2, \"event_to_output_p50_le_s\": \"${lq% *}\", \"event_to_output_p99_le_s\": \"${lq#* }\", \"event_to_profile_p50_le_s\": \"${pq% *}\", \"event_to_profile_p99_le_s\": \"${pq#* }\"}, \"mock\": {\"events\": $MOCK_EVENTS, \"end_to_end_per_second\": $mock_e2e, \"raw\": $mraw}}"
echo "$line" | tee "$BENCH_DIR/bench-kafka-$(date +%Y%m%d-%H%M%S).json"
