#!/usr/bin/env python3
"""Reads presenced's /metrics with prometheus_client's own text-format parser.

    metrics_check.py snapshot URL FILE           parse a scrape, save its samples (JSON)
    metrics_check.py delta BEFORE AFTER CHECK... compare two snapshots

A CHECK is NAME{label=value,...}=N (the sample grew by exactly N) or NAME{...}>=N.
Prints "ok   CHECK" / "FAIL CHECK: why" lines for the interop suite's report_checks.
"""
import json
import re
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def snapshot(url, out):
    with urllib.request.urlopen(url, timeout=5) as r:
        ctype = r.headers.get("Content-Type", "")
        text = r.read().decode("utf-8")
    # The parser raises on anything that is not valid exposition text.
    samples = {}
    families = 0
    for family in text_string_to_metric_families(text):
        families += 1
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}"] = s.value
    print(f"ok   parsed {families} families, {len(samples)} samples")
    if ctype.startswith("text/plain") and "version=0.0.4" in ctype:
        print("ok   content type is the 0.0.4 text format")
    else:
        print(f"FAIL content type is the 0.0.4 text format: {ctype!r}")
    with open(out, "w") as f:
        json.dump(samples, f, indent=1, sort_keys=True)


def delta(before_file, after_file, checks):
    before = json.load(open(before_file))
    after = json.load(open(after_file))
    for check in checks:
        m = re.fullmatch(r"(.+?\{.*?\})(=|>=)(\d+(?:\.\d+)?)", check)
        if not m:
            print(f"FAIL {check}: not NAME{{labels}}=N or >=N")
            continue
        key, op, want = m.group(1), m.group(2), float(m.group(3))
        if key not in after:
            print(f"FAIL {check}: no such sample; have {sorted(k for k in after if k.startswith(key.split('{')[0]))}")
            continue
        grew = after[key] - before.get(key, 0.0)
        ok = grew == want if op == "=" else grew >= want
        print(f"{'ok  ' if ok else 'FAIL'} {check}" + ("" if ok else f": grew by {grew}"))


if __name__ == "__main__":
    if sys.argv[1] == "snapshot":
        snapshot(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "delta":
        delta(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        sys.exit(__doc__)
