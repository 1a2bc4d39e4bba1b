#!/usr/bin/env python3
"""Compare an Autobahn report with the committed expected verdicts.

  compare.py REPORT_DIR EXPECTED_JSON [--update]

EXPECTED_JSON maps case id -> [behavior, behaviorClose]. Any case whose
verdict differs, is missing, or is new fails the comparison (exit 1), so a
regression cannot land silently; an improvement is a reason to --update.
"""
import json
import os
import sys


def verdicts(report_dir):
    with open(os.path.join(report_dir, "index.json")) as f:
        index = json.load(f)
    (agent, cases), = index.items()
    return {case: [r["behavior"], r["behaviorClose"]] for case, r in cases.items()}


def key(case):
    return tuple(int(part) for part in case.split("."))


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 2:
        sys.exit(__doc__)
    report_dir, expected_path = args
    got = verdicts(report_dir)
    if "--update" in sys.argv:
        lines = [f'  "{case}": {json.dumps(got[case])}' for case in sorted(got, key=key)]
        with open(expected_path, "w") as f:
            f.write("{\n" + ",\n".join(lines) + "\n}\n")
        print(f"wrote {len(got)} verdicts to {expected_path}")
        return
    with open(expected_path) as f:
        expected = json.load(f)
    diffs = []
    for case in sorted(set(got) | set(expected), key=key):
        if got.get(case) != expected.get(case):
            diffs.append(f"  {case:10} expected {expected.get(case)}  got {got.get(case)}")
    ok = sum(1 for v in got.values() if v == ["OK", "OK"])
    print(f"autobahn: {len(got)} cases, {ok} fully OK, {len(diffs)} differ from {expected_path}")
    if diffs:
        print("\n".join(diffs))
        sys.exit(1)


main()
