"""Cloud run commands: submit, status, wait, logs, results, cancel, list, config show, doctor.

Every command takes `--env ENV` (or $FOLDSTACK_ENV); `--env local` means local mode
(the local engine under --home / $FOLDSTACK_HOME). Human output is tables and progress
bars on stderr/stdout; `--json` prints one JSON document on stdout.

Exit codes: 0 ok; 1 the run failed (or was aborted/timed out; doctor: a check failed);
2 usage, validation or configuration error (nothing was started); 3 not finished yet
(`wait --timeout` ran out, results of an unfinished run); 4 an AWS error.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from foldstack.core.errors import FoldstackError

err = Console(stderr=True)
out = Console()

EXIT_OK, EXIT_FAILED_RUN, EXIT_USAGE, EXIT_PENDING, EXIT_AWS = 0, 1, 2, 3, 4

EnvOpt = Annotated[str, typer.Option("--env", "-e", envvar="FOLDSTACK_ENV",
                                     help="environment name (SSM /foldstack/<env>/), or 'local'")]
HomeOpt = Annotated[Path | None, typer.Option(help="local mode state dir (default $FOLDSTACK_HOME)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document (for scripts)")]


def make_client(env: str, home: Path | None = None) -> Any:
    """The Client the commands use (tests replace this)."""
    from foldstack.client import Client

    if env == "local":
        return Client.local(home)
    return Client(env)


def emit(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def _exit_code(exc: Exception) -> int:
    from foldstack.client.errors import AwsError, RunNotCompleteError

    if isinstance(exc, AwsError):
        return EXIT_AWS
    if isinstance(exc, RunNotCompleteError):
        return EXIT_PENDING
    return EXIT_USAGE


def handled(fn: Callable[..., None]) -> Callable[..., None]:
    """Typed errors -> one clear line (or JSON) and the documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except (FoldstackError, ValueError) as exc:
            if kwargs.get("as_json"):
                emit(exc.to_dict() if isinstance(exc, FoldstackError)
                     else {"error": type(exc).__name__, "code": "invalid_request", "message": str(exc)})
            else:
                err.print(f"[red]error[/red]: {exc}", highlight=False)
            raise typer.Exit(_exit_code(exc)) from None

    return wrapper


def _status_code(status: str) -> int:
    if status == "SUCCEEDED":
        return EXIT_OK
    if status in ("FAILED", "ABORTED", "TIMED_OUT"):
        return EXIT_FAILED_RUN
    return EXIT_PENDING


def _colour(status: str) -> str:
    return {"SUCCEEDED": "green", "FAILED": "red", "ABORTED": "yellow", "TIMED_OUT": "red"}.get(status, "cyan")


def _print_run(run: Any, steps: bool = True) -> None:
    info = run.info
    out.print(f"[bold]{run.run_id}[/bold]  [{_colour(info.status)}]{info.status}[/]", highlight=False)
    if info.error:
        out.print(f"  {info.error}: {(info.cause or '')[:500]}", highlight=False)
    if steps:
        rows = [s for s in run.steps() if s.target]
        if rows:
            table = Table("target", "step", "size", "status", "batch job", "attempts")
            for s in rows:
                table.add_row(s.target, s.step, s.size_class or "", f"[{_colour(s.status)}]{s.status}[/]",
                              s.job_id or "", str(s.attempts))
            out.print(table)
    if info.status == "SUCCEEDED":
        out.print(f"results: {run.output_uri}", highlight=False)


def _parse_tags(tags: list[str]) -> dict[str, str]:
    parsed = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if not sep:
            raise ValueError(f"--tag {tag!r}: use key=value")
        parsed[key] = value
    return parsed


def register(app: typer.Typer) -> None:
    """Add the cloud commands to `app`."""

    @app.command("submit")
    @handled
    def submit_cmd(
        inputs: Annotated[list[str], typer.Argument(help="FASTA files (local or s3://)")],
        env: EnvOpt,
        engine: Annotated[str, typer.Option(help="alphafold2 | esmfold")] = "alphafold2",
        preset: Annotated[str, typer.Option(help="monomer | multimer")] = "monomer",
        msa_tool: Annotated[str | None, typer.Option(help="jackhmmer | mmseqs2 (alphafold2 only)")] = None,
        output: Annotated[str | None, typer.Option(help="output URI (default: the environment's)")] = None,
        owner: Annotated[str | None, typer.Option(help="who the run is for")] = None,
        tag: Annotated[list[str], typer.Option(help="key=value, repeatable")] = [],  # noqa: B006
        wait: Annotated[bool, typer.Option(help="wait for the run to finish")] = False,
        home: HomeOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Validate locally, upload, and start a run (the same request twice: the same run)."""
        client = make_client(env, home)
        run = client.submit(inputs, engine=engine, preset=preset, msa_tool=msa_tool, output=output,
                            owner=owner, tags=_parse_tags(tag))
        if wait:
            run.wait(progress=not as_json)
        if as_json:
            emit(run.to_dict())
        else:
            note = " (already submitted: existing run)" if run.existed else ""
            err.print(f"run [bold]{run.run_id}[/bold]{note}", highlight=False)
            if wait:
                _print_run(run)
        raise typer.Exit(_status_code(run.status) if wait else EXIT_OK)

    @app.command("status")
    @handled
    def status_cmd(
        run_id: Annotated[str, typer.Argument(help="run id")],
        env: EnvOpt,
        home: HomeOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Where a run is: its status and each target's step (MSA, Predict) with Batch job ids."""
        run = make_client(env, home).run(run_id)
        if as_json:
            emit(run.to_dict(steps=True))
        else:
            _print_run(run)

    @app.command("wait")
    @handled
    def wait_cmd(
        run_id: Annotated[str, typer.Argument(help="run id")],
        env: EnvOpt,
        timeout: Annotated[float | None, typer.Option(help="give up after this many seconds (exit 3)")] = None,
        home: HomeOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Wait for a run to finish: exit 0 if it succeeded, 1 if not, 3 if still running."""
        run = make_client(env, home).run(run_id)
        status = run.wait(timeout=timeout, progress=not as_json)
        if as_json:
            emit(run.to_dict(steps=True))
        else:
            _print_run(run, steps=status != "SUCCEEDED")
        raise typer.Exit(_status_code(status))

    @app.command("logs")
    @handled
    def logs_cmd(
        run_id: Annotated[str, typer.Argument(help="run id")],
        step: Annotated[str, typer.Argument(help="msa | predict")],
        target: Annotated[str, typer.Argument(help="target (FASTA record) id")],
        env: EnvOpt,
        home: HomeOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """The Batch job log of one step of one target (every attempt)."""
        run = make_client(env, home).run(run_id)
        lines = run.logs(step, target)
        if as_json:
            state = run.progress().find(step, target)
            emit({"run_id": run_id, "step": step, "target": target, "job_id": state.job_id if state else None,
                  "lines": lines})
        else:
            for line in lines:
                typer.echo(line)

    @app.command("results")
    @handled
    def results_cmd(
        run_id: Annotated[str, typer.Argument(help="run id")],
        env: EnvOpt,
        directory: Annotated[Path, typer.Option("--dir", help="download into DIR/<run id>/")] = Path("."),
        target: Annotated[list[str], typer.Option(help="only these targets (repeatable)")] = [],  # noqa: B006
        home: HomeOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Download a finished run's results (checksums verified) and show its metrics."""
        run = make_client(env, home).run(run_id)
        root = run.download(directory, targets=target or None)
        rows = run.metrics()
        if as_json:
            emit({"run_id": run_id, "dir": str(root), "files": [f.path for f in run.outputs()
                                                                  if not target or f.target in (None, *target)],
                  "metrics": list(rows)})
            return
        table = Table("target", "size", "mean pLDDT")
        for r in rows:
            plddt = r.get("mean_plddt")
            table.add_row(str(r["id"]), str(r.get("size_class") or ""),
                          f"{plddt:.1f}" if isinstance(plddt, int | float) else "")
        out.print(table)
        out.print(f"[green]downloaded[/green] {root}", highlight=False)

    @app.command("cancel")
    @handled
    def cancel_cmd(
        run_id: Annotated[str, typer.Argument(help="run id")],
        env: EnvOpt,
        reason: Annotated[str, typer.Option(help="recorded as the cause")] = "cancelled from the foldstack CLI",
        home: HomeOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Stop a run (its Batch jobs are terminated)."""
        run = make_client(env, home).run(run_id)
        status = run.cancel(reason)
        if as_json:
            emit({"run_id": run_id, "status": status})
        else:
            out.print(f"{run_id}: [{_colour(status)}]{status}[/]", highlight=False)

    @app.command("list")
    @handled
    def list_cmd(
        env: EnvOpt,
        status: Annotated[str | None, typer.Option(help="RUNNING | SUCCEEDED | FAILED | ABORTED | TIMED_OUT")] = None,
        since: Annotated[str | None, typer.Option(help="ISO time, or 30m / 6h / 7d ago")] = None,
        home: HomeOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Runs of the environment, newest first (every page: nothing truncated)."""
        runs = make_client(env, home).runs(status=status, since=since)
        if as_json:
            emit({"count": len(runs), "runs": [r.info.to_dict() for r in runs]})
            return
        table = Table("run id", "status", "started", "stopped", caption=f"{len(runs)} runs")
        for r in runs:
            d = r.info.to_dict()
            table.add_row(r.run_id, f"[{_colour(d['status'])}]{d['status']}[/]", d["start"] or "", d["stop"] or "")
        out.print(table)

    config_app = typer.Typer(help="The environment's configuration (SSM /foldstack/<env>/).", no_args_is_help=True)

    @config_app.command("show")
    @handled
    def config_show(env: EnvOpt, as_json: JsonOpt = False) -> None:
        """Show what the client discovered for ENV (missing parameters are listed)."""
        client = make_client(env)
        data = client.config.public() if client.config is not None else {"env": "local"}
        if as_json:
            emit(data)
            return
        table = Table("parameter", "value", title=f"/foldstack/{env}/")
        for key, value in data.items():
            table.add_row(key, value if isinstance(value, str) else json.dumps(value))
        out.print(table)

    app.add_typer(config_app, name="config")

    @app.command("doctor")
    @handled
    def doctor_cmd(env: EnvOpt, as_json: JsonOpt = False) -> None:
        """Check quotas, capacity, images and data before a big campaign (pass / warn / fail)."""
        from foldstack.client.doctor import render

        results = make_client(env).doctor()
        ok = all(r.status != "fail" for r in results)
        if as_json:
            emit({"env": env, "ok": ok, "checks": [r.to_dict() for r in results]})
        else:
            out.print(render(results, env))
        raise typer.Exit(EXIT_OK if ok else EXIT_FAILED_RUN)
