#!/usr/bin/env bash
# Whole-path benchmark on the real services: the roles as separate release processes, the
# load generator (`vitalwatch simulate`) publishing to the test Mosquitto, Kafka topics and a
# database of this run only. Prints the load generator's report (throughput, loss, latency,
# CPU seconds of our processes per 100,000 readings).
#
#   bash scripts/bench-pipeline.sh [ingest-persist|rules|alerting] [RATE] [SECONDS] [PATIENTS]
#
#   ingest-persist  MQTT -> ingest -> Kafka -> persist -> PostgreSQL (issue #2; default 20000/s)
#   rules           + the rules engine: publish -> alert event on Kafka (issue #3; 10000/s)
#   alerting        + alerting, SMTP to the load generator's sink: publish -> email (issue #4; 10000/s)
#
# Needs the services of scripts/services.sh (started here if missing). Kafka is a private,
# fresh tansu on $VW_BENCH_KAFKA_PORT (default 19092), stopped at the end: the shared test broker
# keeps every topic in memory and gets slower as tests add topics. Logs and the report stay in
# $VW_BENCH_DIR (default /tmp/vitalwatch-bench-<time>).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MODE="${1:-ingest-persist}"
case "$MODE" in
  ingest-persist) RATE="${2:-20000}" ;;
  rules | alerting) RATE="${2:-10000}" ;;
  *) echo "usage: $0 [ingest-persist|rules|alerting] [RATE] [SECONDS] [PATIENTS]" >&2; exit 2 ;;
esac
DURATION="${3:-60}"
PATIENTS="${4:-2000}"

source scripts/services.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --bin vitalwatch >&2
BIN="$CARGO_TARGET_DIR/release/vitalwatch"

RUN="bench_$(date +%s)"
DIR="${VW_BENCH_DIR:-/tmp/vitalwatch-bench-$RUN}"
mkdir -p "$DIR"

KAFKA_PORT="${VW_BENCH_KAFKA_PORT:-19092}"
KAFKA="127.0.0.1:$KAFKA_PORT"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 1
  [[ -n "${tansu_pid:-}" ]] && kill -TERM "$tansu_pid" 2>/dev/null
  wait 2>/dev/null || true
  # Discard ingest's persistent session (a clean-session connect with its client id): left
  # behind, it stays subscribed and the test broker (max_queued_messages 0) would queue every
  # later run's readings for it, slowing those runs down.
  if [[ -n "${RUN:-}" ]] && command -v mosquitto_sub >/dev/null; then
    timeout 5 mosquitto_sub -h "${VW_TEST_MQTT%:*}" -p "${VW_TEST_MQTT##*:}" -i "$RUN-ingest" -t vitalwatch/bench/cleanup -E \
      >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
env -u SCHEMA_REGISTRY -u OTEL_EXPORTER_OTLP_ENDPOINT -u CLUSTER_ID "$VW_TANSU_BIN" broker \
  --listener-url "tcp://$KAFKA" --advertised-listener-url "tcp://$KAFKA" \
  --storage-engine memory://tansu/ >"$DIR/tansu.log" 2>&1 &
tansu_pid=$!
for _ in $(seq 100); do
  timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$KAFKA_PORT" 2>/dev/null && break
  sleep 0.1
done
DB="vw_$RUN"
psql "$VW_TEST_PG" -XAtqc "CREATE DATABASE $DB" >/dev/null
DB_URL="${VW_TEST_PG%/*}/$DB"

export VITALWATCH_DATABASE__URL="$DB_URL"
export VITALWATCH_MQTT__URL="mqtt://$VW_TEST_MQTT" VITALWATCH_MQTT__SHARE_GROUP="$RUN-g"
export VITALWATCH_BUS__BROKERS="$KAFKA"
export VITALWATCH_BUS__OBSERVATIONS_TOPIC="$RUN.observations"
export VITALWATCH_BUS__REJECTED_TOPIC="$RUN.rejected"
export VITALWATCH_BUS__DEVICE_STATUS_TOPIC="$RUN.device-status"
export VITALWATCH_BUS__ALERTS_TOPIC="$RUN.alerts"
export VITALWATCH_OPS__LISTEN=127.0.0.1:0
export VITALWATCH_LOG_FORMAT=json
export VITALWATCH_ALERTING__HTTP_ADDR=127.0.0.1:0
export VITALWATCH_ALERTING__SMTP__HOST=127.0.0.1 VITALWATCH_ALERTING__SMTP__PORT=2525
export VITALWATCH_ALERTING__SMTP__SECURITY=none
VITALWATCH_ALERTING__ACK_SECRET="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export VITALWATCH_ALERTING__ACK_SECRET

"$BIN" migrate >"$DIR/migrate.log" 2>&1

roles=(ingest persist)
[[ "$MODE" == rules || "$MODE" == alerting ]] && roles+=(rules)
[[ "$MODE" == alerting ]] && roles+=(alerting)
for r in "${roles[@]}"; do
  VITALWATCH_MQTT__CLIENT_ID="$RUN-$r" "$BIN" "$r" >"$DIR/$r.log" 2>&1 &
  pids+=("$!")
done
sleep 3

args=(--broker "mqtt://$VW_TEST_MQTT" --patients "$PATIENTS" --rate "$RATE" --duration "$DURATION"
  --database "$DB_URL" --kafka "$KAFKA" --observations-topic "$RUN.observations")
for p in "${pids[@]}"; do args+=(--measure-pid "$p"); done
[[ "$MODE" == rules || "$MODE" == alerting ]] && args+=(--alerts-topic "$RUN.alerts")
[[ "$MODE" == alerting ]] && args+=(--smtp-listen 127.0.0.1:2525)

echo "bench $MODE: ${RATE}/s for ${DURATION}s, $PATIENTS patients; roles ${roles[*]} (pids ${pids[*]}); logs in $DIR" >&2
"$BIN" simulate "${args[@]}" 2>&1 | tee "$DIR/report.txt"
