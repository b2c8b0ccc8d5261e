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
$BIN ingest & INGEST=$!
$BIN persist & PERSIST=$!
trap 'kill $INGEST $PERSIST 2>/dev/null; wait' EXIT
sleep 5
COMMON=(--patients 400 --rate ${RATE:-2000} --duration ${DURATION:-30} --connections ${CONNS:-16} --database "$DB" --measure-pid $INGEST --drain-timeout 60)
for T in ${TRANSPORTS:-mqtt http}; do
  echo "=== transport $T"
  $BIN simulate "${COMMON[@]}" --transport $T --broker mqtt://$VW_TEST_MQTT --http 127.0.0.1:18443 --prefix "p-$RUN-$T" 2>/dev/null | grep -E "published|rows expected|latency|CPU|WARNING"
done
