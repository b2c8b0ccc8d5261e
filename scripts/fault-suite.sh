#!/usr/bin/env bash
# The fault suite of issue #12 (tests/fault_suite.rs, tests/faults/): for each fault, under a
# steady load from the load generator, on private services (PostgreSQL cluster, tansu,
# Mosquitto, aiosmtpd, SMS gateway) and the four roles as release processes: readings lost,
# stored twice, pages delivered and duplicated, time to recover. Prints the table (README,
# Fault suite) and writes it to $VW_FAULT_REPORT.
#
#   bash scripts/fault-suite.sh [full|smoke]
#
#   full   the issue's durations: PostgreSQL and Kafka faults 60 s, SMTP and SMS outages
#          10 minutes, 1,000 patients at 2,000 readings/s (about 40 minutes)
#   smoke  what the test suite runs (fault_suite_smoke): 6-8 s faults, 400 readings/s
#
# Overrides (environment): VW_FAULTS=pg-stop,poison (fault names), VW_FAULT_RATE,
# VW_FAULT_PATIENTS, VW_FAULT_WARMUP_SECS, VW_FAULT_SECS, VW_FAULT_PAGE_SECS,
# VW_FAULT_AFTER_SECS, VW_FAULT_RECOVER_SECS, VW_FAULT_TANSU_STORAGE (a tansu storage that
# keeps its log, to run kafka-restart). Logs of a failed fault stay in /tmp/vitalwatch-faults/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MODE="${1:-full}"
case "$MODE" in
  full) TEST=fault_suite_full ;;
  smoke) TEST=fault_suite_smoke ;;
  *) echo "usage: $0 [full|smoke]" >&2; exit 2 ;;
esac

source scripts/services.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --bin vitalwatch >&2
# The roles and the load generator as release processes; the harness itself only polls.
export VW_TEST_VITALWATCH_BIN="${VW_TEST_VITALWATCH_BIN:-$CARGO_TARGET_DIR/release/vitalwatch}"
mkdir -p /tmp/vitalwatch-faults
export VW_FAULT_REPORT="${VW_FAULT_REPORT:-/tmp/vitalwatch-faults/report-$MODE-$(date +%Y%m%d-%H%M%S).md}"
echo "fault suite ($MODE); table in $VW_FAULT_REPORT" >&2
cargo test -p vitalwatch --test integration -- --include-ignored --exact "fault_suite::$TEST" --nocapture
