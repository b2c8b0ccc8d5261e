#!/usr/bin/env python3
"""Offline checks of rendered vitalwatch manifests (called by deploy/validate.sh).

Usage: validate_manifests.py --kubernetes-version 1.32 --config-rs vitalwatch/src/config.rs \
           --config-rs platform/src/config.rs [--config-rs ...] --keda-schema deploy/tools/schemas/keda.sh-v1alpha1.json LABEL=rendered.yaml ...

Every document of every file must pass:
1. Schema: Kubernetes kinds with kubernetes-validate in strict mode (unknown fields are
   errors) against the bundled schemas of exactly the requested Kubernetes minor version;
   KEDA kinds (keda.sh/v1alpha1) against the strict schema in --keda-schema. A kind with no
   schema at all is an error, not a warning (a removed or misspelled apiVersion would
   otherwise pass).
2. Configuration keys: every VITALWATCH_* variable, in a ConfigMap or a container's env,
   names a key that exists in the configuration structs (vitalwatch/src/config.rs and the
   sections it composes; the loader rejects unknown keys, so a typo stops the role at start).
3. Pod hygiene required by deploy/README.md: service links off (Kubernetes would inject
   VITALWATCH_<SERVICE>_SERVICE_HOST variables, unknown keys again), no service account
   token, non-root, seccomp RuntimeDefault, read-only root filesystem, no privilege
   escalation, all capabilities dropped.
4. Autoscaling: targets exist; a Kafka-lag ScaledObject never scales past the partition
   count (VITALWATCH_BUS__PARTITIONS) and polls the brokers the roles use.
5. Network policies (a file with workloads or NetworkPolicies): a default-deny policy
   (both directions) covers every workload; no ingress rule is open to everyone (all
   sources or all ports), except the device TLS port of the MQTT broker; the ops port only
   from the monitoring namespace, the alerting and admin HTTP ports only from the Ingress
   controller's namespace; PostgreSQL and Kafka only from the roles that use them.
6. Transport security of the production overlay: the database with sslmode=verify-full
   and a CA, Kafka over TLS (security.protocol SSL or SASL_SSL).

Exit status 0 when everything passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Iterator

import importlib_resources
import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate import utils as kv_utils
from packaging.version import Version
from referencing import Registry, Resource

PREFIX = "VITALWATCH_"
# Keys the configuration loader ignores (platform/src/config.rs: Env::...ignore(...)).
IGNORED_KEYS = {"config", "log"}
DEFAULT_PARTITIONS = 12
POD_SPEC_PATHS = {
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
SCALABLE_KINDS = {"Deployment", "StatefulSet"}

# Network policies (deploy/k8s/base/networkpolicy.yaml). Ports and the namespaces allowed to
# reach them; the roles (app.kubernetes.io/component) allowed to reach the database and Kafka.
COMPONENT = "app.kubernetes.io/component"
OPS_PORT = 9464
INGRESS_SOURCES = {
    OPS_PORT: {"monitoring"},  # /metrics, /healthz, /readyz
    8080: {"ingress-nginx"},  # alerting: /ack, /sms/inbound
    8090: {"ingress-nginx"},  # admin API
    8081: {"ingress-nginx"},  # ingest: HTTP ingestion (docs/http-ingest.md)
}
PUBLIC_PORTS = {8883}  # the MQTT broker's TLS listener for devices (deploy/mosquitto/)
DATABASE_PORTS = {5432}
DATABASE_ROLES = {"ingest", "persist", "rules", "alerting", "api", "migrate"}
KAFKA_PORTS = {9092, 9093}
KAFKA_ROLES = {"ingest", "persist", "rules", "alerting"}


def dig(obj: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(p)
    return obj


def name_of(doc: dict) -> str:
    return f"{doc.get('kind', '?')}/{dig(doc, 'metadata', 'name') or '?'}"


# --------------------------------------------------------------------------- config.rs


class ConfigKeys:
    """The key tree of the configuration, read from the `pub struct` definitions of the
    given sources (vitalwatch/src/config.rs composes the sections each crate owns). A
    field marked `#[serde(flatten)]` contributes its struct's fields to its own section."""

    def __init__(self, source: str):
        self.structs: dict[str, dict[str, str]] = {}
        flattened: dict[str, list[str]] = {}
        for m in re.finditer(r"pub struct (\w+)(?:<[^>]*>)?\s*\{(.*?)\n\}", source, re.S):
            fields: dict[str, str] = {}
            flat: list[str] = []
            pending_flatten = False
            for line in m.group(2).split("\n"):
                if re.match(r"^\s*#\[serde\(.*\bflatten\b.*\)\]\s*$", line):
                    pending_flatten = True
                    continue
                f = re.match(r"^\s*pub (\w+):\s*([^\n]+?),?\s*$", line)
                if f:
                    if pending_flatten:
                        flat.append(f.group(2).strip())
                    else:
                        fields[f.group(1)] = f.group(2)
                    pending_flatten = False
            self.structs[m.group(1)] = fields
            flattened[m.group(1)] = flat

        def merge(name: str, seen: tuple[str, ...] = ()) -> dict[str, str]:
            fields = dict(self.structs.get(name, {}))
            for ty in flattened.get(name, []):
                if ty not in self.structs or ty in seen:
                    raise SystemExit(f"validate_manifests: flattened `{ty}` of `{name}` not found in the config sources")
                fields.update(merge(ty, seen + (name,)))
            return fields

        self.structs = {name: merge(name) for name in self.structs}
        if "Settings" not in self.structs:
            raise SystemExit("validate_manifests: no `pub struct Settings` in the config sources")

    @staticmethod
    def _inner(ty: str) -> str:
        m = re.fullmatch(r"Option<(.+)>", ty.strip())
        return m.group(1).strip() if m else ty.strip()

    def check(self, var: str) -> str | None:
        """None if `var` sets an existing key, else why not."""
        if "." in var:
            return "dotted names cannot be set from the environment (use a TOML file: deploy/README.md)"
        key = var[len(PREFIX):].lower()
        if key in IGNORED_KEYS:
            return None
        parts = key.split("__")
        struct = "Settings"
        for i, part in enumerate(parts):
            fields = self.structs[struct]
            if part not in fields:
                where = ".".join(parts[:i]) or "the top level"
                return f"no key `{part}` in {where} (known: {', '.join(sorted(fields))})"
            ty = self._inner(fields[part])
            last = i == len(parts) - 1
            if ty in self.structs:
                if last:
                    return f"`{'.'.join(parts)}` is a section, not a value"
                struct = ty
            elif re.match(r"(BTreeMap|HashMap)<", ty):
                return None if i == len(parts) - 2 else f"`{'.'.join(parts[: i + 1])}` takes exactly one sub-key"
            elif not last:
                return f"`{'.'.join(parts[: i + 1])}` is a value, not a section"
        return None


# --------------------------------------------------------------------------- schemas


def bundled_schema_version(requested: str) -> str:
    """The bundled schema set for exactly the requested minor version, e.g. 1.32 -> 1.32.0."""
    wanted = Version(requested.lstrip("v"))
    for v in kv_utils.all_versions():
        if Version(v).release[:2] == wanted.release[:2]:
            return v
    raise SystemExit(
        f"validate_manifests: kubernetes-validate {kubernetes_validate.__version__} bundles no schemas for "
        f"Kubernetes {requested} (it has {', '.join(kv_utils.all_versions())})"
    )


class KedaValidator:
    def __init__(self, schema_path: Path, k8s_version: str):
        keda = json.loads(schema_path.read_text())
        defs_file = (
            importlib_resources.files("kubernetes_validate")
            / "kubernetes-json-schema"
            / f"v{k8s_version}-local-strict"
            / "_definitions.json"
        )
        k8s_defs = json.loads(defs_file.read_text())
        registry = Registry().with_resources(
            [(keda["$id"], Resource.from_contents(keda)), (k8s_defs["$id"], Resource.from_contents(k8s_defs))]
        )
        self.validators = {
            kind: jsonschema.Draft202012Validator({"$ref": f"{keda['$id']}#/$defs/{kind}"}, registry=registry)
            for kind in ("ScaledObject", "TriggerAuthentication")
        }

    def errors(self, doc: dict) -> Iterator[str]:
        v = self.validators.get(doc.get("kind"))
        if v is None or doc.get("apiVersion") != "keda.sh/v1alpha1":
            yield f"no schema for {doc.get('apiVersion')} {doc.get('kind')} (add it to the KEDA schema file)"
            return
        seen = set()
        for e in sorted(v.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path]):
            msg = f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
            if msg not in seen:  # a value can fail the same way under two subschemas
                seen.add(msg)
                yield msg


# --------------------------------------------------------------------------- checks


class Checker:
    def __init__(self, k8s_version: str, config: ConfigKeys, keda: KedaValidator):
        self.k8s_version = k8s_version
        self.config = config
        self.keda = keda
        self.failures = 0

    def fail(self, label: str, doc: dict | None, msg: str) -> None:
        self.failures += 1
        where = f"{label}: {name_of(doc)}" if doc is not None else label
        print(f"ERROR {where}: {msg}")

    def check_file(self, label: str, path: Path) -> None:
        try:
            docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        except yaml.YAMLError as e:
            self.fail(label, None, f"not valid YAML: {e}")
            return
        before = self.failures
        k8s = keda = 0
        for doc in docs:
            if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
                self.fail(label, None, "a document without apiVersion/kind")
                continue
            if str(doc["apiVersion"]).startswith("keda.sh/"):
                keda += 1
                for msg in self.keda.errors(doc):
                    self.fail(label, doc, msg)
            else:
                k8s += 1
                self.schema_check(label, doc)
        self.config_keys(label, docs)
        self.pod_hygiene(label, docs)
        self.autoscaling(label, docs)
        self.network_policies(label, docs)
        self.transport_security(label, docs)
        status = "ok" if self.failures == before else f"{self.failures - before} error(s)"
        print(
            f"{label}: {len(docs)} documents ({k8s} Kubernetes, strict, v{self.k8s_version}; "
            f"{keda} KEDA): {status}"
        )

    def schema_check(self, label: str, doc: dict) -> None:
        try:
            kubernetes_validate.validate(doc, self.k8s_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            self.fail(label, doc, f"{path}: {e.message}")
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
            self.fail(label, doc, e.message)

    # VITALWATCH_* keys ------------------------------------------------------------

    def config_keys(self, label: str, docs: list[dict]) -> None:
        for doc in docs:
            if doc["kind"] == "ConfigMap":
                for k in (doc.get("data") or {}):
                    self._key(label, doc, k, "data")
            spec = pod_spec(doc)
            for c in containers(spec):
                for e in c.get("env") or []:
                    self._key(label, doc, e.get("name", ""), f"container {c.get('name')} env")

    def _key(self, label: str, doc: dict, var: str, where: str) -> None:
        if not var.upper().startswith(PREFIX):
            return
        why = self.config.check(var)
        if why:
            self.fail(label, doc, f"{where}: {var}: {why}")

    # pods ----------------------------------------------------------------------------

    def pod_hygiene(self, label: str, docs: list[dict]) -> None:
        for doc in docs:
            spec = pod_spec(doc)
            if spec is None:
                continue
            if spec.get("enableServiceLinks") is not False:
                self.fail(label, doc, "enableServiceLinks must be false (service links inject unknown VITALWATCH_* keys)")
            if spec.get("automountServiceAccountToken") is not False:
                self.fail(label, doc, "automountServiceAccountToken must be false")
            psc = spec.get("securityContext") or {}
            if psc.get("runAsNonRoot") is not True:
                self.fail(label, doc, "securityContext.runAsNonRoot must be true")
            if dig(psc, "seccompProfile", "type") != "RuntimeDefault":
                self.fail(label, doc, "securityContext.seccompProfile.type must be RuntimeDefault")
            for c in containers(spec):
                sc = c.get("securityContext") or {}
                n = c.get("name")
                if sc.get("readOnlyRootFilesystem") is not True:
                    self.fail(label, doc, f"container {n}: readOnlyRootFilesystem must be true")
                if sc.get("allowPrivilegeEscalation") is not False:
                    self.fail(label, doc, f"container {n}: allowPrivilegeEscalation must be false")
                if "ALL" not in (dig(sc, "capabilities", "drop") or []):
                    self.fail(label, doc, f"container {n}: capabilities.drop must contain ALL")
                if not dig(c, "resources", "requests") or not dig(c, "resources", "limits"):
                    self.fail(label, doc, f"container {n}: resources.requests and resources.limits are required")

    # autoscaling -----------------------------------------------------------------------

    def autoscaling(self, label: str, docs: list[dict]) -> None:
        workloads = {(d["kind"], dig(d, "metadata", "name")) for d in docs if d["kind"] in SCALABLE_KINDS}
        config = {}
        for d in docs:
            if d["kind"] == "ConfigMap" and re.fullmatch(r"vitalwatch-config(-[a-z0-9]{10})?", dig(d, "metadata", "name") or ""):
                config = d.get("data") or {}
        try:
            partitions = int(config.get("VITALWATCH_BUS__PARTITIONS", DEFAULT_PARTITIONS))
        except ValueError:
            partitions = None
            self.fail(label, None, "VITALWATCH_BUS__PARTITIONS is not an integer")
        brokers = config.get("VITALWATCH_BUS__BROKERS")
        targeted: dict[tuple[str, str], str] = {}
        for d in docs:
            if d["kind"] == "ScaledObject":
                ref = dig(d, "spec", "scaleTargetRef") or {}
                target = (ref.get("kind", "Deployment"), ref.get("name"))
                mx = dig(d, "spec", "maxReplicaCount")
                mn = dig(d, "spec", "minReplicaCount")
                if isinstance(mn, int) and isinstance(mx, int) and mn > mx:
                    self.fail(label, d, f"minReplicaCount {mn} > maxReplicaCount {mx}")
                for t in dig(d, "spec", "triggers") or []:
                    if t.get("type") != "kafka":
                        continue
                    md = t.get("metadata") or {}
                    if partitions is not None and (not isinstance(mx, int) or mx > partitions):
                        self.fail(
                            label, d,
                            f"maxReplicaCount {mx} must be set and at most the partition count {partitions} "
                            "(VITALWATCH_BUS__PARTITIONS): consumers beyond it sit idle",
                        )
                    if brokers is not None and md.get("bootstrapServers") != brokers:
                        self.fail(
                            label, d,
                            f"kafka trigger bootstrapServers {md.get('bootstrapServers')!r} differs from "
                            f"VITALWATCH_BUS__BROKERS {brokers!r}",
                        )
            elif d["kind"] == "HorizontalPodAutoscaler":
                ref = dig(d, "spec", "scaleTargetRef") or {}
                target = (ref.get("kind"), ref.get("name"))
            else:
                continue
            if target not in workloads:
                self.fail(label, d, f"scale target {target[0]}/{target[1]} is not in the manifests")
            if target in targeted:
                self.fail(label, d, f"{target[0]}/{target[1]} is already scaled by {targeted[target]}")
            targeted[target] = name_of(d)


    # network policies ----------------------------------------------------------------

    def network_policies(self, label: str, docs: list[dict]) -> None:
        policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
        workloads = [d for d in docs if pod_spec(d) is not None]
        if not policies and not workloads:
            return  # e.g. an example Secret
        deny = [p for p in policies if is_default_deny(p)]
        if workloads and not deny:
            self.fail(label, None, "no default-deny NetworkPolicy (podSelector {}, policyTypes Ingress and Egress, no rules)")
        for p in policies:
            self._ingress_rules(label, p, workloads)
        for w in workloads:
            labels = pod_labels(w)
            selecting = [p for p in policies if selects(dig(p, "spec", "podSelector"), labels)]
            for direction in ("Ingress", "Egress"):
                if not any(direction in policy_types(p) for p in selecting):
                    self.fail(label, w, f"not selected by any NetworkPolicy for {direction} (default deny missing)")
            role = labels.get(COMPONENT, "?")
            egress = [r for p in selecting if "Egress" in policy_types(p) for r in dig(p, "spec", "egress") or []]
            for ports, roles, what in ((DATABASE_PORTS, DATABASE_ROLES, "the database"), (KAFKA_PORTS, KAFKA_ROLES, "Kafka")):
                if role in roles:
                    continue
                for r in egress:
                    allowed = rule_ports(r, w)
                    hit = ports & allowed if allowed is not None else set()
                    if hit or allowed is None:
                        port = sorted(hit)[0] if hit else "any port"
                        self.fail(label, w, f"role {role!r} may reach {what} ({port}): only {sorted(roles)} may")
                        break

    def _ingress_rules(self, label: str, p: dict, workloads: list[dict]) -> None:
        if "Ingress" not in policy_types(p):
            return
        targets = [w for w in workloads if selects(dig(p, "spec", "podSelector"), pod_labels(w))]
        for r in dig(p, "spec", "ingress") or []:
            peers = r.get("from") or []
            open_peers = not peers or any(peer_is_everyone(x) for x in peers)
            ports = set()
            unresolved = False
            for w in targets or [None]:
                got = rule_ports(r, w)
                if got is None:
                    unresolved = True
                else:
                    ports |= got
            if not r.get("ports"):
                self.fail(label, p, "an ingress rule without ports allows every port: list them")
                continue
            if open_peers:
                if unresolved or not ports <= PUBLIC_PORTS:
                    self.fail(label, p, f"an ingress rule open to every source (ports {sorted(ports)}): only {sorted(PUBLIC_PORTS)} may be public")
                continue
            names = {dig(x, "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name") for x in peers}
            for port in ports:
                allowed = INGRESS_SOURCES.get(port)
                if allowed is not None and not names <= allowed:
                    self.fail(label, p, f"port {port} may be reached only from namespace(s) {sorted(allowed)}, not {sorted(map(str, names))}")

    # transport security ------------------------------------------------------------

    def transport_security(self, label: str, docs: list[dict]) -> None:
        if not label.startswith("production"):
            return
        env: dict[str, str] = {}
        for d in docs:
            if d["kind"] == "ConfigMap" and (dig(d, "metadata", "name") or "").startswith("vitalwatch-config"):
                env.update(d.get("data") or {})
        if env.get("VITALWATCH_DATABASE__SSLMODE") != "verify-full" or not env.get("VITALWATCH_DATABASE__SSLROOTCERT"):
            self.fail(label, None, "production must set VITALWATCH_DATABASE__SSLMODE=verify-full and VITALWATCH_DATABASE__SSLROOTCERT")
        if env.get("VITALWATCH_BUS__SECURITY_PROTOCOL", "").lower() not in ("ssl", "sasl_ssl"):
            self.fail(label, None, "production must set VITALWATCH_BUS__SECURITY_PROTOCOL=ssl or sasl_ssl (Kafka over TLS)")


def is_default_deny(p: dict) -> bool:
    spec = p.get("spec") or {}
    return (
        not (spec.get("podSelector") or {})
        and {"Ingress", "Egress"} <= set(spec.get("policyTypes") or [])
        and not spec.get("ingress")
        and not spec.get("egress")
    )


def policy_types(p: dict) -> set[str]:
    spec = p.get("spec") or {}
    types = spec.get("policyTypes")
    if types:
        return set(types)
    return {"Ingress"} | ({"Egress"} if spec.get("egress") else set())


def pod_labels(w: dict) -> dict:
    path = POD_SPEC_PATHS[w["kind"]][:-1] + ("metadata", "labels")
    return dig(w, *path) or {}


def selects(selector: dict | None, labels: dict) -> bool:
    """Label-selector semantics (matchLabels and matchExpressions); {} selects every pod."""
    selector = selector or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e.get("key"), e.get("operator"), set(e.get("values") or [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def peer_is_everyone(peer: dict) -> bool:
    """A `from`/`to` entry that matches any source: {} selectors, or a /0 ipBlock."""
    if "ipBlock" in peer:
        return str(dig(peer, "ipBlock", "cidr")).endswith("/0")
    ns, pod = peer.get("namespaceSelector"), peer.get("podSelector")
    if ns is not None and not ns:
        return pod is None or not pod
    return False


def rule_ports(rule: dict, workload: dict | None) -> set[int] | None:
    """The numeric ports of a rule (named ports resolved on `workload`); None: every port."""
    ports = rule.get("ports")
    if not ports:
        return None
    named = {}
    for c in containers(pod_spec(workload) if workload else None):
        for cp in c.get("ports") or []:
            if cp.get("name"):
                named[cp["name"]] = cp.get("containerPort")
    out = set()
    for p in ports:
        port = p.get("port")
        if port is None:
            return None
        if isinstance(port, str):
            if port not in named:
                continue
            port = named[port]
        end = p.get("endPort") or port
        out |= set(range(int(port), int(end) + 1))
    return out


def pod_spec(doc: dict) -> dict | None:
    path = POD_SPEC_PATHS.get(doc.get("kind"))
    return dig(doc, *path) if path else None


def containers(spec: dict | None) -> list[dict]:
    if not spec:
        return []
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kubernetes-version", required=True)
    ap.add_argument(
        "--config-rs",
        required=True,
        type=Path,
        action="append",
        help="a Rust file with configuration structs; repeat for every file of the key tree",
    )
    ap.add_argument("--keda-schema", required=True, type=Path)
    ap.add_argument("files", nargs="+", metavar="LABEL=FILE")
    args = ap.parse_args()

    version = bundled_schema_version(args.kubernetes_version)
    checker = Checker(version, ConfigKeys("\n".join(p.read_text() for p in args.config_rs)), KedaValidator(args.keda_schema, version))
    for item in args.files:
        label, sep, file = item.partition("=")
        if not sep:
            label, file = Path(item).name, item
        checker.check_file(label, Path(file))
    if checker.failures:
        print(f"FAILED: {checker.failures} error(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
