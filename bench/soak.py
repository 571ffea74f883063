"""The full fault-injected soak (docs/reliability.md): 1,000 runs of the rendered fold
workflow on the local engine with seeded faults; prints the counts and exits non-zero if
any invariant was violated.

    .venv/bin/python bench/soak.py [--runs 1000] [--seed 20240601] [--concurrency 16]
                                   [--bulk-runs 5] [--json report.json] [--keep DIR]

Run by hand; not part of `make test` (which runs a 60-run soak, tests/reliability/
test_soak.py). See tests/reliability/soak_harness.py for the faults and invariants.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    from tests.reliability.soak_harness import SoakConfig, run_soak

    defaults = SoakConfig(runs=1000, bulk_runs=5)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(SoakConfig):
        flag = "--" + f.name.replace("_", "-")
        value = getattr(defaults, f.name)
        if isinstance(value, bool):
            parser.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=value)
        else:
            parser.add_argument(flag, type=type(value), default=value)
    parser.add_argument("--json", type=Path, help="write the summary (and per-run outcomes) here")
    parser.add_argument("--keep", type=Path, help="work directory to keep (default: a temp dir, removed)")
    args = parser.parse_args()
    cfg = SoakConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SoakConfig)})

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="foldstack-soak-"))
    print(f"soak: {cfg.runs} runs, seed {cfg.seed}, concurrency {cfg.concurrency}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, work dir {workdir}", flush=True)
    t0 = time.monotonic()
    try:
        report = run_soak(cfg, workdir, progress=True)
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report.format())
    print(f"wall time: {time.monotonic() - t0:.1f} s")
    if args.json:
        body = {"summary": report.summary(), "config": report.config,
                "outcomes": [dataclasses.asdict(o) for o in report.outcomes], "violations": report.violations}
        args.json.write_text(json.dumps(body, indent=2, default=str))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
