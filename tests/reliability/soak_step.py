"""A stand-in for `foldstack step msa|predict` for the fault-injected soak.

Standard library only, so it can run as ``python -I -S soak_step.py <step> ...`` and a
Batch attempt costs milliseconds. It honours the step contract of
``foldstack.steps.common`` (the step contract):

* reads the staged target FASTA (``<scratch>/<run_id>/input/targets/<target>.fasta``;
  missing -> exit 2, bad input);
* if ``<scratch>/<run_id>/<step>/<target>/<step>.done.json`` is valid (every listed output
  present with its sha256), exits 0 without recomputing;
* writes into ``<scratch>/<run_id>/<step>/.<target>.attempt-<unique>/``, writes
  ``<step>.done.json`` (step, run_id, target, outputs with sha256) last, and renames the
  directory into place.

Its outputs are a pure function of the step, the target's sequence and the step's
parameters (:func:`expected_outputs`), never of the run id or the attempt, so the soak can
check every published byte, and an output reused from another run (an MSA cache) is
byte-identical.

Faults decided inside the step (seeded, so the injector can count them):
``SOAK_SEED`` plus ``SOAK_MIDWAY_CRASH_RATE`` -- write part of the outputs into the attempt
dir, then die without cleaning up (``os._exit(1)``, as a SIGKILL would) -- and
``SOAK_OOM_RATE`` (predict only) -- exit 3, out of memory.

Per-target failures (``SOAK_BAD_TARGET_RATE``, off by default): a target drawn bad (by seed,
run, step and target: on every attempt, so a retry does not fix it) is bad input as the
real steps report it: its msa job exits 2; in a predict batch it gets a failure record
(``predict.failed.json``, code ``bad_input``) and the batch's other targets go on (exit 0).
Predict skips the targets its ``--skip`` names (their MSA failed), as the real step does.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import struct
import sys
import uuid
import zipfile

EXIT_BAD_INPUT = 2
EXIT_OUT_OF_MEMORY = 3
_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_TARGET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _npy(dtype: str, shape: tuple[int, ...], data: bytes) -> bytes:
    """One array in NumPy's .npy format (version 1.0), written without numpy."""
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode("latin1")
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"  # the whole preamble a multiple of 64
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


def features_npz(length: int, rows: int) -> bytes:
    """A features.npz the MSA cache lookup (and Predict) accepts: AlphaFold's monomer
    features for `length` residues and `rows` MSA rows, zeros but for the sizes.
    Deterministic bytes, so a cached copy is byte-identical too."""
    def ints(shape: tuple[int, ...], value: int = 0) -> bytes:
        count = 1
        for n in shape:
            count *= n
        return _npy("<i4", shape, struct.pack(f"<{count}i", *([value] * count)))

    def zeros(shape: tuple[int, ...]) -> bytes:
        count = 1
        for n in shape:
            count *= n
        return _npy("<f4", shape, bytes(4 * count))

    arrays = {
        "aatype": ints((length, 21)), "between_segment_residues": ints((length,)),
        "residue_index": _npy("<i4", (length,), struct.pack(f"<{length}i", *range(length))),
        "seq_length": ints((length,), length), "num_alignments": ints((length,), rows),
        "msa": ints((rows, length)), "deletion_matrix_int": ints((rows, length)),
        "template_aatype": zeros((1, length, 22)), "template_all_atom_masks": zeros((1, length, 37)),
        "template_all_atom_positions": zeros((1, length, 37, 3)),
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in arrays.items():
            zf.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), data,
                        compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def expected_outputs(step: str, sequence: str, params: dict[str, str]) -> dict[str, bytes]:
    """The step's outputs (relative path -> bytes) for one target."""
    seq_sha = _sha(sequence.encode())
    if step == "msa":
        tool = params.get("msa_tool") or "jackhmmer"
        rows = [sequence] + [sequence[i:] + sequence[:i] for i in (1, 2, 3)]
        a3m = "".join(f">hit{i}\n{row}\n" for i, row in enumerate(rows)).encode()
        features = json.dumps({"tool": tool, "sequence_sha256": seq_sha, "rows": len(rows),
                               "databases": [{"name": "uniref90", "version": "2024_01"}]}, sort_keys=True)
        return {"msa.a3m": a3m, "features.json": features.encode(),
                "features.npz": features_npz(len(sequence.replace(":", "")), len(rows))}
    if step == "predict":
        engine = params.get("engine") or "esmfold"
        preset = params.get("preset") or "monomer"
        plddt = 50 + int(seq_sha[:4], 16) % 50
        pdb = f"REMARK soak {engine} {preset} {seq_sha}\nATOM      1  CA  GLY A   1       0.000   0.000   0.000\nEND\n"
        metrics = {"mean_plddt": float(plddt), "engine": engine, "preset": preset, "length": len(sequence)}
        tsv = "".join(f"{i + 1}\t{plddt}\n" for i in range(min(len(sequence), 20)))
        return {"ranked_0.pdb": pdb.encode(), "metrics.json": json.dumps(metrics, sort_keys=True).encode(),
                "plddt.tsv": tsv.encode()}
    raise ValueError(f"unknown step {step!r}")


def draw(seed: str, *key: object) -> float:
    """A uniform [0, 1) number fixed by the seed and key (reproducible across processes)."""
    digest = hashlib.sha256("|".join(map(str, (seed, *key))).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


CHAIN_SEARCH = "msa-chains"  # the run-level chain search phase (the msa job, command overridden)


def step_fault(step: str, run_id: str, target: str, attempt: int, queue: str, environ=os.environ) -> str | None:
    """The fault this step attempt injects into itself: "midway_crash", "oom" or None.
    ``queue`` (the job queue's name) is part of the key, so a job resubmitted elsewhere (a
    larger size class after OOM, the on-demand fallback) draws afresh."""
    seed = environ.get("SOAK_SEED")
    if seed is None:
        return None
    key = (run_id, step, target, queue, attempt)
    if draw(seed, "midway", *key) < float(environ.get("SOAK_MIDWAY_CRASH_RATE", "0")):
        return "midway_crash"
    if step == "predict" and draw(seed, "oom", *key) < float(environ.get("SOAK_OOM_RATE", "0")):
        return "oom"
    return None


def bad_target(step: str, run_id: str, target: str, environ=os.environ) -> bool:
    """Whether `target` is bad input for `step` in this run (``SOAK_BAD_TARGET_RATE``)."""
    seed, rate = environ.get("SOAK_SEED"), float(environ.get("SOAK_BAD_TARGET_RATE", "0"))
    return seed is not None and rate > 0 and draw(seed, "bad", run_id, step, target) < rate


def write_failure(scratch: str, run_id: str, target: str) -> None:
    """A predict target's failure record, as foldstack.steps.failures writes it."""
    folder = os.path.join(scratch, run_id, "predict", target)
    os.makedirs(folder, exist_ok=True)
    record = {"step": "predict", "run_id": run_id, "target": target, "code": "bad_input", "exit_code": 2,
              "message": "BadInputError: injected bad target (SOAK_BAD_TARGET_RATE)",
              "job_id": os.environ.get("AWS_BATCH_JOB_ID"), "log": os.environ.get("FOLDSTACK_JOB_LOG")}
    tmp = os.path.join(folder, f".predict.failed.json.{uuid.uuid4().hex[:12]}.tmp")
    with open(tmp, "w") as fh:
        json.dump(record, fh, sort_keys=True)
    os.replace(tmp, os.path.join(folder, "predict.failed.json"))


def _read_sequence(path: str) -> str:
    with open(path) as fh:
        lines = [ln.strip() for ln in fh if ln.strip()]
    if not lines or not lines[0].startswith(">") or sum(ln.startswith(">") for ln in lines) != 1:
        raise ValueError(f"{path}: expected exactly one FASTA record")
    return "".join(lines[1:])


def _valid_done(final_dir: str, step: str, run_id: str, target: str) -> bool:
    try:
        with open(os.path.join(final_dir, f"{step}.done.json")) as fh:
            done = json.load(fh)
        if (done.get("step"), done.get("run_id"), done.get("target")) != (step, run_id, target):
            return False
        for rel, digest in done["outputs"].items():
            with open(os.path.join(final_dir, rel), "rb") as fh:
                if _sha(fh.read()) != digest:
                    return False
        return bool(done["outputs"])
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        return False


def _options(argv: list[str]) -> tuple[str, dict[str, str]]:
    step, opts, i = argv[0], {}, 1
    while i < len(argv):
        if argv[i].startswith("--"):
            value = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("--") else ""
            opts[argv[i][2:].replace("-", "_")] = value
            i += 2 if value else 1
        else:
            i += 1
    return step, opts


def run_target(step: str, run_id: str, target: str, scratch: str, opts: dict[str, str],
               fault: str | None) -> int:
    """One target under the step contract; returns the exit code."""
    parent = os.path.join(scratch, run_id, step)
    final_dir = os.path.join(parent, target)
    if _valid_done(final_dir, step, run_id, target):
        print(f"{target}: already done", flush=True)
        return 0
    # Same order as foldstack.steps.common.run_step: the attempt dir first, then the body
    # (which reads the staged target FASTA).
    os.makedirs(parent, exist_ok=True)
    work = os.path.join(parent, f".{target}.attempt-{os.getpid()}-{uuid.uuid4().hex[:12]}")
    os.mkdir(work)
    try:
        try:
            sequence = _read_sequence(os.path.join(scratch, run_id, "input", "targets", f"{target}.fasta"))
        except (OSError, ValueError) as exc:
            print(f"bad input: {exc}", file=sys.stderr)
            shutil.rmtree(work, ignore_errors=True)
            return EXIT_BAD_INPUT
        outputs = expected_outputs(step, sequence, opts)
        for n, (rel, data) in enumerate(sorted(outputs.items())):
            with open(os.path.join(work, rel), "wb") as fh:
                if fault == "midway_crash" and n == 1:
                    fh.write(data[: len(data) // 2])
                    fh.flush()
                    print("crashing midway (injected)", file=sys.stderr, flush=True)
                    os._exit(1)  # like SIGKILL: no cleanup, the attempt dir stays behind
                fh.write(data)
        done = {"step": step, "run_id": run_id, "target": target,
                "outputs": {rel: _sha(data) for rel, data in outputs.items()},
                "tool_versions": {"soak": "1"}, "timings": {"total": 0.0}}
        with open(os.path.join(work, f"{step}.done.json"), "w") as fh:
            json.dump(done, fh, sort_keys=True)
        if os.path.exists(final_dir):
            if _valid_done(final_dir, step, run_id, target):
                shutil.rmtree(work, ignore_errors=True)
                return 0
            stale = os.path.join(parent, f".{target}.stale-{uuid.uuid4().hex[:12]}")
            os.rename(final_dir, stale)
            shutil.rmtree(stale, ignore_errors=True)
        os.rename(work, final_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    print(f"{target}: done", flush=True)
    return 0


def main(argv: list[str]) -> int:
    step, opts = _options(argv)
    run_id, target_param, scratch = opts.get("run_id", ""), opts.get("target", ""), opts.get("scratch", "")
    # A batched predict job gets several targets, comma-separated (ids never contain ',').
    targets = target_param.split(",")
    attempt = int(os.environ.get("AWS_BATCH_JOB_ATTEMPT", "1"))
    print(f"soak step {step} targets={targets} run={run_id} attempt={attempt}", flush=True)
    if step not in ("msa", "predict", CHAIN_SEARCH) or not _ID.fullmatch(run_id) or not scratch or \
            (step != CHAIN_SEARCH and not all(_TARGET.fullmatch(t) for t in targets)):
        print(f"bad input: step={step!r} run_id={run_id!r} target={target_param!r} scratch={scratch!r}",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    # keyed by the job definition it runs under, as the harness counts it (the chain search
    # phase is the msa job with its command overridden)
    fault = step_fault("msa" if step == CHAIN_SEARCH else step, run_id, target_param, attempt,
                       os.environ.get("AWS_BATCH_JQ_NAME", ""))
    if step == CHAIN_SEARCH:
        # The run's chain search phase only fills a cache the per-target msa jobs may use; the
        # fake msa step computes its outputs itself, so this phase has nothing to store. A
        # crash here is injected like any other (the workflow must shrug it off).
        if fault == "midway_crash":  # nothing written yet: the same fault as midway in msa/predict
            print("crashing midway (injected)", file=sys.stderr, flush=True)
            os._exit(1)
        print(f"chain search shard {opts.get('shard')}/{opts.get('shards')}: nothing to store", flush=True)
        return 0
    if fault == "oom":
        print("out of memory (injected)", file=sys.stderr, flush=True)
        return EXIT_OUT_OF_MEMORY
    skip = set(json.loads(opts.get("skip") or "[]")) if step == "predict" else set()
    for target in targets:
        if target in skip:
            continue
        if bad_target(step, run_id, target):
            print(f"{target}: bad input (injected)", file=sys.stderr, flush=True)
            if step != "predict":
                return EXIT_BAD_INPUT
            write_failure(scratch, run_id, target)
            continue
        code = run_target(step, run_id, target, scratch, opts, fault)
        if code:
            return code
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
