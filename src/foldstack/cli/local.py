"""`foldstack run --local`, `demo`, `demo-data` and `render`: the local workflow commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from foldstack.core.errors import FoldstackError
from foldstack.core.manifest import MANIFEST, load_manifest
from foldstack.core.request import RunRequest

err = Console(stderr=True)
out = Console()

EXIT_FAILED_RUN = 1
EXIT_USAGE = 2

_SHOWN = {"TaskStateEntered", "MapIterationStarted", "ExecutionFailed", "ExecutionSucceeded", "TaskFailed"}


def _progress(event: dict[str, Any]) -> None:
    """One line per state transition a person cares about."""
    kind = event.get("type", "")
    if kind not in _SHOWN:
        return
    state = event.get("state") or event.get("name") or ""
    target = event.get("target") or ""
    where = f" [{target}]" if target else ""
    if kind == "TaskStateEntered":
        err.print(f"  -> {state}{where}")
    elif kind in ("TaskFailed", "ExecutionFailed"):
        err.print(f"  [red]x {state}{where} failed[/red]: {event.get('error', '')}")


def run_local(
    inputs: list[str], out_dir: Path, engine: str, preset: str, msa_tool: str | None, home: Path | None,
    *, quiet: bool = False,
) -> tuple[Any, int]:
    from foldstack.localmode import LocalRunner

    request = RunRequest.model_validate({
        "inputs": inputs, "output_uri": str(out_dir), "engine": engine, "preset": preset,
        **({"msa_tool": msa_tool} if msa_tool else {}),
    })
    runner = LocalRunner(home, on_event=None if quiet else _progress)
    run = runner.submit(request)
    err.print(f"run [bold]{run.run_id}[/bold] ({engine}, {preset})")
    status = run.wait()
    return run, 0 if status == "SUCCEEDED" else EXIT_FAILED_RUN


def _report(run: Any, as_json: bool) -> None:
    record = run.record()
    if as_json:
        out.print_json(json.dumps({k: record.get(k) for k in ("run_id", "status", "output", "error", "cause")}))
        return
    if record["status"] == "SUCCEEDED":
        path = run.output / MANIFEST
        manifest = load_manifest(path.read_bytes(), source=str(path))
        for t in manifest.targets:
            note = "  [yellow](demo weights: structure not meaningful)[/yellow]" if t.demo_weights else ""
            plddt = t.mean_plddt if t.mean_plddt is not None else float("nan")
            out.print(f"  {escape(t.id)}: mean pLDDT {plddt:.1f}{note}")
        out.print(f"[green]results:[/green] {run.output}")
    else:
        out.print(f"[red]run {record['status']}[/red]: {record.get('error')}: {record.get('cause')}")


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_cmd(
        inputs: Annotated[list[str], typer.Argument(help="FASTA files")],
        local: Annotated[bool, typer.Option("--local", help="run on this machine (the only mode of `run`)")] = False,
        out_dir: Annotated[Path, typer.Option("--out", help="results directory")] = Path("foldstack-results"),
        engine: Annotated[str, typer.Option(help="alphafold2 | esmfold")] = "alphafold2",
        preset: Annotated[str, typer.Option(help="monomer | multimer")] = "monomer",
        msa_tool: Annotated[str | None, typer.Option(help="jackhmmer | mmseqs2 (alphafold2 only)")] = None,
        home: Annotated[Path | None, typer.Option(help="local state dir (default $FOLDSTACK_HOME)")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    ) -> None:
        """Fold proteins on this machine through the same workflow the cloud runs."""
        if not local:
            err.print("`foldstack run` runs locally: add --local (use `foldstack submit --env ENV` for AWS)")
            raise typer.Exit(EXIT_USAGE)
        try:
            run, code = run_local(inputs, out_dir, engine, preset, msa_tool, home, quiet=as_json)
        except (FoldstackError, ValueError) as exc:
            err.print(f"[red]rejected[/red]: {exc}")
            raise typer.Exit(EXIT_USAGE) from None
        _report(run, as_json)
        raise typer.Exit(code)

    @app.command("demo-data")
    def demo_data_cmd(
        home: Annotated[Path | None, typer.Option(help="local state dir (default $FOLDSTACK_HOME)")] = None,
    ) -> None:
        """Build the demo sequence database and tiny random-weight models (no download)."""
        from foldstack.demo_data import build_demo_data
        from foldstack.localmode import default_home

        target = (home or default_home()).resolve()
        build_demo_data(target)
        err.print(f"demo database and weights ready under {target}")

    @app.command("demo")
    def demo_cmd(
        home: Annotated[Path | None, typer.Option(help="local state dir (default $FOLDSTACK_HOME)")] = None,
        out_dir: Annotated[Path | None, typer.Option("--out", help="results dir")] = None,
    ) -> None:
        """Fold the bundled example through alphafold2 (MSA -> features -> predict) and esmfold."""
        from importlib.resources import files

        from foldstack.demo_data import build_demo_data
        from foldstack.localmode import default_home

        home = (home or default_home()).resolve()
        build_demo_data(home)
        example = str(files("foldstack") / "data" / "examples" / "demo.fasta")
        results = (out_dir or home / "demo-results").resolve()
        failed = False
        for engine in ("alphafold2", "esmfold"):
            err.print(f"[bold]{engine}[/bold]: folding {Path(example).name}")
            run, code = run_local([example], results, engine, "monomer", None, home)
            _report(run, False)
            failed |= code != 0
        err.print("[yellow]demo weights are random: these structures show the pipeline works, "
                  "not what the proteins look like[/yellow]")
        raise typer.Exit(EXIT_FAILED_RUN if failed else 0)

    @app.command("render")
    def render_cmd(
        check: Annotated[bool, typer.Option(help="fail if a rendered file is out of date")] = False,
    ) -> None:
        """Render statemachines/*/definition.asl.json.j2 into statemachines/rendered/."""
        from foldstack.workflows.render import render_all

        changed = render_all(check=check)
        for path in changed:
            err.print(f"{'out of date' if check else 'rendered'}: {path}")
        if check and changed:
            raise typer.Exit(1)


