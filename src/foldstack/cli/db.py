"""`foldstack db ...`: sequence databases: build one from your own FASTA files, list what is
installed, index a version, show the catalogue. Thin: the logic is in
`foldstack.steps.db_build` and `foldstack.steps.catalogue`.

A database version is `<root>/<name>/<version>/` with its `manifest.json` (sha256 of every
file) and MMseqs2 index, and `<root>/<name>/CURRENT` names the version runs use unless a
run pins another (`foldstack run --local --db NAME=VERSION`). The root is
`$FOLDSTACK_HOME/db` unless `--db` names a directory or an `s3://bucket/prefix`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from foldstack.cli.output import emit, handled

app = typer.Typer(no_args_is_help=True, help="Sequence databases: build from FASTA, list, index, catalogue.")
err = Console(stderr=True, highlight=False)
out = Console(highlight=False)

Root = Annotated[str | None, typer.Option(
    "--db", help="database root: a directory or s3://bucket/prefix (default: $FOLDSTACK_HOME/db)")]
Home = Annotated[Path | None, typer.Option(help="local state dir (default $FOLDSTACK_HOME)")]
Json = Annotated[bool, typer.Option("--json", help="machine-readable output, errors included")]


def _root(db: str | None, home: Path | None) -> str:
    if db:
        return db if db.startswith("s3://") else str(Path(db).expanduser().resolve())
    from foldstack.local.paths import LocalPaths, default_home

    return str(LocalPaths((home or default_home()).expanduser().resolve()).db)


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def register(parent: typer.Typer) -> None:
    parent.add_typer(app, name="db", help="Sequence databases: build from FASTA, list, index, catalogue.")


@app.command("build")
@handled
def build_cmd(
    name: Annotated[str, typer.Option("--name", help="database name, e.g. uniref90 or my_proteins")],
    version: Annotated[str, typer.Option("--version", help="version name, e.g. 2024_01")],
    fasta: Annotated[list[Path], typer.Option("--fasta", help="FASTA file (plain or .gz); repeatable")],
    role: Annotated[list[str] | None, typer.Option(
        help="what the msa step uses it as (repeatable: one database serving several roles): uniref90 | mgnify "
             "| small_bfd | uniprot | colabfold_uniref30 | colabfold_envdb (default: uniref90)")] = None,
    max_hits: Annotated[int | None, typer.Option(help="rows kept from a search (recorded in the manifest)")] = None,
    index: Annotated[bool, typer.Option("--index/--no-index", help="build the MMseqs2 index (default: yes)")] = True,
    gpu_index: Annotated[bool, typer.Option("--gpu-index", help="also the padded index GPU MMseqs2 searches")] = False,
    license: Annotated[str, typer.Option(help="licence of the sequences, recorded in the manifest")] = "",
    db: Root = None,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Turn FASTA files into a database version (manifest, checksums, MMseqs2 index), then point CURRENT at it."""
    from foldstack.steps.db_build import build_database

    root = _root(db, home)
    if not as_json:
        err.print(f"building {escape(name)}/{escape(version)} under {escape(root)} from {len(fasta)} FASTA file(s)"
                  + (" (with the MMseqs2 index: seconds to minutes)" if index else ""))
    result = build_database(root, name, version, fasta, role=role or ["uniref90"], max_hits=max_hits, index=index,
                            gpu_index=gpu_index, license=license)
    if as_json:
        emit(result)
        return
    what = {"published": "published", "already_current": "already current (same sequences)",
            "republished": "republished (CURRENT moved back to it)"}.get(result["action"], result["action"])
    out.print(f"[green]{escape(name)}/{escape(version)}[/green]: {what}; {result['records']} sequences; "
              f"CURRENT -> {escape(version)}")
    out.print(f"  {escape(str(result['path']))}")
    out.print(f"  use it: foldstack run --local --engine alphafold2 --db {escape(name)}={escape(version)} FILE.fasta")


@app.command("list")
@handled
def list_cmd(db: Root = None, home: Home = None, as_json: Json = False) -> None:
    """Installed databases, their versions, and which version is CURRENT."""
    from foldstack.steps.db_build import list_databases

    root = _root(db, home)
    rows: list[dict[str, Any]] = list_databases(root)
    if as_json:
        emit({"root": root, "databases": rows})
        return
    if not rows:
        err.print(f"no databases under {escape(root)} (build one: foldstack db build --name N --version V --fasta F)")
        return
    from rich.table import Table

    table = Table(title=f"databases under {root}", show_lines=False)
    for col in ("name", "version", "current", "role", "size", "sequences", "mmseqs2 index"):
        table.add_column(col)
    for entry in rows:
        if not entry["versions"]:
            table.add_row(entry["name"], "-", f"CURRENT -> {entry['current']} (missing)", "", "", "", "")
        for v in entry["versions"]:
            table.add_row(entry["name"], v["version"], "*" if v["current"] else "", v["role"] or "",
                          _size(v["bytes"]), "" if v["sequence_count"] is None else str(v["sequence_count"]),
                          ", ".join(v["mmseqs_indexes"]) or "none")
    out.print(table)


@app.command("index")
@handled
def index_cmd(
    name: Annotated[str, typer.Option("--name", help="database name")],
    version: Annotated[str | None, typer.Option("--version", help="version (default: CURRENT's)")] = None,
    gpu: Annotated[bool, typer.Option("--gpu", help="the padded index GPU MMseqs2 searches")] = False,
    threads: Annotated[int, typer.Option(help="createindex threads")] = 1,
    db: Root = None,
    home: Home = None,
) -> None:
    """Build the MMseqs2 index of a local version published without one (once, next to it)."""
    from foldstack.steps.db_build import index_database

    path = index_database(_root(db, home), name, version, gpu=gpu, threads=threads, log=lambda m: err.print(escape(m)))
    out.print(f"index ready: {escape(str(path))}")


@app.command("catalogue")
@handled
def catalogue_cmd(as_json: Json = False) -> None:
    """The databases and weights foldstack knows how to fetch (name@version, files, sizes, checksums)."""
    from foldstack.steps.catalogue import load_catalogue

    cat = load_catalogue()
    if as_json:
        emit(cat.model_dump(mode="json"))
        return
    from rich.table import Table

    table = Table(title="catalogue (refresh input: {\"catalogue\": \"name@version\"})")
    for col in ("name@version", "kind", "role", "format", "size", "sha256"):
        table.add_column(col)
    for e in cat.entries:
        table.add_row(e.ref, e.kind, e.role or "", ", ".join(sorted({f.format for f in e.files})),
                      e.approx_size or "not published", "published" if all(f.sha256 for f in e.files)
                      else "not published")
    out.print(table)
