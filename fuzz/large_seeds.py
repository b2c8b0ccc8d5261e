#!/usr/bin/env python3
"""Writes seeds at the payload size limit (256 KiB) for every fuzz target into
OUTDIR/<target>/ (scripts/fuzz.sh makes them at each run, so the committed
corpus stays small). libFuzzer grows inputs slowly from small seeds; these
give it large ones from the start, in the shapes that stress a decoder: many
readings, long names and strings, escapes, blood-pressure grouping.

    python3 fuzz/large_seeds.py OUTDIR
"""

import json
import os
import struct
import sys

LIMIT = 256 * 1024
T = 1795694400 - 600  # 10 minutes before the fuzz clock (fuzz/src/lib.rs)
ISO = "2026-11-26T11:50:00Z"


def fill(make, limit=LIMIT - 64):
    """The largest n (doubling, then bisecting) with len(make(n)) <= limit."""
    lo, hi = 1, 2
    while len(make(hi)) <= limit:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if len(make(mid)) <= limit:
            lo = mid
        else:
            hi = mid
    return make(lo)


def dumps(v):
    return json.dumps(v, separators=(",", ":")).encode()


def json_seeds():
    bp = {"type": "blood_pressure", "time": ISO, "unit": "mmHg", "systolic": 142, "diastolic": 91, "pulse": 77}
    yield "many-readings", fill(lambda n: dumps({"msg_id": "big", "readings": [bp] * n}))
    yield "max-readings", dumps({"msg_id": "max", "readings": [bp] * 1000})
    # Escapes: the serde path, owned strings.
    yield "escaped-msg-id", fill(lambda n: b'{"msg_id":"' + b"\\u00e9" * n + b'","readings":[' + dumps(bp) + b"]}")
    yield "long-unit", fill(
        lambda n: dumps({"readings": [{"type": "spo2", "time": ISO, "unit": "%" * n, "value": 97}]})
    )
    yield "deep-nesting", fill(lambda n: b'{"readings":[{"type":"spo2","value":' + b"[" * n + b"]" * n + b"}]}")


def senml_seeds():
    # Defect 4 of issue #12: a long base name, resolved for every record.
    yield "long-base-name", fill(
        lambda n: dumps([{"bn": "urn:dev:" + "a" * (LIMIT // 2), "bt": T, "n": "spo2", "u": "%", "v": 97}]
                        + [{"n": "spo2", "v": 97}] * n)
    )
    # Blood-pressure grouping: every systolic at its own time.
    yield "bp-grouping", fill(
        lambda n: dumps([{"bn": "d:", "bt": T, "bu": "mmHg"}]
                        + [r for i in range(n) for r in ({"n": "sys", "v": 120, "t": i}, {"n": "dia", "v": 80, "t": i})])
    )
    yield "pulses", fill(
        lambda n: dumps([{"bn": "d:", "bt": T, "n": "sys", "v": 120, "u": "mmHg"}]
                        + [{"n": "pulse", "v": 60, "t": i} for i in range(n)])
    )
    # A base unit with an escape (so decoded into an owned string), inherited by every record.
    yield "escaped-base-unit", fill(
        lambda n: b'[{"bn":"d:x","bt":%d,"bu":"\\u006d' % T + b"m" * (LIMIT // 2) + b'"}' + b",{}" * n + b"]"
    )


def fhir_seeds():
    def obs(i):
        return {"resource": {"resourceType": "Observation", "status": "final",
                             "subject": {"reference": "Patient/p1"},
                             "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
                             "effectiveDateTime": ISO,
                             "component": [
                                 {"code": {"coding": [{"code": "8480-6"}]}, "valueQuantity": {"value": 120 + i % 9, "code": "mm[Hg]"}},
                                 {"code": {"coding": [{"code": "8462-4"}]}, "valueQuantity": {"value": 80, "code": "mm[Hg]"}}]}}
    yield "bundle", fill(lambda n: dumps({"resourceType": "Bundle", "id": "b", "entry": [obs(i) for i in range(n)]}))
    yield "many-codings", fill(
        lambda n: dumps({"resourceType": "Observation", "code": {"coding": [{"code": "0-%d" % i} for i in range(n)]},
                         "effectiveDateTime": ISO, "valueQuantity": {"value": 1, "code": "/min"}})
    )


def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num, wire, payload):
    return varint(num << 3 | wire) + payload


def ld(num, data):
    return field(num, 2, varint(len(data)) + data)


def reading(i):
    # vitalwatch.v1.Reading: type=1, time_unix_micros=2 (sfixed64), unit=3, value=4 (see schemas/proto).
    return (field(1, 0, varint(3)) + field(2, 1, struct.pack("<q", T * 1_000_000 + i)) + ld(3, b"%")
            + field(4, 1, struct.pack("<d", 97.0)))


def proto_seeds():
    # vitalwatch.v1.ReadingBatch: msg_id=1, readings=2, patient_id=3 (see schemas/proto).
    yield "many-readings", fill(lambda n: ld(1, b"m") + b"".join(ld(2, reading(i)) for i in range(n)))
    yield "empty-readings", fill(lambda n: ld(2, b"") * n)
    yield "long-msg-id", fill(lambda n: ld(1, b"x" * n) + ld(2, reading(0)))


def main():
    out = sys.argv[1]
    seeds = {"json": list(json_seeds()), "senml": list(senml_seeds()), "fhir": list(fhir_seeds()),
             "proto": list(proto_seeds())}
    # The process target: one selector byte (device d1's readings topic in the format), then the payload.
    selector = {"json": 0, "senml": 1, "fhir": 2, "proto": 3}
    seeds["process"] = [(f"{fmt}-{name}", bytes([selector[fmt]]) + data)
                        for fmt, items in seeds.items() for name, data in items]
    for target, items in seeds.items():
        os.makedirs(os.path.join(out, target), exist_ok=True)
        for name, data in items:
            with open(os.path.join(out, target, "large-" + name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
