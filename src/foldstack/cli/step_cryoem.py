"""`foldstack step cryoem ...`: the cryoem workflow's Batch jobs (jobs.yaml's commands).

Thin: the logic is :mod:`foldstack.cryoem.steps`. Exit codes are the step contract's
(:mod:`foldstack.steps.common`): 0 done, 2 bad input, 3 out of memory, 75 inputs not ready."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, help="Run one cryoem workflow step (the same command Batch runs).")

RunId = Annotated[str, typer.Option("--run-id", help="Run id (scratch/<run_id>/...).")]
Scratch = Annotated[Path, typer.Option("--scratch", help="Scratch root, e.g. /fsx/scratch.")]
Name = Annotated[str, typer.Option("--name", help="'' (the stage itself) or <stage>_guard (the bias guard's).")]


def _run(step: str, target: str, fn) -> None:  # noqa: ANN001 - a no-argument callable
    from foldstack.steps.common import run_cli

    raise typer.Exit(run_cli(step, target, fn))


@app.command("preprocess")
def preprocess(
    run_id: RunId,
    scratch: Scratch,
    batch: Annotated[str, typer.Option("--batch", help="Batch of movies (input/run.json), e.g. batch-000.")],
    cache: Annotated[str, typer.Option("--cache", help="Preprocessing cache root ('': none).")] = "",
) -> None:
    """Motion correction, CTF estimation, picking, extraction of one batch of movies."""
    from foldstack.cryoem.steps import preprocess_batch

    _run("preprocess", batch, lambda: preprocess_batch(scratch, run_id, batch, cache))


@app.command("curate")
def curate(run_id: RunId, scratch: Scratch) -> None:
    """Drop micrographs by the QC knobs; join the particle stacks."""
    from foldstack.cryoem.steps import curate as run_curate

    _run("curate", "all", lambda: run_curate(scratch, run_id))


def _gpu_command(stage_name: str, doc: str) -> None:
    def command(run_id: RunId, scratch: Scratch, name: Name = "") -> None:
        from foldstack.cryoem.steps import gpu_stage

        _run(name or stage_name, "all", lambda: gpu_stage(stage_name, scratch, run_id, name))

    command.__doc__ = doc
    app.command(stage_name)(command)


_gpu_command("class2d", "2D classification and class selection (GPU).")
_gpu_command("initial_model", "The initial model: de novo, or the request's reference low-pass filtered (GPU).")
_gpu_command("refine3d", "3D auto-refinement with gold-standard half sets (GPU).")


@app.command("postprocess")
def postprocess(run_id: RunId, scratch: Scratch) -> None:
    """Mask, post-processing (FSC, resolution, B-factor), the bias guard's comparison, and
    the results Collect Outputs publishes (maps, FSC plot, particles, QC, report)."""
    from foldstack.cryoem.steps import postprocess as run_postprocess

    _run("postprocess", "all", lambda: run_postprocess(scratch, run_id))
