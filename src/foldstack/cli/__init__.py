"""The `foldstack` command: one typer app composed from small sub-modules.

Errors, exit codes and `--json` error objects are reported one way, by
`foldstack.cli.output` (docs/cli.md lists the exit codes)."""

from __future__ import annotations

import sys

import typer

from foldstack.cli import cryoem as _cryoem
from foldstack.cli import db as _db
from foldstack.cli import local as _local
from foldstack.cli import rerun as _rerun
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
_rerun.register(app)
_db.register(app)
_cryoem.register(app)


def main(argv: list[str] | None = None) -> None:
    """The console script: command-line errors click finds before a command runs
    (a missing argument, an unknown option) are reported like every other error."""
    from foldstack.cli.output import EXIT_USAGE, echo_error, report_usage

    args = sys.argv[1:] if argv is None else argv
    try:
        code = app(args=args, prog_name="foldstack", standalone_mode=False)
    except typer.TyperException as exc:  # typer's (click's) command-line errors
        help_shown = type(exc).__name__ == "NoArgsIsHelpError"  # `foldstack` alone: the help was shown
        code = EXIT_USAGE if help_shown else report_usage(exc, as_json="--json" in args)
    except typer.Abort:
        echo_error("[interrupted] stopped by the user")
        code = 130
    sys.exit(code if isinstance(code, int) else 0)
