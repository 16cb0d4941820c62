"""Tamper with a Closeout audit log the way an auditor testing it would (issue 18).

usage: audit_tamper.py MODE LOG

The hash algorithm is the one docs/audit.md documents: hash = SHA-256 of `prev` (64 hex chars)
followed by the canonical JSON (keys sorted, no whitespace) of the record without `hash` and
`sig`. Modes that "rewrite the head" recompute LOG.head the same way (unsigned: the attacker has
no signing key).
"""

import hashlib
import json
import sys

mode, path = sys.argv[1], sys.argv[2]
head_path = path + ".head"
with open(path, encoding="utf-8") as f:
    lines = [l.rstrip("\n") for l in f if l.strip()]


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def rechain(records):
    """Recompute prev and hash of every record; keep key and sig as they were."""
    prev = "0" * 64
    out = []
    for rec in records:
        rec = dict(rec)
        rec.pop("hash", None)
        sig = rec.pop("sig", None)
        rec["prev"] = prev
        h = hashlib.sha256((prev + canonical(rec)).encode()).hexdigest()
        rec["hash"] = h
        if sig is not None:
            rec["sig"] = sig
        out.append(rec)
        prev = h
    return out


def write(records, head=True):
    with open(path, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(canonical(rec) + "\n")
    if head and records:
        with open(head_path, "w", encoding="utf-8") as f:
            f.write(canonical({"hash": records[-1]["hash"], "seq": records[-1]["seq"]}) + "\n")


records = [json.loads(l) for l in lines]
if mode == "edit":  # change who acted in record 3, nothing recomputed
    lines[2] = lines[2].replace('"actor":"integration-test"', '"actor":"mallory"', 1)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
elif mode == "rechain":  # the same edit, then every hash and the head recomputed
    records[2]["actor"] = "mallory"
    write(rechain(records))
elif mode == "reorder":
    lines[1], lines[2] = lines[2], lines[1]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
elif mode == "delete":  # record 3 removed
    del lines[2]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
elif mode == "append":  # a forged approval after the last record, chained, head rewritten
    forged = dict(records[-1])
    forged.pop("sig", None)
    forged.pop("key", None)
    forged["seq"] = records[-1]["seq"] + 1
    forged["event"] = "run.approved"
    forged["actor"] = "mallory"
    forged["details"] = {"approver": "mallory"}
    write(rechain(records + [forged]))
elif mode == "truncate":  # the last two records cut, head rewritten to the new end
    write(records[:-2])
else:
    sys.exit("unknown mode " + mode)
