"""`foldstack weights ...`: install model weights. Thin: logic in foldstack.weights; errors
are one line, `error: [code] message`, as everywhere (`foldstack.cli.output`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from foldstack.cli.output import EXIT_USAGE, echo_error, error_line

app = typer.Typer(no_args_is_help=True, help="Install model weights (tiny demo weights, or the real ones).")

Dest = Annotated[Path, typer.Option("--dest", help="Weights dir W; writes W/<engine>/.")]


@app.command("demo")
def demo(
    dest: Dest,
    engine: Annotated[list[str] | None, typer.Option("--engine", help="Only this engine (repeatable).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Rewrite even if current demo weights exist.")] = False,
) -> None:
    """Write small RANDOM-weight models in the real formats (structures are not meaningful)."""
    from foldstack.steps.weights_layout import ENGINES
    from foldstack.weights.demo import write_demo_weights

    engines = tuple(engine) if engine else ENGINES
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        echo_error(error_line("invalid_request", f"--engine {', '.join(map(repr, unknown))} is not one of: "
                              f"{', '.join(ENGINES)}"))
        raise typer.Exit(EXIT_USAGE)
    write_demo_weights(dest, engines, force=force)
    for e in engines:
        print(f"demo weights for {e}: {Path(dest) / e}  (random; structures are NOT meaningful)")


@app.command("fetch")
def fetch(
    engine: Annotated[str, typer.Argument(help="esmfold | alphafold2")],
    dest: Dest,
    sha256: Annotated[str, typer.Option("--sha256", help="Expected sha256 of the AlphaFold tarball.")] = "",
    revision: Annotated[str, typer.Option("--revision", help="Hugging Face revision (esmfold).")] = "",
) -> None:
    """Download the real weights (needs internet): facebook/esmfold_v1 or AlphaFold's params."""
    from foldstack.core.errors import BadInputError
    from foldstack.weights.fetch import fetch_weights

    try:
        path = fetch_weights(engine, dest, sha256=sha256 or None, revision=revision or None)
    except BadInputError as exc:
        echo_error(error_line("bad_input", str(exc)))
        raise typer.Exit(EXIT_USAGE) from None
    print(f"{engine} weights installed in {path}")
