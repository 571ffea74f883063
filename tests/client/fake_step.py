"""A stand-in for `foldstack step msa|predict` (what a Batch job runs), for client tests:
writes the step's outputs and done-file the way the real steps do, in milliseconds.

A target whose id starts with `slow` sleeps (to be cancelled); `boom` fails predict with a
plain line on stderr, `coded` fails it the way the real steps report a contract failure
(exit 2, a `[code]` in the last line). FAKE_STEP_SLEEP=<seconds> makes every target take
that long (for progress displays).

Like the real steps, a target whose done record is valid is skipped (a retry reuses it).
FOLDSTACK_TEST_COUNTER_DIR: each target computed appends `start` to
`<dir>/<step>-<target>`; FOLDSTACK_TEST_FAIL=<step>:<target>[,...]: those fail like `boom`."""

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: tests.fake_step_contract
from tests.fake_step_contract import batch_targets, done_is_valid, parse_args, target_dir, write_outputs  # noqa: E402

args = parse_args()


def fake(target):
    """One target; predict takes a batch (`--target a,b,c`) and writes each as its own."""
    base = target_dir(args, target)
    if done_is_valid(base, args.step):
        print(f"fake {args.step}: {target} is already done", flush=True)
        return
    counters = os.environ.get("FOLDSTACK_TEST_COUNTER_DIR")
    if counters:
        with open(os.path.join(counters, f"{args.step}-{target}"), "a") as fh:
            fh.write("start\n")
    print(f"fake {args.step} for target {target} of run {args.run_id}", flush=True)
    if f"{args.step}:{target}" in os.environ.get("FOLDSTACK_TEST_FAIL", "").split(","):
        print("out of luck", file=sys.stderr, flush=True)
        sys.exit(1)
    if target.startswith("slow"):
        time.sleep(60)
    time.sleep(float(os.environ.get("FAKE_STEP_SLEEP") or 0))
    if args.step == "predict" and target.startswith("boom"):
        print("out of luck", file=sys.stderr, flush=True)
        sys.exit(1)
    if args.step == "predict" and target.startswith("coded"):
        print(f"[12:00:00] foldstack step predict [{target}] FAILED (bad input, exit 2): [weights_missing] "
              "no esmfold weights in /w/esmfold", file=sys.stderr, flush=True)
        sys.exit(2)

    if args.step == "msa":
        files = {"msa.a3m": b">q\nMKT\n", "features.json": b'{"tool": "fake"}'}
    else:
        plddt = 40.0 + len(target)
        files = {
            "ranked_0.pdb": f"REMARK fake structure of {target}\nEND\n".encode(),
            "metrics.json": json.dumps({"mean_plddt": plddt, "engine": args.engine}).encode(),
        }
    write_outputs(base, args.step, files)


for one in batch_targets(args):
    fake(one)
print("done", flush=True)
