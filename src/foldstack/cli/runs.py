"""Cloud run commands (submit, status, wait, ...): filled in by the client work (issue 4)."""

import typer


def register(app: typer.Typer) -> None:
    """Add the cloud commands to `app`."""
