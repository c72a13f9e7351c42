"""The long fuzz run: schemathesis against the live skydriver and WMS, far more cases than CI's bounded run.

    python bench/fuzz_long.py                      # 500 cases per operation, a fresh seed, every role
    python bench/fuzz_long.py --examples 2000 --seed 1234 -k skydriver   # more, reproducible, one service
    python bench/fuzz_long.py --examples 100 --first-role                # each route with its first role only

It runs the CI suite (tests/fuzz/, see tests/fuzz/harness.py) with a bigger budget: each operation of both live
OpenAPI documents (`GET /schema/openapi`, `GET /v1/schema/openapi`) gets positive and negative cases (a share of
the positive ones made to pass the cross-field rules too, a share on existing objects) with a token for every role
the route allows. Every answer must be documented (status, content type, body) and no answer may be a 5xx. It needs
what the test suite needs (scripts/dev-services: RabbitMQ with its management API; the MongoDB wire server is
started for the run) and prints a table: cases, answers by status, seconds, and each failure's reproduction
(a curl command). The seed is printed first: `--seed` repeats its generated cases. Expect ~15 min at the default
budget on two cores; it exits non-zero when something failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=500, help="cases per operation (positive and negative)")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: a fresh one, printed)")
    parser.add_argument("--first-role", action="store_true", help="fuzz each route with its first allowed role only")
    parser.add_argument("--shrink", action="store_true", help="shrink a failing case to a minimal one (slow)")
    parser.add_argument("-k", default=None, help="pytest -k expression, e.g. 'wms' or 'scan and POST'")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    print(f"fuzz: {args.examples} cases per operation, seed {seed} (repeat: --seed {seed})", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "outcomes.jsonl"
        env = {
            **os.environ,
            "FUZZ_MAX_EXAMPLES": str(args.examples),
            "FUZZ_SEED": str(seed),
            "FUZZ_ALL_ROLES": "" if args.first_role else "1",
            "FUZZ_REPORT": str(report),
            "FUZZ_SHRINK": "1" if args.shrink else "",
        }
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--timeout=0", "tests/fuzz"]
        if args.k:
            command += ["-k", args.k]
        started = time.monotonic()
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        elapsed = time.monotonic() - started
        outcomes = [json.loads(line) for line in report.read_text().splitlines()] if report.exists() else []

    width = max((len(o["label"]) for o in outcomes), default=10)
    print(f"\n{'operation':<{width}}  {'cases':>6}  {'s':>6}  answers by status")
    for o in outcomes:
        statuses = " ".join(f"{code}:{n}" for code, n in sorted(o["statuses"].items(), key=lambda kv: int(kv[0])))
        flag = "  FAILED" if o["failure"] else ""
        print(f"{o['label']:<{width}}  {o['cases']:>6}  {o['seconds']:>6.1f}  {statuses}{flag}")
    failed = [o for o in outcomes if o["failure"]]
    total = sum(o["cases"] for o in outcomes)
    print(f"\n{len(outcomes)} operation runs, {total} cases, {len(failed)} failed, {elapsed:.0f} s, seed {seed}")
    for o in failed:
        print(f"\n=== {o['label']}\n{o['failure']}")
    if result.returncode != 0 and not failed:  # failed outside the fuzzing itself (a fixture, the services)
        print(result.stdout[-5000:], result.stderr[-5000:], sep="\n")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
