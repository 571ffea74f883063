"""`foldstack run --local`, `demo`, `demo-data` and `render`: the local workflow commands.

`run --local` goes through the SDK's front door, `Client.local(...)`, and the same `Run`
handle as the cloud: the same validation, the same live table while it waits
(`Run.wait(progress=True)`), the same `Run.failure()` when it fails. Errors and exit
codes are `foldstack.cli.output`'s.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from foldstack.cli.options import (
    DbOpt,
    DbPresetOpt,
    MaxFailedOpt,
    MsaGpuOpt,
    NumModelsOpt,
    NumSeedsOpt,
    RelaxOpt,
    fold_options,
)
from foldstack.cli.output import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    check_request_options,
    configure_task_logs,
    emit,
    follow_task_log,
    handled,
    log_start,
    report_error,
    report_failure,
    task_log,
)

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def make_local_client(home: Path | None, output: Path) -> Any:
    """The local-mode Client `run --local` and `demo` use (tests replace this)."""
    from foldstack.client import Client

    return Client.local(home, output=output)


def run_local(
    inputs: list[str], out_dir: Path, engine: str, preset: str, msa_tool: str | None, home: Path | None,
    *, progress: bool = True, verbose: bool = False, rerun: bool = False, options: dict[str, Any] | None = None,
) -> tuple[Any, int]:
    """Submit through `Client.local` and wait (with the live table unless `progress` is
    False; with the tasks' log lines if `verbose`); (run, exit code). `options`: more
    `Client.submit` keyword arguments (`foldstack.cli.options.fold_options`)."""
    check_request_options(engine, preset, msa_tool)
    configure_task_logs()
    client = make_local_client(home, out_dir)
    run = client.submit(list(inputs), engine=engine, preset=preset, msa_tool=msa_tool, output=str(out_dir),
                        rerun=rerun, **(options or {}))
    if progress:
        note = " (already run: existing results)" if run.existed else " (rerun: every target again)" if rerun else ""
        err.print(f"run [bold]{escape(run.run_id)}[/bold] ({escape(engine)}, {escape(preset)}){note}")
    with follow_task_log(task_log(client, run.run_id), verbose, log_start(run)):
        status = run.wait(progress=progress)
    return run, EXIT_OK if status == "SUCCEEDED" else EXIT_FAILED


# What a finished run of another workflow points at first (in its published folder).
HEADLINE_FILES = (("map", "map_sharpened.mrc"), ("FSC plot", "fsc.png"), ("report", "report.html"),
                  ("manifest", "manifest.json"))


def run_workflow_local(workflow: str, dataset: Path, out_dir: Path, home: Path | None, *, progress: bool = True,
                       rerun: bool = False) -> tuple[Any, int]:
    """Another registered workflow (not fold) on the local engine: its task module reads
    the dataset folder into its request (``local_request``), the runner submits it (the
    rendered definition, the real Lambda handlers, jobs.yaml's commands); (run, exit code)."""
    from foldstack.local.runner import LocalRunner
    from foldstack.workflows.registry import get_workload

    module = get_workload(workflow).tasks_module()
    if module is None or not hasattr(module, "local_request"):
        raise UsageError(f"workflow {workflow!r} has no local dataset reader", hint="use --workflow fold")
    configure_task_logs()
    out_dir = out_dir.expanduser().resolve()
    request = module.local_request(dataset, str(out_dir))
    runner = LocalRunner(home, workflow=workflow)
    run = runner.submit(request, rerun=rerun)
    if progress:
        note = " (already run: existing results)" if run.existed else " (rerun)" if rerun else ""
        err.print(f"run [bold]{escape(run.run_id)}[/bold] ({escape(workflow)}){note}")
    status = run.wait()
    return run, EXIT_OK if status == "SUCCEEDED" else EXIT_FAILED


def report_workflow(run: Any, as_json: bool) -> None:
    """Where the results are (or why the run failed), for a workflow other than fold."""
    record = run.record()
    published = Path(run.output)
    manifest_path = published / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
    if as_json:
        emit({"run_id": run.run_id, "status": record["status"], "output": str(published), "error": record.get("error"),
              "cause": record.get("cause"), "result": record.get("result"),
              "files": {name: str(published / name) for _, name in HEADLINE_FILES if (published / name).is_file()}})
        return
    if record["status"] != "SUCCEEDED" or manifest is None:
        err.print(f"[red]run {escape(run.run_id)} {escape(str(record['status']))}[/red]: "
                  f"{escape(str(record.get('error')))}: {escape(str(record.get('cause')))}")
        return
    res = manifest.get("results") or {}
    if "resolution" in res:
        out.print(f"[green]done[/green]: {res.get('particles_refined')} particles, gold-standard resolution "
                  f"{res['resolution']:.1f} Å")
    if (manifest.get("bias_guard") or {}).get("flagged"):
        out.print("[red]reference-bias guard: the two starts disagree; do not trust this map[/red]")
    for label, name in HEADLINE_FILES:
        if (published / name).is_file():
            out.print(f"  {label}: {escape(str(published / name))}")


def _home_args(home: Path | None) -> str:
    return " --env local" + (f" --home {home}" if home else "")


def report(run: Any, as_json: bool, home: Path | None = None) -> None:
    """The results (read through the manifest model: `Run.manifest()`), or why the run failed."""
    info = run.info
    output = run.output_uri
    if as_json:
        doc = {"run_id": run.run_id, "status": info.status, "output": output, "error": info.error,
               "cause": info.cause, **run.outcome_summary()}
        failure = run.failure()
        if failure is not None:
            doc.update(code=failure.code, message=str(failure), failure=failure.to_dict())
        emit(doc)
        return
    if info.status == "SUCCEEDED":
        manifest = run.manifest()
        for t in manifest.targets:
            note = "  [yellow](demo weights: structure not meaningful)[/yellow]" if t.demo_weights else ""
            plddt = t.mean_plddt if t.mean_plddt is not None else float("nan")
            out.print(f"  {escape(t.id)}: mean pLDDT {plddt:.1f}{note}")
        if manifest.failures:  # partial: some targets failed within the failure budget
            out.print(f"[yellow]{escape(run.outcome_sentence())}[/yellow]")
        cost = run.cost_sentence()  # says when the total is partial (unpriced jobs)
        if cost:
            out.print(escape(cost))
        out.print(f"[green]results:[/green] {escape(str(output))}")
        return
    sentence = run.outcome_sentence()  # too many targets failed: what folded is still published
    if sentence is not None:
        out.print(f"[red]{escape(sentence)}[/red]\n[green]results:[/green] {escape(str(output))}")
    failure = run.failure()
    if failure is not None:
        report_failure(failure, env_args=_home_args(home))


def register(app: typer.Typer) -> None:
    @app.command("run")
    @handled
    def run_cmd(
        inputs: Annotated[list[str], typer.Argument(help="FASTA files (fold); one dataset folder (other workflows)")],
        local: Annotated[bool, typer.Option("--local", help="run on this machine (the only mode of `run`)")] = False,
        out_dir: Annotated[Path, typer.Option("--out", help="results directory")] = Path("foldstack-results"),
        engine: Annotated[str, typer.Option(help="alphafold2 | esmfold")] = "alphafold2",
        preset: Annotated[str, typer.Option(help="monomer | multimer")] = "monomer",
        msa_tool: Annotated[str | None, typer.Option(help="jackhmmer | mmseqs2 (alphafold2 only)")] = None,
        home: Annotated[Path | None, typer.Option(help="local state dir (default $FOLDSTACK_HOME)")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="machine-readable output, errors included")] = False,
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="also show the tasks' JSON log lines")] = False,
        rerun: Annotated[bool, typer.Option(help="recompute every target even if the run finished before")] = False,
        db: DbOpt = [],  # noqa: B006 - typer's repeatable option
        db_preset: DbPresetOpt = None,
        num_models: NumModelsOpt = None,
        num_seeds: NumSeedsOpt = None,
        relax: RelaxOpt = None,
        max_failed_fraction: MaxFailedOpt = None,
        msa_gpu: MsaGpuOpt = False,
        workflow: Annotated[str, typer.Option(
            help="registered workflow: fold, or e.g. cryoem (DATASET: a folder holding request.json, as "
                 "`foldstack cryoem demo-data` writes)")] = "fold",
    ) -> None:
        """Run a workflow on this machine through the same definition the cloud runs (default: fold proteins)."""
        if not local:
            raise UsageError("`foldstack run` runs locally: add --local",
                             hint="use `foldstack submit --env ENV` for AWS")
        if workflow != "fold":
            if len(inputs) != 1:
                raise UsageError(f"--workflow {workflow} takes one dataset folder, got {len(inputs)} arguments")
            run, code = run_workflow_local(workflow, Path(inputs[0]), out_dir, home, progress=not as_json,
                                           rerun=rerun)
            report_workflow(run, as_json)
            raise typer.Exit(code)
        options = fold_options(engine, db, db_preset, num_models, num_seeds, relax, max_failed_fraction, msa_gpu,
                               msa_tool)
        run, code = run_local(inputs, out_dir, engine, preset, msa_tool, home, progress=not as_json,
                              verbose=verbose, rerun=rerun, options=options)
        report(run, as_json, home)
        raise typer.Exit(code)

    @app.command("demo-data")
    @handled
    def demo_data_cmd(
        home: Annotated[Path | None, typer.Option(help="local state dir (default $FOLDSTACK_HOME)")] = None,
    ) -> None:
        """Build the demo sequence database and tiny random-weight models (no download)."""
        from foldstack.demo_data import build_demo_data
        from foldstack.local.paths import default_home

        target = (home or default_home()).resolve()
        build_demo_data(target)
        err.print(f"demo database and weights ready under {escape(str(target))}")

    @app.command("demo")
    @handled
    def demo_cmd(
        home: Annotated[Path | None, typer.Option(help="local state dir (default $FOLDSTACK_HOME)")] = None,
        out_dir: Annotated[Path | None, typer.Option("--out", help="results dir")] = None,
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="also show the tasks' JSON log lines")] = False,
    ) -> None:
        """Fold the bundled example through alphafold2 (MSA -> features -> predict) and esmfold."""
        from importlib.resources import files

        from foldstack.demo_data import build_demo_data
        from foldstack.local.paths import default_home

        home = (home or default_home()).resolve()
        build_demo_data(home)
        example = str(files("foldstack") / "data" / "examples" / "demo.fasta")
        results = (out_dir or home / "demo-results").resolve()
        failed = False
        indexes: list[str] = []  # each run's index.html, printed last
        for engine in ("alphafold2", "esmfold"):
            err.print(f"[bold]{engine}[/bold]: folding {escape(Path(example).name)}")
            try:
                run, code = run_local([example], results, engine, "monomer", None, home, verbose=verbose)
            except Exception as exc:  # noqa: BLE001 - reported the one way; the other engine still runs
                failed |= report_error(exc, verbose=verbose) != EXIT_OK
                continue
            report(run, False, home)
            failed |= code != 0
            if code == 0:
                indexes.append(f"{run.output_uri}/index.html")
        err.print("[yellow]demo weights are random: these structures show the pipeline works, "
                  "not what the proteins look like[/yellow]")
        for index in indexes:  # the run reports (open in a browser; they work offline), one line each
            out.print(f"[green]report:[/green] {escape(index)}", soft_wrap=True)
        raise typer.Exit(EXIT_FAILED if failed else 0)

    @app.command("render")
    @handled
    def render_cmd(
        check: Annotated[bool, typer.Option(help="fail if a rendered file is out of date")] = False,
    ) -> None:
        """Render statemachines/*/definition.asl.json.j2 into statemachines/rendered/."""
        from foldstack.workflows.render import render_all

        changed = render_all(check=check)
        for path in changed:
            err.print(f"{'out of date' if check else 'rendered'}: {escape(str(path))}")
        if check and changed:
            raise typer.Exit(1)

