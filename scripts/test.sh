#!/usr/bin/env bash
# The one command that runs vitalwatch's whole test suite; CI runs it through .ci/run.
# Starts (or reuses) the real services first; see scripts/README.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Exports VW_TEST_PG, VW_TEST_MQTT, VW_TEST_KAFKA, VW_TEST_TIMESCALE, ... (scripts/services.sh).
source scripts/services.sh
[[ -n "${CI:-}" ]] && export CI
# One shared target dir for fmt, clippy and the tests.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

failed=()
step() {
  printf '\n==> %s\n' "$*"
  "$@" || failed+=("$*")
}

# Databases the tests of earlier runs created (marked by a comment at creation,
# tests/common and alerting/tests): each run makes dozens, and left behind they
# pile up (74 databases, 5.2 GB seen) and slow every PostgreSQL checkpoint.
drop_test_databases() {
  local db
  psql "$VW_TEST_PG" -XAtc "SELECT datname FROM pg_database d
      WHERE shobj_description(d.oid, 'pg_database') = 'vitalwatch test database'" |
    while read -r db; do
      psql "$VW_TEST_PG" -XAtqc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null || true
    done
}
drop_test_databases || echo "could not drop earlier test databases (continuing)" >&2

step cargo fmt --all --check
# Kafka TLS and SASL (librdkafka with the system OpenSSL; docs/operations.md): the transport
# security tests need it, and under CI they fail without it.
FEATURES=(--features vitalwatch/kafka-tls)
step cargo clippy --workspace --all-targets "${FEATURES[@]}" -- -D warnings
step cargo nextest run --workspace --no-fail-fast "${FEATURES[@]}"
# nextest does not run doc tests: the examples in the API docs must compile and hold.
step cargo test --doc --workspace "${FEATURES[@]}"
# Coverage-guided fuzzing of the decoders and `process`, 20 s per target (fuzz/README.md).
step bash scripts/fuzz.sh --smoke
if [[ -f deploy/validate.sh ]]; then
  step bash deploy/validate.sh
fi

if ((${#failed[@]})); then
  printf '\nFAILED steps:\n' >&2
  printf '  %s\n' "${failed[@]}" >&2
  exit 1
fi
printf '\nall steps passed\n'
