"""A stand-in for `foldstack step msa|predict` for the local durability tests (starts in
milliseconds; numpy only for the features file), honouring the step contract: outputs in
``<scratch>/<run_id>/<step>/<target>/``, ``<step>.done.json`` (with each output's sha256)
written last; a valid done record means the target is skipped.

Test hooks (environment):
* ``FOLDSTACK_TEST_COUNTER_DIR``: each run of a target appends ``start <pid>`` (then
  ``done``) to ``<dir>/<step>-<target>``, so a test counts what was (re)computed;
* ``FOLDSTACK_TEST_SLEEP=<step>:<target>[:<seconds>]`` (``*`` for any target;
  comma-separated): sleep there (default 120 s) after ``start``, so a test can act
  while the job runs;
* ``FOLDSTACK_TEST_FAIL=<step>:<target>[,...]``: that target fails (exit 1) where its
  outputs would be written, after the targets before it in the batch were written.
* ``FOLDSTACK_TEST_BAD=<step>:<target>[,...]``: that target is bad input, as the real step
  reports it: an msa job exits 2; in a predict batch the target gets a failure record
  (``predict.failed.json``, code ``bad_input``) and the others go on (the job exits 0).
* ``FOLDSTACK_TEST_KILL=<step>:<size class>``: the job kills itself (SIGKILL, as the kernel's
  OOM killer does: exit 137) when it runs on that size class.

The MSA outputs (a features file with AlphaFold's feature shapes for the staged
sequence, a ``fake@v1`` database in features.json) are what the MSA cache accepts."""

import io
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: tests.fake_step_contract
from tests.fake_step_contract import batch_targets, done_is_valid, parse_args, target_dir, write_outputs  # noqa: E402

args = parse_args()


def note(target, text):
    directory = os.environ.get("FOLDSTACK_TEST_COUNTER_DIR")
    if directory:
        with open(os.path.join(directory, f"{args.step}-{target}"), "a") as fh:
            fh.write(text + "\n")


def sleep_for(target):
    for spec in filter(None, os.environ.get("FOLDSTACK_TEST_SLEEP", "").split(",")):
        step, who, *seconds = spec.split(":")
        if step == args.step and who in ("*", target):
            return float(seconds[0]) if seconds else 120.0
    return 0.0


def features(target):
    """A features file Predict (and the MSA cache) accepts, for the staged sequence."""
    import numpy as np

    path = os.path.join(args.scratch, args.run_id, "input", "targets", f"{target}.fasta")
    with open(path) as fh:
        n = len("".join(line.strip() for line in fh if not line.startswith(">")).replace(":", ""))
    arrays = {"aatype": np.zeros((n, 21)), "between_segment_residues": np.zeros(n), "residue_index": np.arange(n),
              "seq_length": np.full(n, n), "num_alignments": np.ones(n), "msa": np.zeros((1, n)),
              "deletion_matrix_int": np.zeros((1, n)), "template_aatype": np.zeros((0, n, 22)),
              "template_all_atom_masks": np.zeros((0, n, 37)), "template_all_atom_positions": np.zeros((0, n, 37, 3))}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


targets = batch_targets(args)
for target in targets:
    base = target_dir(args, target)
    if done_is_valid(base, args.step):
        continue
    note(target, f"start {os.getpid()}")
delay = max(sleep_for(t) for t in targets)
if delay:
    time.sleep(delay)
failing = set(filter(None, os.environ.get("FOLDSTACK_TEST_FAIL", "").split(",")))
bad = set(filter(None, os.environ.get("FOLDSTACK_TEST_BAD", "").split(",")))
if f"{args.step}:{os.environ.get('FOLDSTACK_SIZE_CLASS', '')}" in os.environ.get("FOLDSTACK_TEST_KILL", "").split(","):
    os.kill(os.getpid(), signal.SIGKILL)
for target in targets:
    base = target_dir(args, target)
    if done_is_valid(base, args.step):
        continue
    if f"{args.step}:{target}" in bad:
        note(target, "bad")
        if args.step == "msa":
            raise SystemExit(2)
        os.makedirs(base, exist_ok=True)
        with open(os.path.join(base, "predict.failed.json"), "w") as fh:
            json.dump({"step": "predict", "run_id": args.run_id, "target": target, "code": "bad_input",
                       "message": "BadInputError: injected bad input", "job_id": os.environ.get("AWS_BATCH_JOB_ID"),
                       "log": os.environ.get("FOLDSTACK_JOB_LOG")}, fh)
        continue
    if f"{args.step}:{target}" in failing:
        note(target, "failed")
        raise SystemExit(f"injected failure of {args.step} for {target}")
    if args.step == "msa":
        provenance = {"tool": "fake", "databases": [{"name": "fake", "version": "v1"}]}
        files = {"msa.a3m": f">{target}\nMKT\n".encode(), "features.npz": features(target),
                 "features.json": json.dumps(provenance).encode()}
    else:
        files = {"ranked_0.pdb": f"REMARK fake structure of {target}\nEND\n".encode(),
                 "metrics.json": json.dumps({"mean_plddt": 50.0, "engine": args.engine}).encode()}
    write_outputs(base, args.step, files, run_id=args.run_id, target=target)
    note(target, "done")
