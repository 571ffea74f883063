"""`foldstack step ...`: what a Batch job runs (the step contract is :mod:`foldstack.steps.common`).

Thin: the logic lives in foldstack.steps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, help="Run one workflow step (the same command Batch runs).")


def _register_workloads() -> None:
    """Every registered workload's step commands (workloads.yaml `steps`) under
    `foldstack step <workflow> ...`, e.g. `foldstack step cryoem refine3d`."""
    from foldstack.workflows.registry import load_registry

    for name, workload in sorted(load_registry().items()):
        steps = workload.steps_app()
        if steps is not None:
            app.add_typer(steps, name=name, help=f"The {name} workflow's steps.")


RunId = Annotated[str, typer.Option("--run-id", help="Run id (scratch/<run_id>/...).")]
Target = Annotated[str, typer.Option("--target", help="Target id (input/targets/<target>.fasta); predict "
                                     "also takes a batch: ids joined by ','.")]
Scratch = Annotated[Path, typer.Option("--scratch", help="Scratch root, e.g. /fsx/scratch.")]


@app.command("msa")
def msa(
    run_id: RunId,
    target: Target,
    scratch: Scratch,
    db: Annotated[Path, typer.Option("--db", help="Database root, e.g. /fsx/db.")],
    msa_tool: Annotated[str, typer.Option("--msa-tool", help="MSA tool: jackhmmer | mmseqs2.")] = "jackhmmer",
    cache: Annotated[str, typer.Option(
        "--cache", help="MSA cache root (directory or s3:// URI): chains searched before are reused, new ones kept; "
        "'' = none.")] = "",
    db_preset: Annotated[str, typer.Option(
        "--db-preset", help="full_dbs | reduced_dbs | colabfold; '' = the run's request (else reduced_dbs).")] = "",
) -> None:
    """A database preset's searches → msa.a3m + features.npz + features.json. Exit 0 ok, 2 bad input, 3 OOM."""
    from foldstack.steps.common import run_cli
    from foldstack.steps.msa import run_msa

    code = run_cli("msa", target, lambda: run_msa(run_id, target, scratch, db, msa_tool, cache or None,
                                                  db_preset or None))
    raise typer.Exit(code)


@app.command("msa-chains")
def msa_chains(
    run_id: RunId,
    scratch: Scratch,
    db: Annotated[Path, typer.Option("--db", help="Database root, e.g. /fsx/db.")],
    shard: Annotated[int, typer.Option("--shard", help="This job's shard, 0-based.")] = 0,
    shards: Annotated[int, typer.Option("--shards", help="How many shards the run's chains are dealt to.")] = 1,
    msa_tool: Annotated[str, typer.Option("--msa-tool", help="MSA tool: jackhmmer | mmseqs2.")] = "jackhmmer",
    cache: Annotated[str, typer.Option(
        "--cache", help="MSA cache root to fill; '' = the run's own chain store (scratch/<run_id>/chains).")] = "",
    db_preset: Annotated[str, typer.Option(
        "--db-preset", help="full_dbs | reduced_dbs | colabfold; '' = the run's request (else reduced_dbs).")] = "",
) -> None:
    """Search the run's distinct, not yet stored chains once (one shard of them), before the
    per-target msa jobs. Exit 0 ok, 2 bad input, 3 OOM."""
    from foldstack.steps.common import run_cli
    from foldstack.steps.msa_chains import run_msa_chains

    code = run_cli("msa_chains", f"shard-{shard}", lambda: run_msa_chains(
        run_id, scratch, db, msa_tool, cache or None, db_preset or None, shard, shards))
    raise typer.Exit(code)


@app.command("predict")
def predict(
    run_id: RunId,
    target: Target,
    scratch: Scratch,
    weights: Annotated[Path, typer.Option("--weights", help="Weights dir W (W/<engine>/...).")],
    engine: Annotated[str, typer.Option("--engine", help="esmfold | alphafold2")],
    preset: Annotated[str, typer.Option("--preset", help="monomer | multimer")] = "monomer",
    skip: Annotated[str, typer.Option("--skip", help="JSON list of targets of the batch not to fold "
                                                     "(their MSA failed).")] = "[]",
) -> None:
    """Fold one target, or a batch (`--target a,b,c`: the model loads once) → per target
    ranked_0.pdb/.cif, metrics.json, plddt.tsv, plots. A target that fails gets a failure
    record (predict.failed.json) and the others go on. Exit 0 (every target done or
    recorded as failed), 3 (out of memory: the workflow escalates), 75 (inputs not ready)."""
    from foldstack.core.provenance import recording, weights_identity
    from foldstack.steps.common import run_cli
    from foldstack.steps.predict import parse_skip, run_predict_batch, split_targets
    from foldstack.steps.weights_layout import DEMO_MARKER, ENGINES, engine_dir
    from foldstack.weights.fetch import FETCHED

    def go() -> None:
        # once per job (a batch folds many targets with the same weights): every target's
        # done record names them (provenance.predict.build.weights in the manifest)
        wdir = engine_dir(weights, engine) if engine in ENGINES else None
        try:
            identity = weights_identity(wdir, record_name=FETCHED, demo_marker=DEMO_MARKER) \
                if wdir is not None and wdir.is_dir() else None
        except OSError:  # unreadable weights: the step itself reports them, naming the file
            identity = None
        with recording(weights=identity):
            run_predict_batch(run_id, split_targets(target), scratch, weights, engine, preset,
                              skip=parse_skip(skip))

    raise typer.Exit(run_cli("predict", target, go))


@app.command("refresh-db")
def refresh_db(
    run_id: RunId,
    scratch: Scratch,
    db: Annotated[str, typer.Option("--db", help="Database root to publish to: a directory, or s3://bucket/prefix.")],
    spec: Annotated[str, typer.Option("--spec", help="JSON: name, version, source, files|checksums, ...")],
) -> None:
    """Fetch one database version, verify sha256s, publish it (manifest.json, then CURRENT). Exit 0/2."""
    from foldstack.steps.common import run_cli
    from foldstack.steps.refresh_db import parse_spec, run_refresh_db

    def go() -> None:
        run_refresh_db(run_id, scratch, db, spec)

    try:
        name = parse_spec(spec).name
    except Exception:  # noqa: BLE001 - run_cli reports the same error with its exit code
        name = "?"
    raise typer.Exit(run_cli("refresh_db", name, go))


@app.command("refresh-db-cleanup")
def refresh_db_cleanup(
    run_id: RunId,
    db: Annotated[str, typer.Option("--db", help="Database root: a directory, or s3://bucket/prefix.")],
) -> None:
    """Remove partial downloads a failed refresh run left under <db>/*/ (never CURRENT or a version)."""
    from foldstack.steps.common import run_cli
    from foldstack.steps.refresh_db import run_cleanup

    raise typer.Exit(run_cli("refresh_db_cleanup", run_id, lambda: run_cleanup(run_id, db)))


_register_workloads()
