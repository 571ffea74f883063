"""The `foldstack` command: one typer app composed from small sub-modules."""

from __future__ import annotations

import typer

from foldstack.cli import local as _local
from foldstack.cli import runs as _runs
from foldstack.cli import step as _step
from foldstack.cli import weights as _weights

app = typer.Typer(
    name="foldstack",
    help="Fold proteins at scale on AWS, or locally with the same workflow.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(_step.app, name="step", help="Run one workflow step (what a Batch job runs).")
app.add_typer(_weights.app, name="weights", help="Install model weights (demo or real).")
_local.register(app)
_runs.register(app)


def main() -> None:
    app()
