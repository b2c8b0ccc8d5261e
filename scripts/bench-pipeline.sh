#!/usr/bin/env bash
# Whole-path benchmark on the real services: the roles as separate release processes, the
# load generator (`vitalwatch simulate`) publishing to the test Mosquitto, Kafka topics and a
# database of this run only. Prints the load generator's report (throughput, loss, latency,
# CPU seconds of our processes per 100,000 readings).
#
#   bash scripts/bench-pipeline.sh [ingest-persist|rules|alerting] [RATE] [SECONDS] [PATIENTS]
#   (VW_BENCH_BIN=PATH to run a given binary instead of building this tree's;
#   VW_BENCH_INGESTS=2 for two ingest replicas; VW_BENCH_FORMATS=json for canonical JSON only,
#   default json,senml,fhir,proto, one per patient in turn, every fifth patient entering readings
#   by hand in canonical JSON whatever the format; VW_BENCH_PER_MESSAGE=10 for ten readings per
#   message, 1 ms apart, the last at the publish time (so the on-Kafka latency includes 4.5 ms
#   of back-dating on average); the rate stays in readings/s)
#   bash scripts/bench-pipeline.sh run [RATE] [SECONDS] [PATIENTS]
#
#   ingest-persist  MQTT -> ingest -> Kafka -> persist -> PostgreSQL (issue #2; default 20000/s)
#   rules           + the rules engine: publish -> alert event on Kafka (issue #3; 10000/s)
#   alerting        + alerting, SMTP to the load generator's sink: publish -> email (issue #4; 10000/s)
#   run             `vitalwatch run` (every role in one process, in-process bus) on the same
#                   Mosquitto and PostgreSQL (issue #18; default 20000/s)
#
# Needs the services of scripts/services.sh (started here if missing). Kafka and MQTT are
# private, fresh brokers, stopped at the end: tansu on $VW_BENCH_KAFKA_PORT (default 19092; the
# shared test broker keeps every topic in memory and gets slower as tests add topics) and
# Mosquitto with the test broker's settings but no persistence on $VW_BENCH_MQTT_PORT (default
# 18831; the shared one accumulates the test suite's sessions and store). Logs and the report
# stay in $VW_BENCH_DIR (default /tmp/vitalwatch-bench-<time>).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MODE="${1:-ingest-persist}"
case "$MODE" in
  ingest-persist | run) RATE="${2:-20000}" ;;
  rules | alerting) RATE="${2:-10000}" ;;
  *) echo "usage: $0 [ingest-persist|rules|alerting|run] [RATE] [SECONDS] [PATIENTS]" >&2; exit 2 ;;
esac
DURATION="${3:-60}"
PATIENTS="${4:-2000}"

source scripts/services.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
if [[ -n "${VW_BENCH_BIN:-}" ]]; then
  # A given build (e.g. a copy of an earlier commit's binary, to compare two builds
  # alternately on the same machine); roles and load generator alike.
  BIN="$VW_BENCH_BIN"
  [[ -x "$BIN" ]] || { echo "VW_BENCH_BIN=$BIN is not an executable" >&2; exit 2; }
else
  cargo build --release --bin vitalwatch >&2
  BIN="$CARGO_TARGET_DIR/release/vitalwatch"
fi

RUN="bench_$(date +%s)"
DIR="${VW_BENCH_DIR:-/tmp/vitalwatch-bench-$RUN}"
mkdir -p "$DIR"

KAFKA_PORT="${VW_BENCH_KAFKA_PORT:-19092}"
KAFKA="127.0.0.1:$KAFKA_PORT"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 1
  # `|| true` on each: under `set -e` a failed kill would end the trap and
  # leave the other broker running.
  if [[ -n "${tansu_pid:-}" ]]; then kill -TERM "$tansu_pid" 2>/dev/null || true; fi
  if [[ -n "${mosquitto_pid:-}" ]]; then kill -TERM "$mosquitto_pid" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  # This run's database (hundreds of MB after a 20k/s minute): dropped unless
  # VW_BENCH_KEEP_DB=1. Left behind, such databases pile up, and every
  # PostgreSQL checkpoint then syncs all their files (8,815 files, an 8 s sync
  # that stalled persist mid-run, was seen).
  if [[ -n "${DB:-}" && "${VW_BENCH_KEEP_DB:-0}" != 1 ]]; then
    psql "$VW_TEST_PG" -XAtqc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
# The brokers must be this run's own: a leftover one on these ports (an
# earlier run that was killed) would keep its sessions and topics.
for port in "$KAFKA_PORT" "${VW_BENCH_MQTT_PORT:-18831}"; do
  if timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
    echo "port $port is in use: stop the process listening there (a leftover benchmark broker?)" >&2
    exit 1
  fi
done
env -u SCHEMA_REGISTRY -u OTEL_EXPORTER_OTLP_ENDPOINT -u CLUSTER_ID "$VW_TANSU_BIN" broker \
  --listener-url "tcp://$KAFKA" --advertised-listener-url "tcp://$KAFKA" \
  --storage-engine memory://tansu/ >"$DIR/tansu.log" 2>&1 &
tansu_pid=$!
# A private Mosquitto too (the test broker's settings, no persistence): the shared test broker
# accumulates sessions and stored messages from the test suite, and its periodic autosave of a
# large store stalls it (at 10k/s it was seen at 82 % CPU, a freshly started one at 33 %).
MQTT_PORT="${VW_BENCH_MQTT_PORT:-18831}"
MQTT="127.0.0.1:$MQTT_PORT"
{
  grep -Ev '^(listener|persistence|autosave_interval|log_dest)[[:space:]]' deploy/mosquitto/mosquitto-test.conf
  echo "listener $MQTT_PORT 127.0.0.1"
  echo "persistence false"
  echo "log_dest file $DIR/mosquitto.log"
  if [[ $EUID -eq 0 ]]; then echo "user root"; fi
} >"$DIR/mosquitto.conf"
mosquitto -c "$DIR/mosquitto.conf" >/dev/null 2>&1 &
mosquitto_pid=$!
for port in "$KAFKA_PORT" "$MQTT_PORT"; do
  for _ in $(seq 100); do
    timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null && break
    sleep 0.1
  done
done
DB="vw_$RUN"
psql "$VW_TEST_PG" -XAtqc "CREATE DATABASE $DB" >/dev/null
DB_URL="${VW_TEST_PG%/*}/$DB"

export VITALWATCH_DATABASE__URL="$DB_URL"
export VITALWATCH_MQTT__URL="mqtt://$MQTT" VITALWATCH_MQTT__SHARE_GROUP="$RUN-g"
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
# Start the minute with a fresh checkpoint, so that a timed one (every 5 min by
# default) does not land in it: its final sync stalls writers for seconds.
psql "$VW_TEST_PG" -XAtqc "CHECKPOINT" >/dev/null

roles=(ingest persist)
# `vitalwatch run`: every role in one process, the in-process bus (no Kafka in its path).
[[ "$MODE" == run ]] && roles=(run)
[[ "$MODE" == rules || "$MODE" == alerting ]] && roles+=(rules)
[[ "$MODE" == alerting ]] && roles+=(alerting)
# VW_BENCH_INGESTS=N runs N ingest replicas (they split the load through the shared subscription).
for i in $(seq 2 "${VW_BENCH_INGESTS:-1}"); do roles+=("ingest-$i"); done
for r in "${roles[@]}"; do
  extra=()
  [[ "$r" == run ]] && extra=(--data-dir "$DIR/data")
  # VW_BENCH_ROLE_THREADS=N: the roles' tokio worker threads (TOKIO_WORKER_THREADS; default: one per core).
  env ${VW_BENCH_ROLE_THREADS:+TOKIO_WORKER_THREADS=$VW_BENCH_ROLE_THREADS} \
    VITALWATCH_MQTT__CLIENT_ID="$RUN-$r" "$BIN" "${r%%-*}" "${extra[@]}" >"$DIR/$r.log" 2>&1 &
  pids+=("$!")
done
sleep 3

args=(--broker "mqtt://$MQTT" --patients "$PATIENTS" --rate "$RATE" --duration "$DURATION" --database "$DB_URL"
  --formats "${VW_BENCH_FORMATS:-json,senml,fhir,proto}" --per-message "${VW_BENCH_PER_MESSAGE:-1}")
[[ "$MODE" != run ]] && args+=(--kafka "$KAFKA" --observations-topic "$RUN.observations")
# VW_BENCH_PREREGISTER=1: the population's patients, devices and enrolments are inserted here in
# a few statements (the load generator registers them one statement at a time, about 25 minutes
# for 100,000 patients on a slow machine; it then finds them registered). The ids are the load
# generator's: `{prefix}-{i:06}` and `{prefix}-{i:06}-{scale|cuff|oxi|gluco|thermo}`.
if [[ "${VW_BENCH_PREREGISTER:-0}" == 1 ]]; then
  PREFIX="p-$RUN"
  args+=(--prefix "$PREFIX")
  # In chunks of 500 patients, each statement its own transaction: the id triggers take an
  # advisory lock per row (schemas/migrations/postgres/0025_principal_ids.sql), and one
  # statement for all of them runs out of lock memory.
  {
    echo "CREATE TEMP TABLE kinds (suffix text, kind text);"
    echo "INSERT INTO kinds VALUES ('scale', 'scale'), ('cuff', 'bp_cuff'), ('oxi', 'oximeter'), ('gluco', 'glucometer'), ('thermo', 'thermometer');"
    for ((lo = 0; lo < PATIENTS; lo += 500)); do
      hi=$((lo + 500 < PATIENTS ? lo + 500 : PATIENTS))
      cat <<SQL
INSERT INTO patients (patient_id) SELECT format('%s-%s', '$PREFIX', lpad(i::text, 6, '0'))
  FROM generate_series($lo, $hi - 1) i ON CONFLICT DO NOTHING;
INSERT INTO devices (device_id, kind) SELECT format('%s-%s-%s', '$PREFIX', lpad(i::text, 6, '0'), k.suffix), k.kind
  FROM generate_series($lo, $hi - 1) i, kinds k ON CONFLICT DO NOTHING;
INSERT INTO enrolments (device_id, patient_id, valid_from)
  SELECT format('%s-%s-%s', '$PREFIX', lpad(i::text, 6, '0'), k.suffix), format('%s-%s', '$PREFIX', lpad(i::text, 6, '0')), now() - interval '365 days'
  FROM generate_series($lo, $hi - 1) i, kinds k;
SQL
    done
  } | psql "$DB_URL" -XAtq -v ON_ERROR_STOP=1
fi
for p in "${pids[@]}"; do args+=(--measure-pid "$p"); done
# The whole box (issue #18): the brokers' CPU in the same report, PostgreSQL's summed below.
[[ "$MODE" != run ]] && args+=(--measure-pid "$tansu_pid")
args+=(--measure-pid "$mosquitto_pid")
[[ "$MODE" == rules || "$MODE" == alerting ]] && args+=(--alerts-topic "$RUN.alerts")
[[ "$MODE" == alerting ]] && args+=(--smtp-listen 127.0.0.1:2525)

echo "bench $MODE: ${RATE}/s for ${DURATION}s, $PATIENTS patients; roles ${roles[*]} (pids ${pids[*]}), tansu pid $tansu_pid, mosquitto pid $mosquitto_pid; logs in $DIR" >&2
# CPU ticks of every PostgreSQL process (postmaster, backends, checkpointer, WAL writer).
pg_ticks() {
  local t=0 p f
  for p in $(pgrep -x postgres); do
    # (A backend may exit between pgrep and the read.)
    { read -r -a f <"/proc/$p/stat"; } 2>/dev/null && t=$((t + f[13] + f[14]))
  done
  echo "$t"
}
pg_before=$(pg_ticks)
"$BIN" simulate "${args[@]}" 2>&1 | tee "$DIR/report.txt"
pg_after=$(pg_ticks)
# Memory of each role at the end of the run (issue #18): resident now and its peak.
for i in "${!roles[@]}"; do
  awk -v r="${roles[$i]}" '/^VmHWM/ { hwm = $2 } /^VmRSS/ { rss = $2 }
    END { if (rss) printf "memory %s: resident %.1f MiB, peak %.1f MiB\n", r, rss / 1024, hwm / 1024 }' \
    "/proc/${pids[$i]}/status" 2>/dev/null | tee -a "$DIR/report.txt" || true
done
published=$(sed -n 's/^published \([0-9]*\) readings.*/\1/p' "$DIR/report.txt")
if [[ -n "$published" && "$published" -gt 0 ]]; then
  awk -v t=$((pg_after - pg_before)) -v hz="$(getconf CLK_TCK)" -v n="$published" \
    'BEGIN { printf "postgresql (all processes): %.2f CPU s total, %.2f CPU s per 100,000 readings\n", t / hz, t / hz / n * 100000 }' |
    tee -a "$DIR/report.txt"
fi
