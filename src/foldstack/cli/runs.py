"""Cloud run commands: submit, retry, status, wait, logs, results, cancel, list, config show, doctor.

Every command takes `--env ENV` (or $FOLDSTACK_ENV); `--env local` means local mode
(the local engine under --home / $FOLDSTACK_HOME). Human output is tables and progress
on stderr/stdout; `--json` prints one JSON document on stdout, errors included.

Errors and exit codes are reported one way, by `foldstack.cli.output` (its docstring
and docs/cli.md list the codes): 0 ok; 1 the run failed; 2 usage or input; 3 not
finished yet; 4 configuration or AWS.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from foldstack.cli.options import (
    DbOpt,
    DbPresetOpt,
    MaxFailedOpt,
    MsaGpuOpt,
    NumModelsOpt,
    NumSeedsOpt,
    RelaxOpt,
    WorkflowOpt,
    check_workflow_args,
    fold_options,
)
from foldstack.cli.output import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PENDING,
    configure_task_logs,
    emit,
    follow_task_log,
    handled,
    log_size,
    log_start,
    report_failure,
    task_log,
)

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)

EnvOpt = Annotated[str, typer.Option("--env", "-e", envvar="FOLDSTACK_ENV",
                                     help="environment name (SSM /foldstack/<env>/), or 'local'")]
HomeOpt = Annotated[Path | None, typer.Option(help="local mode state dir (default $FOLDSTACK_HOME)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document (for scripts), errors included")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="local mode: also show the tasks' JSON log lines")]


def make_client(env: str, home: Path | None = None, **local: Any) -> Any:
    """The Client the commands use (tests replace this); `local`: options of
    `Client.local` (`detach=True`: `submit --env local` without `--wait`)."""
    from foldstack.client import Client

    if env == "local":
        return Client.local(home, **local)
    return Client(env)


def env_args(env: str, home: Path | None = None) -> str:
    """How to name this environment again on a command line (for hints)."""
    return f" --env {env}" + (f" --home {home}" if env == "local" and home else "")


def _status_code(status: str) -> int:
    if status == "SUCCEEDED":
        return EXIT_OK
    if status in ("FAILED", "ABORTED", "TIMED_OUT"):
        return EXIT_FAILED
    return EXIT_PENDING


def _colour(status: str) -> str:
    return {"SUCCEEDED": "green", "FAILED": "red", "ABORTED": "yellow", "TIMED_OUT": "red"}.get(status, "cyan")


def _print_run(run: Any, steps: bool = True) -> None:
    """A run's status and per-target steps on stdout. Why a failed run failed is
    `report_failure`'s (stderr), never the raw Step Functions cause."""
    info = run.info
    out.print(f"[bold]{escape(run.run_id)}[/bold]  [{_colour(info.status)}]{info.status}[/]")
    if steps:
        # each target's steps, and the Batch steps of the run as a whole (cryoem's curate, refine3d, ...)
        rows = [s for s in run.steps() if s.target or s.job]
        if rows:
            table = Table("target", "step", "size", "status", "batch job", "attempts")
            table.columns[4].overflow = "fold"
            for s in rows:
                table.add_row(escape(s.target or "(run)"), escape(s.step), escape(s.size_class or ""),
                              f"[{_colour(s.status)}]{escape(s.status)}[/]", escape(s.job_id or ""), str(s.attempts))
            out.print(table)
    sentence = run.outcome_sentence() if info.status in ("SUCCEEDED", "FAILED") else None
    if sentence is not None and run.failures():  # partial, or too many failed (what folded is published)
        out.print(f"[{'yellow' if info.status == 'SUCCEEDED' else 'red'}]{escape(sentence)}[/]")
    if info.status == "SUCCEEDED" or sentence is not None:
        cost = run.cost_sentence()  # says when the total is partial (unpriced jobs)
        if cost:
            out.print(escape(cost))
        out.print(f"results: {escape(run.output_uri)}")


def _follow(client: Any, run: Any, env: str, home: Path | None, *, wait: bool, as_json: bool,
            verbose: bool, log_before: int | None = None) -> None:
    """What `submit` and `retry` do once the run started: wait if asked, then report;
    exits with the run's code when waiting, else 0. `log_before`: the task log's size
    before this command started an attempt of an existing run."""
    if wait:
        with follow_task_log(task_log(client, run.run_id), verbose, log_start(run, log_before)):
            run.wait(progress=not as_json)
    if as_json:
        emit(run.to_dict())
    elif wait:
        _print_run(run, steps=run.status != "SUCCEEDED")
        _print_failure(run, env, home)
    raise typer.Exit(_status_code(run.status) if wait else EXIT_OK)


def _print_failure(run: Any, env: str, home: Path | None) -> None:
    failure = run.failure()
    if failure is not None:
        report_failure(failure, env_args=env_args(env, home))


def _when(iso: str | None) -> str:
    """ISO time -> 'YYYY-MM-DD HH:MM' (UTC) for tables."""
    if not iso:
        return ""
    from datetime import UTC, datetime

    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return (when.astimezone(UTC) if when.tzinfo else when).strftime("%Y-%m-%d %H:%M")


def _took(start: str | None, stop: str | None) -> str:
    """How long a finished run took, as h:mm:ss or m:ss."""
    from datetime import datetime

    if not start or not stop:
        return ""
    try:
        seconds = int((datetime.fromisoformat(stop) - datetime.fromisoformat(start)).total_seconds())
    except (ValueError, TypeError):
        return ""
    h, rest = divmod(max(seconds, 0), 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def _parse_tags(tags: list[str]) -> dict[str, str]:
    from foldstack.core.errors import InputValidationError

    parsed = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if not sep:
            raise InputValidationError(f"--tag {tag!r}: use key=value", code="invalid_request")
        parsed[key] = value
    return parsed


def register(app: typer.Typer) -> None:
    """Add the cloud commands to `app`."""

    @app.command("submit")
    @handled
    def submit_cmd(
        inputs: Annotated[list[str], typer.Argument(
            help="fold: FASTA files (local or s3://); another workflow: its dataset folder (holding "
                 "request.json) or request JSON file")],
        env: EnvOpt,
        workflow: WorkflowOpt = "fold",
        engine: Annotated[str | None, typer.Option(help="alphafold2 | esmfold (default alphafold2)")] = None,
        preset: Annotated[str | None, typer.Option(help="monomer | multimer (default monomer)")] = None,
        msa_tool: Annotated[str | None, typer.Option(help="jackhmmer | mmseqs2 (alphafold2 only)")] = None,
        output: Annotated[str | None, typer.Option(help="output URI (default: the environment's)")] = None,
        owner: Annotated[str | None, typer.Option(help="who the run is for")] = None,
        tag: Annotated[list[str], typer.Option(help="key=value, repeatable")] = [],  # noqa: B006
        wait: Annotated[bool, typer.Option(help="wait for the run to finish")] = False,
        rerun: Annotated[bool, typer.Option(help="a fresh run of the same request: recompute every target "
                                                 "(finished work discarded, published results withdrawn)")] = False,
        db: DbOpt = [],  # noqa: B006 - typer's repeatable option
        db_preset: DbPresetOpt = None,
        num_models: NumModelsOpt = None,
        num_seeds: NumSeedsOpt = None,
        relax: RelaxOpt = None,
        max_failed_fraction: MaxFailedOpt = None,
        msa_gpu: MsaGpuOpt = False,
        home: HomeOpt = None,
        as_json: JsonOpt = False,
        verbose: VerboseOpt = False,
    ) -> None:
        """Validate locally, upload, and start a run (the same request twice: the same run)."""
        from foldstack.cli.output import check_request_options

        check_workflow_args(workflow, inputs, locals())
        if workflow != "fold":
            _submit_workflow(workflow, inputs[0], env, home, output=output, owner=owner, tags=_parse_tags(tag),
                             wait=wait, rerun=rerun, as_json=as_json, verbose=verbose)
            return
        engine, preset = engine or "alphafold2", preset or "monomer"
        check_request_options(engine, preset, msa_tool)
        options = fold_options(engine, db, db_preset, num_models, num_seeds, relax, max_failed_fraction, msa_gpu,
                               msa_tool)
        tags = _parse_tags(tag)
        configure_task_logs()
        client = make_client(env, home, **({} if wait or env != "local" else {"detach": True}))
        run = client.submit(inputs, engine=engine, preset=preset, msa_tool=msa_tool, output=output,
                            owner=owner, tags=tags, rerun=rerun, **options)
        if not as_json:
            note = " (already submitted: existing run)" if run.existed else " (rerun: every target again)" \
                if rerun else ""
            err.print(f"run [bold]{escape(run.run_id)}[/bold]{note}")
        _follow(client, run, env, home, wait=wait, as_json=as_json, verbose=verbose)

    def _submit_workflow(workflow: str, source: str, env: str, home: Path | None, *, output: str | None,
                         owner: str | None, tags: dict[str, str], wait: bool, rerun: bool, as_json: bool,
                         verbose: bool) -> None:
        configure_task_logs()
        client = make_client(env, home, **({} if wait or env != "local" else {"detach": True}))
        run = client.submit(source, workflow=workflow, output=output, owner=owner, tags=tags or None, rerun=rerun)
        if not as_json:
            note = " (already submitted: existing run)" if run.existed else " (rerun)" if rerun else ""
            err.print(f"{escape(workflow)} run [bold]{escape(run.run_id)}[/bold]{note}")
        _follow(client, run, env, home, wait=wait, as_json=as_json, verbose=verbose)

    @app.command("retry")
    @handled
    def retry_cmd(
        run_id: Annotated[str, typer.Argument(help="run id")],
        env: EnvOpt,
        wait: Annotated[bool, typer.Option(help="wait for the new attempt to finish")] = False,
        home: HomeOpt = None,
        as_json: JsonOpt = False,
        verbose: VerboseOpt = False,
    ) -> None:
        """Start the next attempt of a FAILED, ABORTED or TIMED_OUT run (execution
        <run_id>-a<N>): finished targets are reused, only the rest is computed."""
        configure_task_logs()
        client = make_client(env, home, **({} if wait or env != "local" else {"detach": True}))
        log_before = log_size(task_log(client, run_id))
        run = client.run(run_id).retry()
        if not as_json:
            info = run.info
            note = " (already started)" if run.existed else ""
            err.print(f"run [bold]{escape(run_id)}[/bold]: attempt {info.attempt} "
                      f"({escape(info.execution_name or run_id)}){note}")
        _follow(client, run, env, home, wait=wait, as_json=as_json, verbose=verbose, log_before=log_before)

    @app.command("status")
    @handled
    def status_cmd(
        run_id: Annotated[str, typer.Argument(help="run id")],
        env: EnvOpt,
        home: HomeOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Where a run is: its status and its steps with Batch job ids (fold: each target's MSA and
        Predict; another workflow: what its jobs run, e.g. cryoem's preprocess per batch, refine3d)."""
        run = make_client(env, home).run(run_id)
        if as_json:
            emit(run.to_dict(steps=True))
        else:
            _print_run(run)
            _print_failure(run, env, home)

    @app.command("wait")
    @handled
    def wait_cmd(
        run_id: Annotated[str, typer.Argument(help="run id")],
        env: EnvOpt,
        timeout: Annotated[float | None, typer.Option(help="give up after this many seconds (exit 3)")] = None,
        home: HomeOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Wait for a run to finish, with a live table (per step: targets done, running,
        failed; elapsed): exit 0 if it succeeded, 1 if not, 3 if still running."""
        run = make_client(env, home).run(run_id)
        status = run.wait(timeout=timeout, progress=not as_json)
        if as_json:
            emit(run.to_dict(steps=True))
        else:
            _print_run(run, steps=False)
            _print_failure(run, env, home)
        raise typer.Exit(_status_code(status))

    @app.command("logs")
    @handled
    def logs_cmd(
        run_id: Annotated[str, typer.Argument(help="run id")],
        env: EnvOpt,
        step: Annotated[str | None, typer.Argument(
            help="a step of the run, as `status` names it: msa, predict, preprocess, refine3d, ... "
                 "(default: every step)")] = None,
        target: Annotated[str | None, typer.Argument(help="target (FASTA record) id (default: every target)")] = None,
        home: HomeOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """The Batch job logs of a run (every attempt): of one step of one target, of one
        step, or of every job; for finished runs too (local: <home>/runs/<run_id>/logs/)."""
        run = make_client(env, home).run(run_id)
        lines = run.logs(step, target)
        if as_json:
            state = run.progress().find(step, target) if step and target else None
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
        tsv: Annotated[bool, typer.Option(
            "--tsv", help="print the run summary (summary.tsv) instead; downloads nothing else")] = False,
    ) -> None:
        """Download a finished run's results (checksums verified) and show its metrics."""
        run = make_client(env, home).run(run_id)
        if not run.is_fold:
            _workflow_results(run, directory, tsv=tsv, as_json=as_json)
            return
        if tsv:  # the run's summary.tsv alone (failed targets included): nothing else is downloaded
            typer.echo(run.summary_tsv(), nl=False)
            return
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
            table.add_row(escape(str(r["id"])), escape(str(r.get("size_class") or "")),
                          f"{plddt:.1f}" if isinstance(plddt, int | float) else "")
        out.print(table)
        out.print(f"[green]downloaded[/green] {escape(str(root))}")

    def _workflow_results(run: Any, directory: Path, *, tsv: bool, as_json: bool) -> None:
        """`results` of another workflow's run: every file its manifest lists, and its metrics."""
        from foldstack.core.errors import InputValidationError

        if tsv:
            raise InputValidationError(f"--tsv: a summary of targets is fold's; run {run.run_id} is a "
                                       f"{run.workflow} run", code="invalid_request")
        root = run.download(directory)
        metrics = run.published().metrics
        if as_json:
            emit({"run_id": run.run_id, "workflow": run.workflow, "dir": str(root),
                  "files": [f.path for f in run.outputs()], "metrics": metrics, "outcome": run.outcome()})
            return
        if metrics:
            table = Table("metric", "value")
            for key, value in metrics.items():
                table.add_row(escape(str(key)), escape(value if isinstance(value, str) else json.dumps(value)))
            out.print(table)
        out.print(f"[green]downloaded[/green] {escape(str(root))}")

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
            out.print(f"{escape(run_id)}: [{_colour(status)}]{status}[/]")

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
        client = make_client(env, home)
        runs = client.runs(status=status, since=since)
        home_dir = getattr(client, "home", None)
        source = f"home {home_dir}" if home_dir else f"environment {env}"
        rows = []
        for r in runs:
            d = r.info.to_dict()
            d["workflow"] = d.get("workflow") or "fold"
            d["engine"] = (r.info.request or {}).get("engine")  # cloud listings carry no request
            d["n_targets"] = r.n_targets
            rows.append(d)
        if as_json:
            emit({"count": len(runs), "runs": rows, **({"home": str(home_dir)} if home_dir else {"env": env})})
            return
        from rich import box

        table = Table(caption=escape(f"{len(runs)} runs in {source} (times UTC)"), box=box.SIMPLE_HEAD,
                      pad_edge=False, padding=(0, 1, 0, 0))
        table.add_column("run id", no_wrap=True, min_width=max((len(d["run_id"]) for d in rows), default=6))
        # the workflow column once a run of another workflow than fold is listed (fold-only
        # listings keep fitting 80 columns; --json always carries `workflow`)
        mixed = any(d["workflow"] != "fold" for d in rows)
        for name in ("workflow", "engine", "targets", "status", "started", "took")[0 if mixed else 1:]:
            table.add_column(name, justify="right" if name in ("targets", "took") else "left", no_wrap=True)
        for d in rows:
            table.add_row(escape(d["run_id"]), *([escape(d["workflow"])] if mixed else []), escape(d["engine"] or ""),
                          str(d["n_targets"] or ""),
                          f"[{_colour(d['status'])}]{escape(d['status'])}[/]", _when(d["start"]),
                          _took(d["start"], d["stop"]))
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
        table = Table("parameter", "value", title=escape(f"/foldstack/{env}/"))
        for key, value in data.items():
            table.add_row(escape(key), escape(value if isinstance(value, str) else json.dumps(value)))
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
        raise typer.Exit(EXIT_OK if ok else EXIT_FAILED)
