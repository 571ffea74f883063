"""`foldstack cryoem ...`: the CryoEM workload on this machine. Thin: the logic is in
`foldstack.cryoem` (docs/cryoem.md).

* ``demo-data``: simulate a dataset with known truth from a real structure.
* ``run-local``: run the whole chain (RELION's CPU programs) on a dataset directory, in
  this process (no workflow engine).

``foldstack run --local --workflow cryoem DATASET`` runs the same chain through the
rendered cryoem workflow on the local engine instead (cli/local.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from foldstack.cli.output import emit, handled
from foldstack.core.errors import FoldstackError, InputValidationError, StepError

app = typer.Typer(no_args_is_help=True, help="CryoEM: simulate a dataset, run the processing chain locally.")
err = Console(stderr=True, highlight=False)
out = Console(highlight=False)
Json = Annotated[bool, typer.Option("--json", help="machine-readable output, errors included")]


def register(parent: typer.Typer) -> None:
    parent.add_typer(app, name="cryoem", help="CryoEM: simulate a dataset, run the processing chain locally.")


@contextlib.contextmanager
def _step_errors() -> Iterator[None]:
    """The stages raise the step contract's errors (exit codes for Batch); on the command
    line they are reported like every other error: bad input exits 2, a failure 1."""
    from foldstack.core.errors import BadInputError

    try:
        yield
    except BadInputError as exc:
        raise InputValidationError(str(exc.args[0] if exc.args else exc),
                                   code=getattr(exc, "code", "invalid_input")) from exc
    except StepError as exc:
        raise FoldstackError(str(exc.args[0] if exc.args else exc), code=getattr(exc, "code", "step_failed")) from exc


@app.command("demo-data")
@handled
def demo_data_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="new directory for the dataset")],
    micrographs: Annotated[int, typer.Option(help="number of movies")] = 20,
    particles_per_micrograph: Annotated[int, typer.Option(help="particles in each micrograph")] = 100,
    box: Annotated[int, typer.Option(help="particle box size (px)")] = 64,
    pixel_size: Annotated[float, typer.Option(help="Å per pixel")] = 2.5,
    frames: Annotated[int, typer.Option(help="frames per movie")] = 8,
    seed: Annotated[int, typer.Option(help="random seed (same seed, same dataset)")] = 0,
    as_json: Json = False,
) -> None:
    """Simulate movies of PDB 7DDO with known drift, defocus, positions and orientations."""
    from foldstack.cryoem.simulate import SimParams, simulate

    params = SimParams(micrographs=micrographs, particles_per_micrograph=particles_per_micrograph, box=box,
                       pixel_size=pixel_size, frames=frames, seed=seed)
    with _step_errors():
        truth = simulate(out_dir, params)
    result = {"dataset": str(out_dir), "micrographs": len(truth["micrographs"]),
              "particles": sum(len(m["particles"]) for m in truth["micrographs"]),
              "structure": truth["structure"]["source"]}
    if as_json:
        emit(result)
        return
    out.print(f"dataset: {escape(str(out_dir))} ({result['micrographs']} movies, {result['particles']} particles of "
              f"7DDO; truth in truth/)")
    out.print(f"  run it: foldstack run --local --workflow cryoem {escape(str(out_dir))} --out RESULTS_DIR")


@app.command("run-local")
@handled
def run_local_cmd(
    dataset: Annotated[Path, typer.Argument(help="dataset directory (holds request.json)")],
    out_dir: Annotated[Path, typer.Option("--out", help="output directory (work/ and results/)")],
    reference: Annotated[Path | None, typer.Option(
        help="start refinement from this map (.mrc) or model (.pdb/.cif), low-pass filtered; default: de novo")] = None,
    batch_size: Annotated[int, typer.Option(help="movies per preprocessing batch")] = 10,
    guard: Annotated[bool, typer.Option(help="with --reference: re-refine from a harder-filtered start and "
                                              "compare (reference-bias guard)")] = True,
    as_json: Json = False,
) -> None:
    """Motion correction → CTF → picking → extraction → curation → 2D → initial model → 3D refine → post-process."""
    from foldstack.cryoem.pipeline import run_local

    with _step_errors():
        summary = run_local(dataset, out_dir, reference=reference, batch_size=batch_size, guard=guard)
    if as_json:
        emit(summary)
        return
    res, results = summary["results"], out_dir / "results"
    out.print(f"[green]done[/green] in {summary['wall_seconds']:.0f}s ({summary['cpu_seconds']:.0f} CPU-s): "
              f"{res['particles_refined']} particles, gold-standard resolution {res['resolution']:.1f} Å, "
              f"B-factor {res['bfactor']:.0f} Å²")
    if summary.get("bias_guard") and summary["bias_guard"]["flagged"]:
        out.print("[red]reference-bias guard: the two starts disagree; do not trust this map[/red]")
    for label, name in (("map", "map_sharpened.mrc"), ("FSC plot", "fsc.png"), ("report", "report.html"),
                        ("manifest", "manifest.json")):
        out.print(f"  {label}: {escape(str(results / name))}")
