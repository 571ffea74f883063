"""The step contract, in one place (docs/architecture.md, "Step contract").

Every step (`foldstack step <name> ...`) runs through :func:`run_step`:

* the final directory is ``<scratch>/<run_id>/<step>/<target>/``;
* if it already holds a valid ``<step>.done.json`` (every listed output present with
  the recorded sha256), the step exits 0 without recomputing (idempotent rerun);
* otherwise the step writes into a per-attempt temp dir
  ``<scratch>/<run_id>/<step>/.<target>.attempt-<unique>/``, writes ``<step>.done.json``
  there last, and renames the whole directory into place, so a retried or concurrent
  attempt never sees half-written files;
* a failing attempt removes its temp dir; nothing partial is ever promoted.

Exit codes (what Batch ``evaluateOnExit`` and the local engine read):
0 ok; 2 bad input (:class:`BadInputError`, never retried); 3 out of memory
(:class:`OutOfMemoryError`, or anything :func:`is_out_of_memory` recognises: the
workflow moves the target one size class up); 75 inputs not ready
(:class:`InputsNotReadyError`: another step's outputs are not visible yet, or not yet as
its done record lists them; jobs.yaml's ``evaluateOnExit`` retries exit 75); anything
else is a crash and raises.

Inputs from another step (cross-AZ readiness, :mod:`foldstack.steps.readiness`, whose names
this module re-exports): a step reads another step's outputs only through
:func:`await_inputs` (``ctx.await_inputs(producer, names)``): it waits, with bounded
backoff, until the producer's ``<step>.done.json`` is visible and every named file has
the size (``output_sizes``) and sha256 (``outputs``) it lists. On FSx a file another AZ's
job wrote appears by asynchronous import, so absence is "not yet", never bad input:
after ``FOLDSTACK_INPUT_WAIT_S`` seconds (default 600; the local engine sets 0) it raises
:class:`InputsNotReadyError` (exit 75) naming the file. Test hook:
``FOLDSTACK_INJECT_HIDE=<glob>:<seconds>[,...]`` makes the check treat files whose path
relative to the run dir matches ``<glob>`` as absent until ``<seconds>`` after the step
started (``inf``: never), so tests drive the real wait loop.

Staged inputs (Stage Inputs' files under ``<run>/input/``: ``targets/<target>.fasta``,
``targets.json``, ``request.json``) are awaited the same way, against the done record Stage
Inputs writes last, ``input/stage.done.json`` (:func:`await_staged`). In a Batch job (the
cloud, the local engine) the record is required: an input not visible yet is exit 75, and
a missing ``request.json`` never falls back to defaults. A step run by hand, with no
record, reads the files as they are.

Where a job ran: done records carry ``ran_on`` (:func:`ran_on`: queue, compute
environment, size class, attempt, job id and, from the ECS task metadata endpoint, the
availability zone) when the step runs as a Batch job (AWS Batch sets ``AWS_BATCH_*``;
the local engine sets the same); the cost estimate prices each job by it.

Resource use: every done record carries ``resources`` (:func:`resource_usage`): the
step process's peak RSS and CPU seconds (``RUSAGE_SELF``) and those of the tool
subprocesses it waited for (``RUSAGE_CHILDREN``: jackhmmer, hhblits, mmseqs), so operators
can size jobs; Collect Outputs copies it into the manifest (``provenance.<step>.resources``).
Likewise ``build`` (:func:`foldstack.core.provenance.build_info`: foldstack version, git
commit, image, job definition, and the weights a predict job loaded).

Fault injection for tests: ``FOLDSTACK_INJECT_FAULT=<step>:<target>`` (or
``<step>:*``; several comma-separated) raises ``RuntimeError("injected fault")``
right after the attempt dir is created.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import resource
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foldstack.core.clock import utcnow
from foldstack.core.errors import (
    EXIT_BAD_INPUT,
    EXIT_INPUTS_NOT_READY,
    EXIT_OK,
    EXIT_OUT_OF_MEMORY,
    BadInputError,
    InputsNotReadyError,  # noqa: F401 - re-exported (callers catch it from the step contract)
    InputValidationError,
    StepError,
    is_out_of_memory,
)
from foldstack.core.fasta import FastaLimits, FastaRecord, parse_fasta, validate_id
from foldstack.core.hashing import sha256_file
from foldstack.core.provenance import build_info
from foldstack.steps.image_digest import container_image
from foldstack.steps.ran_on import ran_on
from foldstack.steps.readiness import (  # noqa: F401 - re-exported: the step contract's names
    HIDE_ENV,
    INPUT_WAIT_ENV,
    REQUEST_NAME,
    STAGE_DIR,
    TARGETS_NAME,
    after_staged,
    await_inputs,
    await_staged,
    in_batch_job,
    input_wait_seconds,
    staged_fasta_name,
)

FAULT_ENV = "FOLDSTACK_INJECT_FAULT"
RUN_ID_MAX = 80


def log(step: str, target: str, message: str) -> None:
    """One progress line on stderr (Batch sends it to CloudWatch Logs)."""
    stamp = _dt.datetime.now(_dt.UTC).strftime("%H:%M:%S")
    print(f"[{stamp}] foldstack step {step} [{target}] {message}", file=sys.stderr, flush=True)


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


@dataclass
class StepContext:
    """What a step body gets: where to write, and where to record timings/versions."""

    step: str
    run_id: str
    target: str
    scratch: Path
    work_dir: Path
    final_dir: Path
    timings: dict[str, float] = field(default_factory=dict)
    tool_versions: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    @property
    def run_dir(self) -> Path:
        return self.scratch / self.run_id

    def log(self, message: str) -> None:
        log(self.step, self.target, message)

    @contextlib.contextmanager
    def timer(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - start, 3)

    def record_input(self, path: Path) -> None:
        """Record an input file's sha256 in done.json (relative to the run dir)."""
        try:
            rel = str(path.relative_to(self.run_dir))
        except ValueError:
            rel = str(path)
        self.inputs[rel] = sha256_file(path)

    def await_inputs(self, producer: str, names: list[str], *, target: str | None = None,
                     accept_unrecorded: bool = False) -> dict[str, Path]:
        """Wait for `names` in ``<run>/<producer>/<target>/`` to match the producer's done
        record (:func:`await_inputs`); record them as inputs; the wait is ``timings.await_inputs``."""
        folder = self.run_dir / producer / (target or self.target)
        with self.timer("await_inputs"):
            paths = await_inputs(done_path(folder, producer), names, since=self.started,
                                 accept_unrecorded=accept_unrecorded, log_fn=self.log)
        for path in paths.values():
            self.record_input(path)
        return paths

    def await_staged(self, names: list[str]) -> dict[str, Path]:
        """Stage Inputs' `names` (relative to ``<run>/input/``), as :func:`await_staged`
        checks them; records them as inputs; the wait counts in ``timings.await_inputs``."""
        with self.timer("await_inputs"):
            paths = await_staged(self.run_dir, names, since=self.started, log_fn=self.log)
        for path in paths.values():
            if path.is_file():  # by hand, a missing one is the caller's to report
                self.record_input(path)
        return paths

    def read_target(self) -> FastaRecord:
        """The staged target FASTA: exactly one record (chains joined by ':'), once Stage
        Inputs' done record lists it (:func:`await_staged`)."""
        self.await_staged([staged_fasta_name(self.target)])
        path = target_fasta_path(self.scratch, self.run_id, self.target)
        return read_target_fasta(path)


def _cpu_times() -> tuple[float, float]:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def _self_peak_rss_mib() -> float:
    """This process's peak RSS since it started (``VmHWM``, reset by exec). ru_maxrss is
    not: a process started by a big one (the local engine, pytest) inherits the parent's
    high-water mark through fork and exec. Falls back to ru_maxrss off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    scale = 1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0  # macOS reports bytes
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def resource_usage(since: tuple[float, float] = (0.0, 0.0)) -> dict[str, Any]:
    """Peak RSS (MiB) and CPU seconds of this process and of its waited-for children.

    ``peak_rss_mib`` is the larger of the two peaks (what the job needs: a child runs while
    the step waits for it); ``cpu_seconds`` is their sum since `since` (:func:`_cpu_times`
    at the step's start). The children's peak is Linux's ru_maxrss of RUSAGE_CHILDREN: at
    least the step's own RSS when it started them (a spawned child inherits that
    high-water mark), so it is exact as part of the maximum and an upper bound alone.
    A step run in-process (tests) shares its process's peak with whatever ran before.
    """
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    scale = 1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0
    self_rss, child_rss = _self_peak_rss_mib(), kids.ru_maxrss / scale
    self_cpu, child_cpu = (now - then for now, then in zip(_cpu_times(), since, strict=True))
    return {
        "peak_rss_mib": round(max(self_rss, child_rss), 1),
        "cpu_seconds": round(self_cpu + child_cpu, 2),
        "self": {"peak_rss_mib": round(self_rss, 1), "cpu_seconds": round(self_cpu, 2)},
        "children": {"peak_rss_mib": round(child_rss, 1), "cpu_seconds": round(child_cpu, 2)},
    }


def target_fasta_path(scratch: Path, run_id: str, target: str) -> Path:
    return Path(scratch) / run_id / STAGE_DIR / staged_fasta_name(target)


def read_target_fasta(path: Path) -> FastaRecord:
    if not path.is_file():
        raise BadInputError(
            f"target FASTA not found: {path} (Stage Inputs writes it; check --run-id, --target, --scratch)"
        )
    try:
        records = parse_fasta(path.read_bytes(), source=str(path), limits=FastaLimits())
    except InputValidationError as exc:
        raise BadInputError(f"invalid target FASTA {path}: {exc} ({exc.to_dict()})") from exc
    if len(records) != 1:
        raise BadInputError(
            f"target FASTA {path} holds {len(records)} records; a target is exactly one record "
            "(join complex chains with ':')"
        )
    return records[0]


def check_ids(run_id: str, target: str) -> None:
    """Both become path components: refuse anything that could escape the scratch dir."""
    if not run_id or len(run_id) > RUN_ID_MAX or not all((c.isascii() and c.isalnum()) or c in "_-" for c in run_id):
        raise BadInputError(f"invalid --run-id {run_id!r}: expected 1-80 of [A-Za-z0-9_-]")
    try:
        validate_id(target, source="--target", line=0)
    except InputValidationError as exc:
        raise BadInputError(f"invalid --target {target!r}: {exc}") from exc


def step_dirs(scratch: Path, run_id: str, step: str, target: str) -> tuple[Path, Path]:
    parent = Path(scratch) / run_id / step
    return parent, parent / target


def done_path(final_dir: Path, step: str) -> Path:
    return final_dir / f"{step}.done.json"


def load_valid_done(final_dir: Path, step: str, run_id: str, target: str) -> dict[str, Any] | None:
    """The done record if the directory is complete and intact, else None."""
    path = done_path(final_dir, step)
    if not path.is_file():
        return None
    try:
        done = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(done, dict) or (done.get("step"), done.get("run_id"), done.get("target")) != (
        step,
        run_id,
        target,
    ):
        return None
    outputs = done.get("outputs")
    if not isinstance(outputs, dict) or not outputs:
        return None
    for rel, digest in outputs.items():
        f = final_dir / rel
        if not f.is_file() or sha256_file(f) != digest:
            return None
    return done


def _fault_requested(step: str, target: str) -> bool:
    spec = os.environ.get(FAULT_ENV, "")
    wanted = {s.strip() for s in spec.split(",") if s.strip()}
    return f"{step}:{target}" in wanted or f"{step}:*" in wanted


def _list_outputs(work_dir: Path, exclude: str) -> dict[str, str]:
    out = {}
    for f in sorted(work_dir.rglob("*")):
        if f.is_file() and f.name != exclude:
            out[str(f.relative_to(work_dir))] = sha256_file(f)
    return out


def run_step(
    step: str,
    run_id: str,
    target: str,
    scratch: Path | str,
    body: Callable[[StepContext], None],
) -> Path:
    """Run `body` under the step contract; return the final directory.

    Raises StepError subclasses for contract failures (the CLI maps them to exit codes).
    """
    check_ids(run_id, target)
    scratch = Path(scratch)
    parent, final_dir = step_dirs(scratch, run_id, step, target)
    if load_valid_done(final_dir, step, run_id, target) is not None:
        log(step, target, f"already done: {final_dir} (valid {step}.done.json); nothing to do")
        return final_dir

    parent.mkdir(parents=True, exist_ok=True)
    unique = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    work_dir = parent / f".{target}.attempt-{unique}"
    work_dir.mkdir()
    ctx = StepContext(step=step, run_id=run_id, target=target, scratch=scratch, work_dir=work_dir,
                      final_dir=final_dir)
    started_at = utcnow()
    t0, cpu0 = time.perf_counter(), _cpu_times()
    log(step, target, f"attempt dir {work_dir}")
    try:
        if _fault_requested(step, target):
            raise RuntimeError("injected fault")
        body(ctx)
        ctx.timings["total"] = round(time.perf_counter() - t0, 3)
        done_name = done_path(work_dir, step).name
        outputs = _list_outputs(work_dir, exclude=done_name)
        done = {
            "step": step,
            "run_id": run_id,
            "target": target,
            "outputs": outputs,
            "output_sizes": {rel: (work_dir / rel).stat().st_size for rel in outputs},
            "inputs": ctx.inputs,
            "tool_versions": ctx.tool_versions,
            "timings": ctx.timings,
            "resources": resource_usage(cpu0),
            # code, image (+ its digest, steps.image_digest), job definition (+ predict's weights): core.provenance
            "build": {**build_info(), **container_image()},
            "started_at": started_at,
            "finished_at": utcnow(),
        }
        where = ran_on()
        if where is not None:
            done["ran_on"] = where
        write_json(work_dir / done_name, done)
        _promote(work_dir, final_dir, step, run_id, target)
    except BaseException:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise
    log(step, target, f"done in {ctx.timings['total']:.1f}s: {final_dir}")
    return final_dir


def _promote(work_dir: Path, final_dir: Path, step: str, run_id: str, target: str) -> None:
    """Rename the attempt dir into place. A stale, invalid final dir is moved aside first;
    if another attempt won the race with a valid result, ours is discarded."""
    if final_dir.exists():
        if load_valid_done(final_dir, step, run_id, target) is not None:
            log(step, target, "another attempt finished first; discarding this one")
            shutil.rmtree(work_dir, ignore_errors=True)
            return
        stale = final_dir.with_name(f".{target}.stale-{uuid.uuid4().hex[:12]}")
        os.rename(final_dir, stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        os.rename(work_dir, final_dir)
    except OSError:
        if load_valid_done(final_dir, step, run_id, target) is not None:
            shutil.rmtree(work_dir, ignore_errors=True)
            return
        raise


def exit_code_for(exc: BaseException) -> int | None:
    """The contract exit code for an exception, or None if it is a crash."""
    if isinstance(exc, StepError):
        return exc.exit_code
    if is_out_of_memory(exc):
        return EXIT_OUT_OF_MEMORY
    return None


def run_cli(step: str, target: str, fn: Callable[[], Any]) -> int:
    """Call `fn` and map contract failures to exit codes; crashes propagate."""
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - mapped or re-raised below
        code = exit_code_for(exc)
        if code is None:
            raise
        kind = {EXIT_BAD_INPUT: "bad input", EXIT_OUT_OF_MEMORY: "out of memory",
                EXIT_INPUTS_NOT_READY: "inputs not ready"}.get(code, "error")
        log(step, target, f"FAILED ({kind}, exit {code}): {exc}")
        return code
    return EXIT_OK
