"""The step contract as the fake steps (``tests/client/fake_step.py``,
``tests/local/durable_step.py``) keep it: the arguments of ``foldstack step msa|predict``,
outputs in ``<scratch>/<run_id>/<step>/<target>/``, and ``<step>.done.json`` (each output's
sha256) written last; a target whose done record is valid is skipped.

Standard library only: the fake steps start in milliseconds, so they import no foldstack.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os

_OPTIONS = ("--run-id", "--target", "--scratch", "--db", "--msa-tool", "--cache", "--weights", "--engine", "--preset",
            "--skip")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("step")
    for opt in _OPTIONS:
        parser.add_argument(opt, default="")
    return parser.parse_args(argv)


def target_dir(args: argparse.Namespace, target: str) -> str:
    return os.path.join(args.scratch, args.run_id, args.step, target)


def done_is_valid(base: str, step: str) -> bool:
    """The done record is there and every output it lists has its recorded sha256."""
    try:
        with open(os.path.join(base, f"{step}.done.json")) as fh:
            outputs = json.load(fh)["outputs"]
        for rel, sha in outputs.items():
            with open(os.path.join(base, rel), "rb") as fh:
                if hashlib.sha256(fh.read()).hexdigest() != sha:
                    return False
        return True
    except (OSError, ValueError, KeyError):
        return False


def write_outputs(base: str, step: str, files: dict[str, bytes], **record: object) -> None:
    """Write ``files`` under ``base``, then the done record (``record`` adds fields to it)."""
    os.makedirs(base, exist_ok=True)
    outputs = {}
    for rel, data in files.items():
        with open(os.path.join(base, rel), "wb") as fh:
            fh.write(data)
        outputs[rel] = hashlib.sha256(data).hexdigest()
    with open(os.path.join(base, f"{step}.done.json"), "w") as fh:
        json.dump({"step": step, **record, "outputs": outputs, "tool_versions": {"fake": "1"}, "timings": {}}, fh)


def batch_targets(args: argparse.Namespace) -> list[str]:
    """The targets this job works on: predict's batch (``--target a,b,c``) less ``--skip``
    (the JSON list of targets whose MSA failed), or msa's one target."""
    if args.step != "predict":
        return [args.target]
    skip = set(json.loads(args.skip or "[]"))
    return [t for t in args.target.split(",") if t not in skip]

