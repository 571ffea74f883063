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

Missing weights raise :class:`WeightsNotFoundError`; weights that are there but do not
load (a truncated ``model.safetensors`` or ``params_*.npz``, a corrupt ``config.json`` or
``config_overrides.json``, ``config.json`` missing beside a model file) raise
:class:`WeightsDamagedError`. Both exit 2 with one line naming the file and the command
that installs the weights again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from foldstack.core.errors import BadInputError, DamagedFileError
from foldstack.core.npz import NpzError

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


class WeightsDamagedError(DamagedFileError):
    """An engine's weights are there but a file of them does not load (exit code 2); the
    message names the file and how to install the weights again."""

    code = "weights_damaged"


def engine_dir(weights: Path | str, engine: str) -> Path:
    if engine not in ENGINES:
        raise BadInputError(f"unknown engine {engine!r} (known: {', '.join(ENGINES)})")
    return Path(weights) / engine


def is_demo(engine_path: Path) -> bool:
    return (engine_path / DEMO_MARKER).is_file()


def reinstall_hint(engine: str, path: Path) -> str:
    """How to (re)install `engine`'s weights into `path` (``W/<engine>``). Demo weights are
    rewritten only with ``--force`` (``foldstack demo-data`` keeps demo weights whose marker
    is current, damaged or not); a directory of real weights only by fetching them again."""
    weights = path.parent
    fetch = f"`foldstack weights fetch {engine} --dest {weights}` (real weights, needs internet)"
    if is_demo(path):
        return (f"These are demo weights: rewrite them with `foldstack weights demo --dest {weights} "
                f"--engine {engine} --force`, or install real ones with {fetch}.")
    if path.is_dir() and any(path.iterdir()):
        return f"Install them again with {fetch}."
    return (f"Provide them with {fetch} or "
            f"`foldstack weights demo --dest {weights}` (tiny random demo weights).")


def _missing(engine: str, path: Path, what: str) -> WeightsNotFoundError:
    return WeightsNotFoundError(f"no {engine} weights: {what} in {path}. {reinstall_hint(engine, path)}")


def weights_damaged(engine: str, file: Path, why: BaseException | str) -> WeightsDamagedError:
    """The error for a weights file that does not load. `why`: the loader's exception, or
    what is wrong ("is missing ...", "is a JSON list ..."). One line: the file, why, and
    :func:`reinstall_hint`."""
    if isinstance(why, NpzError):  # already "does not load (<the loader's error>)"
        why = str(why)
    elif isinstance(why, BaseException):
        text = " ".join(str(why).split())
        text = text if len(text) <= 200 else text[:200] + "..."
        why = f"does not load ({type(why).__name__}: {text})" if text else f"does not load ({type(why).__name__})"
    file = Path(file)
    return WeightsDamagedError(f"damaged {engine} weights: {file} {why}. {reinstall_hint(engine, file.parent)}",
                               path=file)


def read_json_object(engine: str, file: Path) -> dict[str, Any]:
    """A weights directory's JSON file (a config or config overrides), which must hold a
    JSON object; anything else raises :func:`weights_damaged` naming the file."""
    try:
        data = json.loads(Path(file).read_bytes())
    except (OSError, ValueError) as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise weights_damaged(engine, file, exc) from exc
    if not isinstance(data, dict):
        raise weights_damaged(engine, file, f"is a JSON {type(data).__name__}, not an object")
    return data


def require_esmfold(weights: Path | str) -> Path:
    path = engine_dir(weights, "esmfold")
    if not (path / "config.json").is_file():
        if any(path.glob("*.safetensors")):  # a model file without its config: an incomplete install
            raise weights_damaged("esmfold", path / "config.json", "is missing beside the model file")
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
