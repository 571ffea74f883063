"""Inputs from another step, or from Stage Inputs, checked against their producer's done
record before a step reads them (cross-AZ readiness; docs/reliability.md, section 1a).

On FSx a file another AZ's job (or Stage Inputs, through the scratch bucket) wrote appears
by asynchronous import, so absence is "not yet", never bad input: :func:`await_inputs`
waits, bounded by ``FOLDSTACK_INPUT_WAIT_S`` (default 600 s; the local engine sets 0), until
the record is visible and every named file has the size and sha256 it lists, then raises
:class:`InputsNotReadyError` (exit 75, retried by Batch). :func:`await_staged` does the same
for Stage Inputs' files against ``input/stage.done.json``. Test hook:
``FOLDSTACK_INJECT_HIDE=<glob>:<seconds>[,...]`` hides files matching ``<glob>`` (relative to
the run dir) until ``<seconds>`` after the step started (``inf``: never). The step contract
(:mod:`foldstack.steps.common`) re-exports these names.
"""

from __future__ import annotations

import fnmatch
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from foldstack.core.errors import BadInputError, InputsNotReadyError
from foldstack.core.hashing import sha256_file

# the run layout's names, defined in core (tasks.stage writes it); "as" ones are re-exported for steps.common
from foldstack.core.run_layout import REQUEST_NAME as REQUEST_NAME
from foldstack.core.run_layout import STAGE_DIR, STAGE_DONE
from foldstack.core.run_layout import TARGETS_NAME as TARGETS_NAME
from foldstack.core.run_layout import staged_fasta_name as staged_fasta_name

INPUT_WAIT_ENV = "FOLDSTACK_INPUT_WAIT_S"
HIDE_ENV = "FOLDSTACK_INJECT_HIDE"
DEFAULT_INPUT_WAIT_S = 600.0


def in_batch_job() -> bool:
    """True in a Batch job (AWS Batch, or the local engine, sets ``AWS_BATCH_*``): a step of a
    workflow run, whose staged inputs must be awaited; False for a step run by hand."""
    return bool(os.environ.get("AWS_BATCH_JOB_ID") or os.environ.get("AWS_BATCH_JQ_NAME"))




def input_wait_seconds() -> float:
    """How long :func:`await_inputs` waits: ``FOLDSTACK_INPUT_WAIT_S`` (default 600 s)."""
    raw = os.environ.get(INPUT_WAIT_ENV, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_INPUT_WAIT_S
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        raise BadInputError(f"{INPUT_WAIT_ENV}={raw!r}: expected seconds >= 0")
    return value


def _hide_rules() -> list[tuple[str, float]]:
    rules = []
    for item in os.environ.get(HIDE_ENV, "").split(","):
        pattern, sep, seconds = item.strip().rpartition(":")
        if sep and pattern:
            try:
                rules.append((pattern, float(seconds)))
            except ValueError:
                continue
    return rules


def _visible(path: Path, run_dir: Path, since: float, rules: list[tuple[str, float]]) -> bool:
    """``path.is_file()``, unless the hide injector (``FOLDSTACK_INJECT_HIDE``) still hides it."""
    if rules:
        try:
            rel = str(path.relative_to(run_dir))
        except ValueError:
            rel = str(path)
        elapsed = time.monotonic() - since
        if any(fnmatch.fnmatchcase(rel, pattern) and elapsed < seconds for pattern, seconds in rules):
            return False
    return path.is_file()


def _not_ready(done_file: Path, names: list[str], since: float, verified: set[str],
               accept_unrecorded: bool, run_dir: Path | None = None) -> tuple[Path, str] | None:
    """None when every input is usable, else (the file, what is wrong with it)."""
    folder, rules = done_file.parent, _hide_rules()
    if run_dir is None:  # <run>/<producer>/<target>/<step>.done.json
        run_dir = done_file.parents[2] if len(done_file.parents) > 2 else folder
    if not _visible(done_file, run_dir, since, rules):
        absent = [folder / n for n in names if not _visible(folder / n, run_dir, since, rules)]
        if not absent and accept_unrecorded:
            return None
        return (absent[0] if absent else done_file,
                f"is not visible{' and neither is ' + done_file.name if absent else ''}")
    try:
        record = json.loads(done_file.read_text())
        outputs, sizes = record["outputs"], record.get("output_sizes") or {}
    except (OSError, ValueError, KeyError, TypeError):
        return done_file, "is not a readable done record yet"
    for name in names:
        path = folder / name
        if name in verified:
            continue
        if name not in outputs:
            raise BadInputError(f"{path}: {done_file.name} does not list it (its step finished without it)")
        if not _visible(path, run_dir, since, rules):
            return path, f"is listed in {done_file.name} but not visible"
        size = path.stat().st_size
        if name in sizes and size != sizes[name]:
            return path, f"has {size} bytes, {done_file.name} records {sizes[name]}"
        if sha256_file(path) != outputs[name]:
            return path, f"does not match the sha256 in {done_file.name}"
        verified.add(name)
    return None


def await_inputs(done_file: Path | str, names: list[str], *, timeout: float | None = None,
                 since: float | None = None, accept_unrecorded: bool = False,
                 log_fn: Callable[[str], None] | None = None, run_dir: Path | None = None) -> dict[str, Path]:
    """Wait until the producer's done record `done_file` is visible and each of `names`
    (relative to its folder) has the size and sha256 it records; return their paths.

    Polls with backoff (0.25 s doubling to 30 s) for at most `timeout` seconds
    (:func:`input_wait_seconds`), then raises :class:`InputsNotReadyError` (exit 75) naming
    the first file that is missing or differs. A record that does not list a name is bad
    input (its step finished without it). ``accept_unrecorded``: files that are all there
    while no record is (placed by hand, or a step run outside the workflow) are used as
    they are; a visible record is always checked. `since`: the step's start
    (``time.monotonic()``), for the hide injector, which matches paths relative to
    `run_dir` (default: the record's ``<run>/<producer>/<target>/`` layout).
    """
    done_file = Path(done_file)
    timeout = input_wait_seconds() if timeout is None else timeout
    start = time.monotonic()
    since = start if since is None else since
    delay, verified, waiting = 0.25, set(), False
    while True:
        problem = _not_ready(done_file, names, since, verified, accept_unrecorded, run_dir)
        if problem is None:
            if waiting and log_fn is not None:
                log_fn(f"inputs visible after {time.monotonic() - start:.1f}s")
            return {name: done_file.parent / name for name in names}
        path, why = problem
        remaining = timeout - (time.monotonic() - start)
        if remaining <= 0:
            raise InputsNotReadyError(
                f"input {path} {why} after waiting {timeout:g}s ({INPUT_WAIT_ENV}); on FSx it may still be "
                "importing from another AZ: the job is retried (exit 75)", path=path)
        if not waiting and log_fn is not None:
            log_fn(f"waiting up to {timeout:g}s for input {path} ({why})")
        waiting = True
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 30.0)



def await_staged(run_dir: Path | str, names: list[str], *, since: float | None = None,
                 log_fn: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Stage Inputs' files `names` (relative to ``<run>/input/``), checked against its done
    record ``input/stage.done.json`` (size and sha256, as :func:`await_inputs` does).

    In a Batch job (:func:`in_batch_job`) the record is required: until it and the files are
    visible and match, the step waits (``FOLDSTACK_INPUT_WAIT_S``), then exits 75
    (retried): on FSx, Stage Inputs' S3 writes appear by asynchronous import. A step run by
    hand uses a record where one is visible, else the files as they are (its callers report
    a missing one).
    """
    run_dir = Path(run_dir)
    folder = run_dir / STAGE_DIR
    record = folder / STAGE_DONE
    if not in_batch_job() and not _visible(record, run_dir, time.monotonic() if since is None else since,
                                           _hide_rules()):
        return {name: folder / name for name in names}
    return await_inputs(record, names, since=since, log_fn=log_fn, run_dir=run_dir)


def after_staged(names: Callable[[Any], list[str]], body: Callable[[Any], None]) -> Callable[[Any], None]:
    """A step body that first awaits Stage Inputs' `names(ctx)` (``StepContext.await_staged``),
    so whatever the body (or a wrapper inside it) reads of ``input/`` is complete."""
    def staged_body(ctx: Any) -> None:
        ctx.await_staged(names(ctx))
        body(ctx)

    return staged_body
