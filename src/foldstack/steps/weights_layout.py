"""Where model weights live, and how a step finds them.

A weights directory ``W`` (``/fsx/db/weights`` in the cloud, ``~/.foldstack/weights``
locally) holds one folder per engine::

    W/esmfold/       a Hugging Face ``save_pretrained`` dir (config.json,
                     model.safetensors) plus the tokenizer vocab (vocab.txt, ...)
    W/alphafold2/    AlphaFold parameter files ``params_<model_name>.npz`` (AlphaFold's
                     own npz format: flat ``"<scope>//<name>"`` arrays), optionally
                     ``config_overrides.json`` (flattened ml_collections keys applied
                     to AlphaFold's model config; the demo weights use it to shrink
                     the network)

Demo weights (random, tiny) carry a marker file ``W/<engine>/DEMO_WEIGHTS``; any run
that uses them says so in stderr and in metrics.json.
"""

from __future__ import annotations

from pathlib import Path

from foldstack.core.errors import BadInputError

ENGINES = ("esmfold", "alphafold2")
DEMO_MARKER = "DEMO_WEIGHTS"
AF2_OVERRIDES = "config_overrides.json"
DEMO_WARNING = (
    "DEMO WEIGHTS: this structure was predicted with small random-weight demo models; "
    "it is NOT a meaningful prediction. Install real weights with "
    "`foldstack weights fetch <engine> --dest <weights dir>`."
)


class WeightsNotFoundError(BadInputError):
    """No usable weights for an engine (exit code 2)."""


def engine_dir(weights: Path | str, engine: str) -> Path:
    if engine not in ENGINES:
        raise BadInputError(f"unknown engine {engine!r} (known: {', '.join(ENGINES)})")
    return Path(weights) / engine


def is_demo(engine_path: Path) -> bool:
    return (engine_path / DEMO_MARKER).is_file()


def _missing(engine: str, path: Path, what: str) -> WeightsNotFoundError:
    weights = path.parent
    return WeightsNotFoundError(
        f"no {engine} weights: {what} in {path}. Provide them with "
        f"`foldstack weights fetch {engine} --dest {weights}` (real weights, needs internet) or "
        f"`foldstack weights demo --dest {weights}` (tiny random demo weights)."
    )


def require_esmfold(weights: Path | str) -> Path:
    path = engine_dir(weights, "esmfold")
    if not (path / "config.json").is_file():
        raise _missing("esmfold", path, "config.json not found")
    if not any(path.glob("*.safetensors")):
        raise _missing("esmfold", path, "no *.safetensors model file found")
    return path


def alphafold2_param_files(weights: Path | str) -> dict[str, Path]:
    """{model_name: params file} for every ``params_<model_name>.npz`` present."""
    path = engine_dir(weights, "alphafold2")
    return {f.name[len("params_"):-len(".npz")]: f for f in sorted(path.glob("params_*.npz"))}


def require_alphafold2(weights: Path | str, model_names: tuple[str, ...]) -> dict[str, Path]:
    """The parameter files available for the given models (at least one)."""
    path = engine_dir(weights, "alphafold2")
    available = alphafold2_param_files(weights)
    chosen = {name: available[name] for name in model_names if name in available}
    if not chosen:
        raise _missing("alphafold2", path, "none of " + ", ".join(f"params_{m}.npz" for m in model_names)
                       + " found")
    return chosen
