"""The toy's Batch step (jobs.yaml ``toy_work``): ``python -m foldstack_toy.steps work
--run-id R --item I --scratch S`` reads ``<S>/<R>/input/<I>.dat`` (Stage Inputs put it
there) and writes ``<S>/<R>/out/<I>.json``. Exit codes are the step contract's
(foldstack.steps.common): 0 done, 2 bad input."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

from foldstack.core.errors import BadInputError
from foldstack.steps.common import run_cli


def work(scratch: Path, run_id: str, item: str) -> Path:
    source = scratch / run_id / "input" / f"{item}.dat"
    if not source.is_file():
        raise BadInputError(f"{source} is not there: Stage Inputs writes it")
    data = source.read_bytes()
    result = {"item": item, "bytes": len(data), "lines": data.count(b"\n"),
              "sha256": hashlib.sha256(data).hexdigest(),
              # provenance: which job definition (ARN with revision) computed it
              "job_definition": os.environ.get("FOLDSTACK_JOB_DEFINITION", "")}
    dest = scratch / run_id / "out" / f"{item}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(".json.partial")  # written whole, then renamed: never half a file
    partial.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    partial.replace(dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="foldstack_toy.steps", description="The toy workflow's Batch step.")
    sub = parser.add_subparsers(dest="step", required=True)
    one = sub.add_parser("work", help="Size, lines and sha256 of one staged input file.")
    one.add_argument("--run-id", required=True)
    one.add_argument("--item", required=True)
    one.add_argument("--scratch", required=True, type=Path)
    args = parser.parse_args(argv)
    return run_cli("toy_work", args.item, lambda: work(args.scratch, args.run_id, args.item))


if __name__ == "__main__":
    sys.exit(main())
