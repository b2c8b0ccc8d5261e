#!/usr/bin/env python3
"""Checks that the dashboards and alert rules in deploy/ only use metrics the code emits.

    python3 check_metrics.py --source ROOT [--rules FILE.yaml ...] [--dashboard FILE.json ...]

A renamed metric otherwise breaks a dashboard panel or, worse, silences an alert without
any error. Metric names come from the `counter!`/`gauge!`/`histogram!` macros in the Rust
sources (the `metrics` facade); histograms also provide `_bucket`, `_sum` and `_count`.
Rule files are also checked for shape: groups of rules, each with `alert`, `expr`, a
`severity` label of `page` or `ticket`, and a `summary` annotation.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

MACRO = re.compile(r'\b(counter|gauge|histogram)!\(\s*"(vitalwatch_[a-z0-9_]+)"', re.S)
USED = re.compile(r"\bvitalwatch_[a-z0-9_]+")
SEVERITIES = {"page", "ticket"}


def emitted(root: Path) -> tuple[set[str], set[str]]:
    names: set[str] = set()
    histograms: set[str] = set()
    for path in root.rglob("*.rs"):
        if "target" in path.parts:
            continue
        for kind, name in MACRO.findall(path.read_text(encoding="utf-8")):
            names.add(name)
            if kind == "histogram":
                histograms.add(name)
    return names, histograms


def known(name: str, names: set[str], histograms: set[str]) -> bool:
    if name in names:
        return True
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in histograms:
            return True
    return False


def exprs_of_dashboard(doc: object) -> list[str]:
    out: list[str] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k == "expr" and isinstance(v, str):
                out.append(v)
            else:
                out.extend(exprs_of_dashboard(v))
    elif isinstance(doc, list):
        for v in doc:
            out.extend(exprs_of_dashboard(v))
    return out


def rule_errors(doc: object) -> tuple[list[str], list[str]]:
    errors: list[str] = []
    exprs: list[str] = []
    groups = doc.get("groups") if isinstance(doc, dict) else None
    if not isinstance(groups, list) or not groups:
        return ["no `groups:` list"], exprs
    seen: set[str] = set()
    for g in groups:
        gname = g.get("name") if isinstance(g, dict) else None
        rules = g.get("rules") if isinstance(g, dict) else None
        if not gname or not isinstance(rules, list) or not rules:
            errors.append(f"group {gname!r}: needs a name and a non-empty `rules:` list")
            continue
        for r in rules:
            alert = r.get("alert")
            where = f"group {gname}, rule {alert!r}"
            if not alert or not isinstance(r.get("expr"), str):
                errors.append(f"{where}: needs `alert` and a string `expr`")
                continue
            if alert in seen:
                errors.append(f"{where}: duplicate alert name")
            seen.add(alert)
            exprs.append(r["expr"])
            if (r.get("labels") or {}).get("severity") not in SEVERITIES:
                errors.append(f"{where}: labels.severity must be one of {sorted(SEVERITIES)}")
            if not (r.get("annotations") or {}).get("summary"):
                errors.append(f"{where}: needs annotations.summary")
            extra = set(r) - {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
            if extra:
                errors.append(f"{where}: unknown keys {sorted(extra)}")
    return errors, exprs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, required=True, help="repository root (Rust sources)")
    ap.add_argument("--rules", type=Path, nargs="*", default=[])
    ap.add_argument("--dashboard", type=Path, nargs="*", default=[])
    args = ap.parse_args()

    names, histograms = emitted(args.source)
    if not names:
        print(f"ERROR no metric macros found under {args.source}")
        return 1
    failed = False
    for path in [*args.rules, *args.dashboard]:
        try:
            if path.suffix == ".json":
                errors, exprs = [], exprs_of_dashboard(json.loads(path.read_text(encoding="utf-8")))
            else:
                errors, exprs = rule_errors(yaml.safe_load(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, yaml.YAMLError) as e:
            errors, exprs = [f"unreadable: {e}"], []
        unknown = sorted({m for e in exprs for m in USED.findall(e) if not known(m, names, histograms)})
        errors += [f"uses {m}, which no code emits" for m in unknown]
        for e in errors:
            print(f"ERROR {path}: {e}")
        if errors:
            failed = True
        else:
            print(f"{path}: {len(exprs)} expressions, every metric emitted by the code")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
