#!/usr/bin/env bash
# Ensure the real services that vitalwatch's tests need are installed and running, reusing what
# already runs. Idempotent; about a second when everything is up. See scripts/README.md.
#
#   bash scripts/services.sh             # start/check; prints `export VW_...=...` lines on stdout
#   eval "$(bash scripts/services.sh)"   # same, into the current shell
#   source scripts/services.sh           # same; the work runs in a child bash (set -e does not leak)
#
# Writes every variable to $VW_STATE/services.env (KEY=VALUE lines) for test code.
#   VW_TEST_PG         PostgreSQL 15, 127.0.0.1:5432, user postgres, trust auth
#   VW_TEST_MQTT       private Mosquitto, 127.0.0.1:18830, deploy/mosquitto/mosquitto-test.conf
#   VW_TEST_MQTT_STOCK the machine's stock Mosquitto, 127.0.0.1:1883
#   VW_TEST_KAFKA      tansu (Kafka wire protocol), 127.0.0.1:9092, in-memory storage
#   VW_TEST_TIMESCALE  PGlite + TimescaleDB behind pglite-socket, 127.0.0.1:55432 (ONE client at a time)
#   VW_TIMESCALE_SERVER  node script to spawn a private fresh TimescaleDB: node "$VW_TIMESCALE_SERVER" --port 0
#   VW_TANSU_BIN       the tansu binary (e.g. `tansu topic create NAME --partitions 4 --broker tcp://...`)
#   VW_CHROMIUM, VW_CHROMEDRIVER  Debian's chromium and chromedriver (browser tests start their own)
#   VW_OIDC_PROVIDER   node script of a local OpenID provider (oidc-provider), started per test:
#                      node "$VW_OIDC_PROVIDER" --config FILE  (VW_OIDC_NODE_MODULES: its node_modules)
#   VW_FHIR_PYTHON     python3 of a venv with PyPI fhir.resources 6.1.0 (FHIR R4 models), the validator
# SMTP: no shared server. Tests start their own `python3 -m aiosmtpd -n -l 127.0.0.1:PORT`
# (this script only makes sure `import aiosmtpd` works).
#
# Settings (environment): VW_CACHE (default ~/.cache/vitalwatch), VW_STATE (default $VW_CACHE/state),
# VW_SERVICE_TIMEOUT (seconds to wait for a started service, default 60).

_vw_cache="${VW_CACHE:-$HOME/.cache/vitalwatch}"
_vw_state="${VW_STATE:-$_vw_cache/state}"
if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
  # Sourced: do the work in a child bash, then export what it wrote.
  if bash "${BASH_SOURCE[0]}" >/dev/null; then
    while IFS='=' read -r _vw_k _vw_v; do
      [[ -n "$_vw_k" && "$_vw_k" != \#* ]] && export "$_vw_k=$_vw_v"
    done <"$_vw_state/services.env"
    unset _vw_k _vw_v _vw_cache _vw_state
    return 0
  fi
  unset _vw_cache _vw_state
  return 1
fi

set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export VW_CACHE="$_vw_cache" VW_STATE="$_vw_state"
TIMEOUT="${VW_SERVICE_TIMEOUT:-60}"
LOGS="$VW_STATE/logs"
mkdir -p "$VW_STATE" "$LOGS"

# One run at a time per state dir (a second run waits, e.g. for a tansu build in progress).
# flock -o: the lock is held by flock itself, not inherited by the daemons started below.
if [[ -z "${_VW_SERVICES_LOCKED:-}" ]]; then
  _VW_SERVICES_LOCKED=1 exec flock -o "$VW_STATE/.services.lock" bash "${BASH_SOURCE[0]}" "$@"
fi

log() { printf '[services] %s\n' "$*" >&2; }
die() {
  printf '[services] ERROR: %s\n' "$*" >&2
  exit 1
}

# TCP probe: is something accepting connections on host:port?
listening() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# wait_for NAME HOST PORT [LOGFILE]: wait until HOST:PORT accepts connections, or fail clearly.
wait_for() {
  local name=$1 host=$2 port=$3 logfile=${4:-} deadline=$((SECONDS + TIMEOUT))
  until listening "$host" "$port"; do
    if ((SECONDS >= deadline)); then
      [[ -n "$logfile" && -f "$logfile" ]] && tail -n 20 "$logfile" >&2
      die "$name did not start listening on $host:$port within ${TIMEOUT}s${logfile:+ (log: $logfile)}"
    fi
    sleep 0.2
  done
}

# Start a long-running command fully detached (own session, no inherited stdio), pid to a file.
spawn() {
  local pidfile=$1 logfile=$2
  shift 2
  setsid nohup "$@" </dev/null >>"$logfile" 2>&1 &
  echo $! >"$pidfile"
}

# Is the pid in this file alive?
pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

APT_UPDATED=0
# apt_install PKG...: install the Debian packages that are missing (apt-get update once, if needed).
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  ((EUID == 0)) || die "missing packages ${missing[*]}; run as root or install them"
  log "apt-get install ${missing[*]} (log: $LOGS/apt.log)"
  # Output to a file, not to our stdout/stderr: a daemon that a package's postinst starts must not
  # hold the caller's pipes open (CI would wait for it).
  if ((APT_UPDATED == 0)); then
    apt-get update </dev/null >>"$LOGS/apt.log" 2>&1 || { tail -n 20 "$LOGS/apt.log" >&2; die "apt-get update failed"; }
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" \
    </dev/null >>"$LOGS/apt.log" 2>&1 || { tail -n 20 "$LOGS/apt.log" >&2; die "apt-get install ${missing[*]} failed"; }
}

# ------------------------------------------------------------------------------------ PostgreSQL
PG_URL="postgres://postgres@127.0.0.1:5432/postgres"
pg_ok() { psql "$PG_URL" -w -XAtqc 'select 1' >/dev/null 2>&1; }
ensure_postgres() {
  command -v psql >/dev/null || apt_install postgresql-client
  pg_ok && return 0
  if ! listening 127.0.0.1 5432; then
    compgen -G '/etc/postgresql/*/main' >/dev/null || apt_install postgresql
    local ver
    ver="$(ls /etc/postgresql | sort -V | tail -n 1)"
    [[ -n "$ver" ]] || die "PostgreSQL is installed but has no cluster in /etc/postgresql"
    # The package's postinst may have started it already.
    if ! listening 127.0.0.1 5432; then
      log "starting PostgreSQL $ver"
      pg_ctlcluster --skip-systemctl-redirect "$ver" main start </dev/null >>"$LOGS/postgresql-start.log" 2>&1 \
        || listening 127.0.0.1 5432 \
        || { tail -n 20 "$LOGS/postgresql-start.log" >&2; die "pg_ctlcluster $ver main start failed"; }
    fi
    wait_for PostgreSQL 127.0.0.1 5432 "$LOGS/postgresql-start.log"
  fi
  pg_ok && return 0
  # Listening but TCP needs a password (Debian's default is scram-sha-256 for 127.0.0.1):
  # trust user postgres over loopback, for tests only.
  ((EUID == 0)) || die "PostgreSQL on 127.0.0.1:5432 refuses passwordless user postgres; run as root once"
  local hba
  hba="$(runuser -u postgres -- psql -XAtqc 'show hba_file')" || die "cannot ask PostgreSQL for its hba_file"
  if ! grep -q '^# vitalwatch tests' "$hba"; then
    log "pg_hba.conf: trusting user postgres on 127.0.0.1 and ::1 ($hba)"
    {
      echo '# vitalwatch tests: passwordless user postgres over loopback'
      echo 'host all postgres 127.0.0.1/32 trust'
      echo 'host all postgres ::1/128 trust'
      cat "$hba"
    } >"$hba.vw" && cat "$hba.vw" >"$hba" && rm -f "$hba.vw"
  fi
  runuser -u postgres -- psql -XAtqc 'select pg_reload_conf()' >/dev/null
  sleep 0.3
  pg_ok || die "PostgreSQL at $PG_URL still refuses user postgres without password"
}

# ------------------------------------------------------------------------------------ Mosquitto
ensure_mosquitto() {
  command -v mosquitto >/dev/null || apt_install mosquitto
  command -v mosquitto_pub >/dev/null && command -v mosquitto_sub >/dev/null || apt_install mosquitto-clients
  # tests/security/mqtt.rs: password files (mosquitto_passwd, package mosquitto) and test certificates.
  command -v mosquitto_passwd >/dev/null || apt_install mosquitto
  command -v openssl >/dev/null || apt_install openssl

  # The machine's stock broker on 1883.
  if ! listening 127.0.0.1 1883; then
    log "starting stock Mosquitto on 127.0.0.1:1883"
    mkdir -p /run/mosquitto /var/log/mosquitto
    id mosquitto >/dev/null 2>&1 && chown mosquitto /run/mosquitto /var/log/mosquitto
    mosquitto -d -c /etc/mosquitto/mosquitto.conf </dev/null >>"$LOGS/mosquitto-stock.log" 2>&1 \
      || die "stock Mosquitto failed to start (see /var/log/mosquitto/mosquitto.log)"
    wait_for "Mosquitto (stock)" 127.0.0.1 1883 /var/log/mosquitto/mosquitto.log
  fi

  # Our private broker on 18830, with the project's config.
  local dir="$VW_STATE/mosquitto-test"
  if ! listening 127.0.0.1 18830; then
    mkdir -p "$dir/data"
    {
      cat "$REPO/deploy/mosquitto/mosquitto-test.conf"
      echo
      echo "# ---- added by scripts/services.sh"
      echo "user $(id -un)"
      echo "pid_file $dir/mosquitto.pid"
      echo "persistence_location $dir/data/"
      echo "log_dest file $LOGS/mosquitto-test.log"
    } >"$dir/mosquitto.conf"
    log "starting private Mosquitto on 127.0.0.1:18830 (state: $dir)"
    mosquitto -d -c "$dir/mosquitto.conf" </dev/null >>"$LOGS/mosquitto-test.log" 2>&1 \
      || { tail -n 20 "$LOGS/mosquitto-test.log" >&2; die "private Mosquitto failed to start"; }
    wait_for "Mosquitto (private)" 127.0.0.1 18830 "$LOGS/mosquitto-test.log"
  fi
}

# ------------------------------------------------------------------------------------ tansu (Kafka)
# tansu 0.6.0 from crates.io with three fixes (scripts/tansu/tansu-0.6.0.patch): (1) its in-memory
# engine skipped the rest of a producer batch when a consumer fetched from an offset inside it,
# which is what the next owner of a partition does after a rebalance (tests/bus_handover.rs);
# (2) it answered every fetch only when fetch.wait.max.ms had passed, with the records that were
# there when the fetch began, so each consumer hop cost up to twice that wait (Kafka answers as
# soon as fetch.min.bytes are there); (3) every fetch listed every batch object the partition
# ever held, so the broker's CPU grew with the run (an index of batch offsets instead).
# The patch level is part of the install folder, so an unpatched cached build is never reused.
TANSU_VERSION=0.6.0
TANSU_PATCH="$REPO/scripts/tansu/tansu-0.6.0.patch"
TANSU_ROOT="$VW_CACHE/tansu-$TANSU_VERSION-$(sha256sum "$TANSU_PATCH" | cut -c1-8)"
TANSU_BIN="$TANSU_ROOT/bin/tansu"
# Unpacks crate $1 (version $TANSU_VERSION) into $2: from cargo's download cache, else crates.io.
unpack_crate() {
  local name="$1" dest="$2" cached
  cached="$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$name-$TANSU_VERSION.crate" 2>/dev/null | head -n 1 || true)"
  if [[ -n "$cached" ]]; then
    tar -xzf "$cached" -C "$dest"
  else
    curl -fsSL --retry 3 "https://static.crates.io/crates/$name/$name-$TANSU_VERSION.crate" | tar -xz -C "$dest"
  fi
}
build_tansu() {
  local src="$TANSU_ROOT/src"
  rm -rf "$src" && mkdir -p "$src" "$TANSU_ROOT/bin"
  unpack_crate tansu "$src" && unpack_crate tansu-storage "$src" || return 1
  (cd "$src/tansu-storage-$TANSU_VERSION" && git apply "$TANSU_PATCH") || return 1
  printf '\n[patch.crates-io]\ntansu-storage = { path = "../tansu-storage-%s" }\n' "$TANSU_VERSION" \
    >>"$src/tansu-$TANSU_VERSION/Cargo.toml"
  # The packaged Cargo.lock pins every other dependency (it does not compile with drifted ones);
  # cargo only rewrites the patched crate's entry. dynostore: needed by memory:// storage.
  # Own target dir (not the workspace's), so the workspace build lock is not taken; kept across
  # patch levels, so a new patch rebuilds only the patched crate and what depends on it.
  (cd "$src/tansu-$TANSU_VERSION" &&
    env -u CARGO_TARGET_DIR -u CARGO_BUILD_TARGET_DIR cargo build --release --bin tansu \
      --features dynostore,postgres --target-dir "$VW_CACHE/tansu-target") || return 1
  cp "$VW_CACHE/tansu-target/release/tansu" "$TANSU_BIN.tmp" && mv "$TANSU_BIN.tmp" "$TANSU_BIN"
}
ensure_tansu_binary() {
  [[ -x "$TANSU_BIN" ]] && return 0
  command -v cargo >/dev/null || die "cargo not found: needed to build tansu"
  log "building tansu $TANSU_VERSION (patched) into $TANSU_ROOT (about 9 minutes on 2 cores; log: $LOGS/tansu-build.log)"
  build_tansu </dev/null >"$LOGS/tansu-build.log" 2>&1 \
    || { tail -n 30 "$LOGS/tansu-build.log" >&2; die "building tansu failed"; }
  [[ -x "$TANSU_BIN" ]] || die "the tansu build finished but $TANSU_BIN is missing"
}
# A tansu this script started earlier from another build (an unpatched one): replace it.
replace_stale_tansu() {
  pid_alive "$VW_STATE/tansu.pid" || return 0
  local pid exe
  pid="$(cat "$VW_STATE/tansu.pid")"
  exe="$(readlink -f "/proc/$pid/exe" 2>/dev/null || true)"
  [[ "$exe" == */tansu && "$exe" != "$(readlink -f "$TANSU_BIN" 2>/dev/null || echo "$TANSU_BIN")" ]] || return 0
  ensure_tansu_binary
  log "stopping tansu $pid ($exe): not the build this checkout needs"
  kill "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 20))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  kill -9 "$pid" 2>/dev/null || true
}
ensure_tansu() {
  replace_stale_tansu
  listening 127.0.0.1 9092 && return 0
  ensure_tansu_binary
  log "starting tansu on 127.0.0.1:9092 (in-memory storage)"
  # tansu also reads its settings from the environment (STORAGE_ENGINE, SCHEMA_REGISTRY, ...):
  # flags win for those given; clear the ones not given.
  spawn "$VW_STATE/tansu.pid" "$LOGS/tansu.log" env -u SCHEMA_REGISTRY -u OTEL_EXPORTER_OTLP_ENDPOINT \
    -u CLUSTER_ID "$TANSU_BIN" broker \
    --listener-url tcp://127.0.0.1:9092 --advertised-listener-url tcp://127.0.0.1:9092 \
    --storage-engine memory://tansu/
  wait_for tansu 127.0.0.1 9092 "$LOGS/tansu.log"
}

# ------------------------------------------------------------------------------------ TimescaleDB
TS_DIR="$VW_CACHE/timescale"
TS_URL="postgres://postgres:x@127.0.0.1:55432/postgres"
# 0 = answers; 124 = no answer within 10 s (busy: it serves one client at a time); else broken.
ts_ok() { timeout 10 psql "$TS_URL" -w -XAtqc 'select 1' >/dev/null 2>&1; }
ensure_timescale_files() {
  command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
  local src="$REPO/scripts/timescale" stamp
  mkdir -p "$TS_DIR"
  stamp="$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -c1-16)"
  if [[ ! -d "$TS_DIR/node_modules" || "$(cat "$TS_DIR/.stamp" 2>/dev/null)" != "$stamp" ]]; then
    log "npm ci in $TS_DIR (PGlite + TimescaleDB)"
    cp "$src/package.json" "$src/package-lock.json" "$TS_DIR/"
    (cd "$TS_DIR" && npm ci --no-audit --no-fund --loglevel=error </dev/null >"$LOGS/timescale-npm.log" 2>&1) \
      || { tail -n 20 "$LOGS/timescale-npm.log" >&2; die "npm ci for the TimescaleDB server failed"; }
    echo "$stamp" >"$TS_DIR/.stamp"
  fi
  # server.mjs must sit next to node_modules (ESM resolves packages from the file's location).
  if ! cmp -s "$src/server.mjs" "$TS_DIR/server.mjs"; then
    cp "$src/server.mjs" "$TS_DIR/server.mjs"
    return 1 # changed: a running server from the old file should be restarted
  fi
}
ensure_timescale() {
  local pidfile="$VW_STATE/timescale.pid" changed=0
  ensure_timescale_files || changed=1
  if listening 127.0.0.1 55432; then
    local why="server.mjs changed" rc=0
    if ((changed == 0)); then
      ts_ok || rc=$?
      ((rc == 0)) && return 0
      if ((rc == 124)); then
        log "WARNING: TimescaleDB on 127.0.0.1:55432 is busy (another client holds its one connection); reusing it"
        return 0
      fi
      why="not answering 'select 1'"
    fi
    pid_alive "$pidfile" || die "127.0.0.1:55432 is in use ($why) by a process this script did not start; stop it"
    log "restarting the TimescaleDB server ($why)"
    kill "$(cat "$pidfile")" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while listening 127.0.0.1 55432 && ((SECONDS < deadline)); do sleep 0.2; done
    pid_alive "$pidfile" && kill -9 "$(cat "$pidfile")" 2>/dev/null || true
  fi
  log "starting the TimescaleDB server (PGlite) on 127.0.0.1:55432"
  spawn "$pidfile" "$LOGS/timescale.log" node "$TS_DIR/server.mjs" --host 127.0.0.1 --port 55432
  wait_for "TimescaleDB (pglite)" 127.0.0.1 55432 "$LOGS/timescale.log"
  ts_ok || die "TimescaleDB server on 127.0.0.1:55432 listens but does not answer 'select 1' (log: $LOGS/timescale.log)"
}

# ------------------------------------------------------------------------------------ SMTP (aiosmtpd)
ensure_aiosmtpd() {
  python3 -c 'import aiosmtpd' 2>/dev/null && return 0
  log "installing aiosmtpd (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check 'aiosmtpd>=1.4,<2' >&2 \
    || apt_install python3-aiosmtpd
  python3 -c 'import aiosmtpd' 2>/dev/null || die "python3 cannot import aiosmtpd after installing it"
}

# ------------------------------------------------------------------------------------ FHIR validator
# The independent FHIR R4 validator of the FHIR API tests: PyPI fhir.resources 6.1.0, the last
# release whose models are R4 (4.0.1; 6.2+ are R4B, 7.x R5), with pydantic v1, in a private venv
# so the machine's pydantic v2 stays untouched.
FHIR_VENV="$VW_CACHE/fhir-venv"
fhir_ok() { "$FHIR_VENV/bin/python" -c 'import fhir.resources as f; assert f.__fhir_version__ == "4.0.1"' 2>/dev/null; }
ensure_fhir_validator() {
  fhir_ok && return 0
  log "installing the FHIR R4 validator (PyPI fhir.resources 6.1.0) in $FHIR_VENV"
  python3 -m venv "$FHIR_VENV" >&2 || { apt_install python3-venv && python3 -m venv "$FHIR_VENV" >&2; }
  "$FHIR_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    'fhir.resources==6.1.0' 'pydantic[email]>=1.10,<2' >&2
  fhir_ok || die "the FHIR R4 validator (fhir.resources 6.1.0) does not import after installing it"
}

# ------------------------------------------------------------------------------------ TLS tools
# The test build links librdkafka against the system OpenSSL (cargo feature kafka-tls:
# libssl-dev, pkg-config); the transport security tests make certificates with `openssl`.
ensure_tls_tools() {
  command -v openssl >/dev/null || apt_install openssl
  command -v pkg-config >/dev/null && pkg-config --exists openssl 2>/dev/null || apt_install libssl-dev pkg-config
}

# ------------------------------------------------------------------------------------ browser
# Debian's Chromium and ChromeDriver for the web workspace's browser tests (testkit::Browser starts
# chromedriver on a free port and a headless Chromium per test; nothing runs here).
ensure_chromium() {
  apt_install chromium chromium-driver
  [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]] || die "chromium/chromedriver missing after install"
}

# ------------------------------------------------------------------------------------ OpenID provider
# panva's oidc-provider (testkit/oidc/package.json + package-lock.json) installed with `npm ci` into
# $VW_CACHE/oidc-<hash of the two files>/, with provider.mjs next to its node_modules. Tests start
# their own instance (testkit::OidcProvider, `node provider.mjs --config FILE`); nothing runs here.
OIDC_SRC="$REPO/testkit/oidc"
OIDC_DIR="$VW_CACHE/oidc-$(cat "$OIDC_SRC/package.json" "$OIDC_SRC/package-lock.json" | sha256sum | cut -c1-12)"
ensure_oidc_provider() {
  command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
  if [[ ! -f "$OIDC_DIR/.installed" ]]; then
    log "npm ci in $OIDC_DIR (oidc-provider; log: $LOGS/oidc-npm.log)"
    rm -rf "$OIDC_DIR" && mkdir -p "$OIDC_DIR"
    cp "$OIDC_SRC/package.json" "$OIDC_SRC/package-lock.json" "$OIDC_DIR/"
    (cd "$OIDC_DIR" && npm ci --no-audit --no-fund --loglevel=error </dev/null >"$LOGS/oidc-npm.log" 2>&1) \
      || { tail -n 20 "$LOGS/oidc-npm.log" >&2; die "npm ci for the OpenID provider failed"; }
    touch "$OIDC_DIR/.installed"
  fi
  # provider.mjs must sit next to node_modules (ESM resolves packages from the file's location).
  cmp -s "$OIDC_SRC/provider.mjs" "$OIDC_DIR/provider.mjs" || cp "$OIDC_SRC/provider.mjs" "$OIDC_DIR/provider.mjs"
}

# ------------------------------------------------------------------------------------ main
ensure_tls_tools
ensure_postgres
ensure_mosquitto
ensure_timescale
ensure_aiosmtpd
ensure_fhir_validator
ensure_chromium
ensure_oidc_provider
ensure_tansu # last: on a fresh machine this may build for ~9 minutes

ENV_FILE="$VW_STATE/services.env"
{
  echo "VW_CACHE=$VW_CACHE"
  echo "VW_STATE=$VW_STATE"
  echo "VW_TEST_PG=$PG_URL"
  echo "VW_TEST_MQTT=127.0.0.1:18830"
  echo "VW_TEST_MQTT_STOCK=127.0.0.1:1883"
  echo "VW_TEST_KAFKA=127.0.0.1:9092"
  echo "VW_TEST_TIMESCALE=$TS_URL"
  echo "VW_TIMESCALE_SERVER=$TS_DIR/server.mjs"
  echo "VW_TANSU_BIN=$TANSU_BIN"
  echo "VW_CHROMIUM=/usr/bin/chromium"
  echo "VW_CHROMEDRIVER=/usr/bin/chromedriver"
  echo "VW_OIDC_PROVIDER=$OIDC_DIR/provider.mjs"
  echo "VW_OIDC_NODE_MODULES=$OIDC_DIR/node_modules"
  echo "VW_FHIR_PYTHON=$FHIR_VENV/bin/python"
} >"$ENV_FILE.tmp"
mv "$ENV_FILE.tmp" "$ENV_FILE"
sed 's/^/export /' "$ENV_FILE"
log "all services up (${SECONDS}s); variables in $ENV_FILE"
