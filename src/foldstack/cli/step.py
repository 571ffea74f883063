"""`foldstack step ...`: what a Batch job runs (DESIGN §4). Thin: logic in foldstack.steps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, help="Run one workflow step (the same command Batch runs).")

RunId = Annotated[str, typer.Option("--run-id", help="Run id (scratch/<run_id>/...).")]
Target = Annotated[str, typer.Option("--target", help="Target id (input/targets/<target>.fasta).")]
Scratch = Annotated[Path, typer.Option("--scratch", help="Scratch root, e.g. /fsx/scratch.")]


@app.command("msa")
def msa(
    run_id: RunId,
    target: Target,
    scratch: Scratch,
    db: Annotated[Path, typer.Option("--db", help="Database root, e.g. /fsx/db.")],
    msa_tool: Annotated[str, typer.Option("--msa-tool", help="MSA tool (jackhmmer).")] = "jackhmmer",
    cache: Annotated[str, typer.Option("--cache", help="MSA cache root ('' = none; not used yet).")] = "",
) -> None:
    """jackhmmer → msa.a3m + features.npz + features.json. Exit 0 ok, 2 bad input, 3 OOM."""
    from foldstack.steps.common import run_cli
    from foldstack.steps.msa import run_msa

    code = run_cli("msa", target, lambda: run_msa(run_id, target, scratch, db, msa_tool, cache or None))
    raise typer.Exit(code)


@app.command("predict")
def predict(
    run_id: RunId,
    target: Target,
    scratch: Scratch,
    weights: Annotated[Path, typer.Option("--weights", help="Weights dir W (W/<engine>/...).")],
    engine: Annotated[str, typer.Option("--engine", help="esmfold | alphafold2")],
    preset: Annotated[str, typer.Option("--preset", help="monomer | multimer")] = "monomer",
) -> None:
    """Fold one target → ranked_0.pdb/.cif, metrics.json, plddt.tsv, plots. Exit 0/2/3."""
    from foldstack.steps.common import run_cli
    from foldstack.steps.predict import run_predict

    code = run_cli("predict", target, lambda: run_predict(run_id, target, scratch, weights, engine, preset))
    raise typer.Exit(code)
