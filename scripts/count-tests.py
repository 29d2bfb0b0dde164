#!/usr/bin/env python3
"""Sums doctest's per-program counts from meson's testlog.json: prints "<passed> <failed>".
A test program that failed without a doctest summary (a crash, a timeout) counts as one failure."""
import json, re, sys

passed = failed = 0
with open(sys.argv[1]) as f:
    for line in f:
        t = json.loads(line)
        m = None
        for m in re.finditer(r"test cases:\s*(\d+) \|\s*(\d+) passed \|\s*(\d+) failed", t.get("stdout", "")):
            pass
        ok = t.get("result") == "OK"
        if m:
            passed += int(m.group(2))
            failed += int(m.group(3))
            if not ok and int(m.group(3)) == 0:
                failed += 1
        else:
            passed += 1 if ok else 0
            failed += 0 if ok else 1
print(passed, failed)
