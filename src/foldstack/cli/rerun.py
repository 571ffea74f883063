"""`foldstack rerun MANIFEST`: compute a published run again, as a new run pinned to its database versions.

Thin: `Client.rerun` (`foldstack.client.rerun`) does the work; errors and exit codes are
`foldstack.cli.output`'s (a pinned version no longer installed: ``[db_version_missing]``,
exit 2, nothing submitted).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from foldstack.cli import runs
from foldstack.cli.output import UsageError, configure_task_logs, handled
from foldstack.cli.runs import HomeOpt, JsonOpt, VerboseOpt, _follow

err = Console(stderr=True, highlight=False)


def register(app: typer.Typer) -> None:
    @app.command("rerun")
    @handled
    def rerun_cmd(
        manifest: Annotated[str, typer.Argument(
            help="the run to compute again: its manifest.json (or results folder), an s3:// URI, or a run id")],
        env: Annotated[str | None, typer.Option("--env", "-e", envvar="FOLDSTACK_ENV",
                                                help="environment name (SSM /foldstack/<env>/), or 'local'")] = None,
        local: Annotated[bool, typer.Option("--local", help="rerun on this machine (same as --env local)")] = False,
        wait: Annotated[bool, typer.Option(help="wait for the run to finish")] = False,
        home: HomeOpt = None,
        as_json: JsonOpt = False,
        verbose: VerboseOpt = False,
    ) -> None:
        """A new run (its own run id: the old run's results stay) with the same inputs and
        parameters, pinned to the database versions the run searched; refused (code
        db_version_missing) if one is no longer installed."""
        if local:
            env = "local"
        if not env:
            raise UsageError("say where to rerun: --local, or --env ENV", hint="or set FOLDSTACK_ENV")
        configure_task_logs()
        client = runs.make_client(env, home, **({} if wait or env != "local" else {"detach": True}))
        run = client.rerun(Path(manifest) if Path(manifest).expanduser().exists() else manifest)
        if not as_json:
            pins = (run.request or {}).get("db_versions") or {}
            shown = ", ".join(f"{n}={v}" for n, v in sorted(pins.items())) or "none (no database searched)"
            err.print(f"run [bold]{escape(run.run_id)}[/bold] (rerun of {escape(manifest)}, whose results stay as "
                      f"they are; databases pinned: {escape(shown)})")
        _follow(client, run, env, home, wait=wait, as_json=as_json, verbose=verbose)
