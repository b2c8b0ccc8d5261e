#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer, on the stable toolchain) of the four ingest decoders and the
# whole per-message step. See fuzz/README.md.
#
#   bash scripts/fuzz.sh                    # every target, 60 s each
#   bash scripts/fuzz.sh 600                # every target, 600 s each
#   bash scripts/fuzz.sh --runs 10000000    # every target, 10 million inputs each (the long run)
#   bash scripts/fuzz.sh --smoke            # the test suite's step: fmt check, build, 20 s per target
#   bash scripts/fuzz.sh --targets "senml process" 120
#   bash scripts/fuzz.sh --no-large-seeds ...   # without the 256 KiB seeds (faster; see below)
#
# Builds fuzz/ (its own workspace) in release with libFuzzer's coverage instrumentation, using only
# stable rustc flags (-Cpasses=sancov-module, -Cllvm-args=-sanitizer-coverage-*); libFuzzer itself
# comes from the libfuzzer-sys crate (crates.io), compiled by its build script with the system C++
# compiler (g++, installed from Debian if missing). Nothing else to install.
#
# Each target starts from its working corpus ($VW_CACHE/fuzz/corpus/<target>, kept between runs),
# the committed seeds (fuzz/corpus/<target>) and seeds at the 256 KiB size limit made at each run
# (fuzz/large_seeds.py). An input fails the run if it panics, breaks an invariant of the harness
# (fuzz/src/lib.rs), takes more CPU than VW_FUZZ_BASE_MS + VW_FUZZ_MS_PER_KB per KiB (defaults 50 ms
# and 2 ms/KiB), more than $VW_FUZZ_TIMEOUT seconds of wall time (default 10), or more than 2 GB.
# The failing input is kept in $OUT/artifacts/, with the command that reproduces it.
#
# Output: $OUT (default $VW_CACHE/fuzz/runs/<date>): one log per target and summary.md, a table of
# inputs executed, panics and the slowest input per target. Exit status 1 if any target failed.
#
# Environment: VW_CACHE (default ~/.cache/vitalwatch), VW_FUZZ_TARGET_DIR (default
# $CARGO_TARGET_DIR/fuzz, else ./target/fuzz: its own, so a fuzz build never waits for or
# invalidates the workspace's builds), VW_FUZZ_OUT, VW_FUZZ_TIMEOUT, VW_FUZZ_BASE_MS,
# VW_FUZZ_MS_PER_KB.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

ALL_TARGETS=(json senml fhir proto process)
targets=("${ALL_TARGETS[@]}")
seconds=60
runs=
smoke=0
large=1
while (($#)); do
  case "$1" in
    --smoke) smoke=1 seconds=20 ;;
    --runs) runs="$2"; shift ;;
    --no-large-seeds) large=0 ;;
    --targets) read -r -a targets <<<"$2"; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *[!0-9]* | '') echo "fuzz.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    *) seconds="$1" ;;
  esac
  shift
done

log() { printf '[fuzz] %s\n' "$*" >&2; }
VW_CACHE="${VW_CACHE:-$HOME/.cache/vitalwatch}"
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
TARGET_DIR="${VW_FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$REPO/target}/fuzz}"
BIN_DIR="$TARGET_DIR/$TRIPLE/release"
OUT="${VW_FUZZ_OUT:-$VW_CACHE/fuzz/runs/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT/artifacts" "$OUT/stats"

# libfuzzer-sys compiles libFuzzer (C++) in its build script.
if ! command -v c++ >/dev/null; then
  ((EUID == 0)) || { log "no C++ compiler (c++); install g++"; exit 1; }
  log "installing g++ (log: $OUT/apt.log)"
  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends g++; } \
    </dev/null >>"$OUT/apt.log" 2>&1 || { tail -n 20 "$OUT/apt.log" >&2; exit 1; }
fi

if ((smoke)); then
  # The fuzz crate is not a workspace member: the suite's `cargo fmt --all --check` does not see it.
  log "cargo fmt --check (fuzz/)"
  cargo fmt --manifest-path fuzz/Cargo.toml --check
fi

# The flags cargo-fuzz passes, less its nightly-only ones (-Zsanitizer, -Zbuild-std): libFuzzer's
# edge counters, PC table, comparison tracing (for its value profile and dictionary building) and
# stack depth. With --target, they apply to the fuzzed code, not to build scripts. Not --locked:
# fuzz/Cargo.lock (copied from the workspace's) gains an entry when ingest or schemas gain a
# dependency, and the pins it has are kept.
log "building the fuzz targets (log: $OUT/build.log)"
build_start=$SECONDS
if ! RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-sanitizer-coverage-stack-depth \
--cfg fuzzing" \
  CARGO_TARGET_DIR="$TARGET_DIR" \
  cargo build --release --manifest-path fuzz/Cargo.toml --target "$TRIPLE" --bins >"$OUT/build.log" 2>&1; then
  tail -n 40 "$OUT/build.log" >&2
  log "build failed"
  exit 1
fi
log "built in $((SECONDS - build_start)) s"

LARGE="$OUT/large-seeds"
mkdir -p "$LARGE"
((large == 0)) || python3 fuzz/large_seeds.py "$LARGE"

limit=$((256 * 1024))
failed=()
{
  echo "| target | inputs | seconds | inputs/s | panics or failures | slowest input (CPU ms, bytes, ms/KiB) |"
  echo "| --- | ---: | ---: | ---: | ---: | --- |"
} >"$OUT/summary.md"
for t in "${targets[@]}"; do
  corpus="$VW_CACHE/fuzz/corpus/$t"
  mkdir -p "$corpus"
  args=(
    -max_len=$((limit + 256)) -timeout="${VW_FUZZ_TIMEOUT:-10}" -rss_limit_mb=2048 -malloc_limit_mb=2048
    -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$t-"
  )
  [[ "$t" != proto ]] && args+=(-dict=fuzz/dicts/json.dict)
  if [[ -n "$runs" ]]; then args+=(-runs="$runs"); else args+=(-max_total_time="$seconds"); fi
  if [[ -n "$runs" ]]; then what="$runs inputs"; else what="$seconds s"; fi
  log "$t: $what (log: $OUT/$t.log)"
  start=$SECONDS
  status=0
  VW_FUZZ_STATS_DIR="$OUT/stats" "$BIN_DIR/$t" "${args[@]}" "$corpus" "fuzz/corpus/$t" $( ((large == 0)) || echo "$LARGE/$t") \
    >"$OUT/$t.log" 2>&1 || status=$?
  elapsed=$((SECONDS - start))
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$OUT/$t.log" | tail -n 1)"
  [[ -n "$execs" ]] || execs="$(sed -n 's/^#\([0-9]*\).*/\1/p' "$OUT/$t.log" | tail -n 1)"
  slow="$(cat "$OUT/stats/$t.slowest.txt" 2>/dev/null || echo '-')"
  fail=0
  if ((status != 0)); then
    fail=1
    failed+=("$t")
    art="$(ls -t "$OUT/artifacts/$t-"* 2>/dev/null | head -n 1 || true)"
    log "$t FAILED (exit $status); log: $OUT/$t.log"
    grep -E "panicked at|slow input|ERROR: libFuzzer|==[0-9]+== ERROR" -A2 "$OUT/$t.log" | head -n 12 >&2 || true
    if [[ -n "$art" ]]; then
      log "failing input: $art"
      log "reproduce: $BIN_DIR/$t $art"
      log "minimize:  $BIN_DIR/$t -minimize_crash=1 -runs=100000 -artifact_prefix=$OUT/artifacts/$t-min- $art"
    fi
  fi
  rate=$((execs / (elapsed > 0 ? elapsed : 1)))
  echo "| $t | $execs | $elapsed | $rate | $fail | $slow |" >>"$OUT/summary.md"
  log "$t: $execs inputs in ${elapsed}s, failures $fail, slowest: $slow"
done
rm -rf "$LARGE"
cat "$OUT/summary.md"
if ((${#failed[@]})); then
  log "failed targets: ${failed[*]} (artifacts: $OUT/artifacts)"
  exit 1
fi
