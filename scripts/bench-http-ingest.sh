#!/usr/bin/env bash
# HTTP vs MQTT ingest: readings/s and CPU seconds of the ingest process per 100,000 readings,
# same simulated population and payloads (json, senml, fhir, proto), same rate, `simulate`'s
# connections (MQTT: QoS 1 publishers; HTTP: keep-alive connections, one request at a time
# each), against the real services of scripts/services.sh (Mosquitto, tansu, PostgreSQL),
# with `vitalwatch ingest` (ingest.http_listen set) and `vitalwatch persist`.
#   RATE=1000 DURATION=20 CONNS=16 bash scripts/bench-http-ingest.sh
#   BIN=target/release/vitalwatch ...   (default: the debug build in $CARGO_TARGET_DIR or target)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/services.sh >/dev/null 2>&1
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/debug/vitalwatch}
RUN=bhttp$(date +%H%M%S)
LOG=${TMPDIR:-/tmp}/$RUN
DB="postgres://postgres@127.0.0.1:5432/$RUN"
psql -q "$VW_TEST_PG" -c "CREATE DATABASE $RUN" >/dev/null
export VITALWATCH_DATABASE__URL=$DB VITALWATCH_BUS__BROKERS=$VW_TEST_KAFKA \
  VITALWATCH_BUS__OBSERVATIONS_TOPIC=$RUN.obs VITALWATCH_BUS__REJECTED_TOPIC=$RUN.rej \
  VITALWATCH_BUS__DEAD_LETTER_TOPIC=$RUN.dead VITALWATCH_BUS__DEVICE_STATUS_TOPIC=$RUN.status \
  VITALWATCH_BUS__ALERTS_TOPIC=$RUN.alerts VITALWATCH_BUS__PARTITIONS=4 \
  VITALWATCH_MQTT__URL=mqtt://$VW_TEST_MQTT VITALWATCH_MQTT__CLIENT_ID=$RUN-ingest VITALWATCH_MQTT__SHARE_GROUP=$RUN-g \
  VITALWATCH_PERSIST__GROUP=$RUN-persist VITALWATCH_INGEST__RATE_LIMIT_PER_SEC=0 \
  VITALWATCH_INGEST__HTTP_LISTEN=127.0.0.1:18443 VITALWATCH_OPS__LISTEN=127.0.0.1:0 RUST_LOG=warn
$BIN migrate >/dev/null
# The simulated population is registered the moment before it starts sending: let every
# first message wait for the registry reload (the default, 256 held at once, dead-letters the
# rest of a 10,000/s burst as unknown_device: by design, README "Configuration").
VITALWATCH_OPS__LISTEN=127.0.0.1:19091 VITALWATCH_INGEST__REGISTRY_MAX_HELD=100000 $BIN ingest & INGEST=$!
$BIN persist & PERSIST=$!
trap 'kill $INGEST $PERSIST 2>/dev/null; wait' EXIT
sleep 5
COMMON=(--patients 400 --rate ${RATE:-2000} --duration ${DURATION:-30} --connections ${CONNS:-16} --database "$DB" --measure-pid $INGEST --drain-timeout 60)
# The MQTT path has a hop the HTTP path does not: the broker terminates the devices'
# connections and hands ingest one aggregated stream. Its CPU is part of the MQTT
# path's cost per reading, so it is measured too (the MQTT broker of scripts/services.sh).
BROKER_PID=$(ss -ltnpH "sport = :${VW_TEST_MQTT##*:}" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
ticks() { awk '{print $14 + $15}' /proc/$1/stat; }
HZ=$(getconf CLK_TCK)
for T in ${TRANSPORTS:-mqtt http}; do
  echo "=== transport $T"
  b0=$(ticks $BROKER_PID)
  out=$($BIN simulate "${COMMON[@]}" --transport $T --broker mqtt://$VW_TEST_MQTT --http 127.0.0.1:18443 --prefix "p-$RUN-$T" 2>$LOG.$T) || echo "simulate failed: see $LOG.$T"
  b1=$(ticks $BROKER_PID)
  echo "$out" | grep -E "published|rows expected|latency|CPU|WARNING"
  # What ingest counted (rejections by reason, duplicates), cumulative over the transports.
  curl -s 127.0.0.1:19091/metrics | grep -E '^vitalwatch_ingest_(rejections|duplicates|messages|dead_letters|registry_not_held)[a-z_]*(\{| )' | sed 's/^/  ingest metric: /' || true
  n=$(echo "$out" | grep -oP 'published \K[0-9]+' | head -1)
  ingest=$(echo "$out" | grep -oP '[0-9.]+(?= CPU s per 100,000 readings)' | head -1)
  awk -v b=$((b1 - b0)) -v hz=$HZ -v n=$n -v i=$ingest -v t=$T 'BEGIN {
    br = b / hz * 100000 / n
    printf "MQTT broker (pid %s): %.2f CPU s per 100,000 readings; ingest + broker: %.2f (%s)\n", "'$BROKER_PID'", br, i + br, t }'
done
