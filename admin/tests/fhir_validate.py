"""Validates FHIR R4 JSON files with an independent model library: PyPI
fhir.resources 6.1.0 (FHIR 4.0.1 models, pydantic v1). Usage:
    python fhir_validate.py FILE.json...
Prints one line per file; exits 1 if any file is not a valid R4 resource."""

import json
import sys

import fhir.resources
from fhir.resources import construct_fhir_element

assert fhir.resources.__fhir_version__ == "4.0.1", fhir.resources.__fhir_version__

failed = 0
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    kind = data.get("resourceType")
    try:
        construct_fhir_element(kind, data)
        print(f"OK {kind} {path}")
    except Exception as e:  # noqa: BLE001 - report every validation error
        failed += 1
        print(f"INVALID {kind} {path}: {e}")
sys.exit(1 if failed else 0)
