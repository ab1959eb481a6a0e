#!/usr/bin/env python3
"""Checks config/edgeferry.schema.json with an independent validator (python3-jsonschema).

The example configs must be valid. Every bad config in --bad-dir carries a sidecar
NAME.expected whose first line says "# schema: reject" (the schema alone must reject it) or
"# schema: accept" (only edgeferry's own checks catch it: files, environment, duplicates,
cross-key rules); both directions are checked, so schema and code cannot drift apart
unnoticed.

usage: check_schema.py SCHEMA --valid FILE... --bad-dir DIR
"""
import argparse
import json
import os
import sys

import jsonschema


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("schema")
    ap.add_argument("--valid", nargs="+", default=[])
    ap.add_argument("--bad-dir", required=True)
    args = ap.parse_args()

    schema = load(args.schema)
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    failures = []

    for path in args.valid:
        errors = sorted(validator.iter_errors(load(path)), key=lambda e: list(e.path))
        for e in errors:
            failures.append(f"{path}: example rejected by the schema at "
                            f"/{'/'.join(map(str, e.path))}: {e.message}")

    cases = sorted(f for f in os.listdir(args.bad_dir) if f.endswith(".json"))
    rejected = accepted = 0
    for name in cases:
        path = os.path.join(args.bad_dir, name)
        sidecar = path[: -len(".json")] + ".expected"
        with open(sidecar, encoding="utf-8") as f:
            first = f.readline().strip()
        if first not in ("# schema: reject", "# schema: accept"):
            failures.append(f"{sidecar}: first line must be '# schema: reject' or "
                            f"'# schema: accept', found {first!r}")
            continue
        want_reject = first.endswith("reject")
        try:
            doc = load(path)
            errors = list(validator.iter_errors(doc))
            why = errors[0].message if errors else ""
            rejects = bool(errors)
        except (ValueError, UnicodeDecodeError) as e:  # not JSON at all
            rejects, why = True, f"not JSON: {e}"
        if rejects:
            rejected += 1
        else:
            accepted += 1
        if rejects != want_reject:
            failures.append(f"{name}: expected the schema to {'reject' if want_reject else 'accept'} "
                            f"it, but it {'rejects' if rejects else 'accepts'} it {why}")

    print(f"{len(args.valid)} examples, {len(cases)} bad configs: schema rejects {rejected}, "
          f"leaves {accepted} to edgeferry's own checks")
    for f in failures:
        print("FAIL", f)
    if len(cases) < 30:
        print(f"FAIL only {len(cases)} bad configs in {args.bad_dir}; at least 30 expected")
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
