"""The CryoEM request: movies, optics, particle diameter, box size, symmetry.

Read from a dataset's ``request.json`` (what ``foldstack cryoem demo-data`` writes) or
built in code; :func:`parse_request` checks every field and the movies' headers (same
frame count and frame size across movies, big enough for the box: the checks the workflow's
Validate Input makes, :mod:`foldstack.cryoem.headers`, no data read) and raises one one-line
:class:`BadInputError` naming the field. It writes nothing.

``movies`` is a directory (its ``*.mrc``, ``*.mrcs``, ``*.tif``, ``*.tiff``) or a list of
files; relative paths are relative to the request file's folder.

:class:`CryoemRunRequest` is the same request as clients submit it to the workflow (movies
and reference as URIs, the output prefix, knob overrides); its numbers go through the same
checks (:func:`check_params`)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from foldstack.core.errors import BadInputError, InputValidationError
from foldstack.cryoem.headers import MovieInfo, check_consistent, read_movie_headers
from foldstack.cryoem.knobs import Knobs
from foldstack.cryoem.mrc import MOVIE_SUFFIXES

SYMMETRY = re.compile(r"^(C[1-9][0-9]*|D[2-9][0-9]*|T|O|I[1-4]?)$")
LIMITS = {
    "pixel_size": (0.2, 20.0),
    "voltage_kv": (60.0, 400.0),
    "cs_mm": (0.0, 10.0),
    "amplitude_contrast": (0.0, 0.5),
    "dose_per_frame": (0.01, 50.0),
    "particle_diameter": (10.0, 5000.0),
}
MIN_BOX, MAX_BOX = 32, 1024
REFERENCE_SUFFIXES = (".mrc", ".map", ".pdb", ".cif", ".pdb.gz", ".cif.gz")


@dataclass(frozen=True)
class Optics:
    pixel_size: float  # Å
    voltage_kv: float
    cs_mm: float
    amplitude_contrast: float
    dose_per_frame: float  # e/Å² per frame


@dataclass(frozen=True)
class CryoemRequest:
    movies: list[Path]
    optics: Optics
    particle_diameter: float  # Å
    box_size: int  # px
    symmetry: str = "C1"
    frames: int = 0  # from the headers, filled by validate_request
    frame_shape: tuple[int, int] = (0, 0)  # (ny, nx)
    reference: Path | None = None  # a map (MRC) or atomic model (PDB/mmCIF) to start refinement from

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["movies"] = [str(p) for p in self.movies]
        data["reference"] = str(self.reference) if self.reference else None
        data["frame_shape"] = list(self.frame_shape)
        return data


def _number(data: dict[str, Any], key: str, where: str) -> float:
    if key not in data:
        raise BadInputError(f"request field {where}{key} is missing")
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadInputError(f"request field {where}{key}: expected a number, got {value!r}")
    low, high = LIMITS[key]
    if not low <= value <= high:
        raise BadInputError(f"request field {where}{key}={value}: expected {low:g} to {high:g}")
    return float(value)


def _movie_paths(value: Any, base: Path) -> list[Path]:
    if isinstance(value, str):
        root = (base / value).resolve()
        if root.is_dir():
            found = sorted(p for p in root.iterdir() if p.suffix.lower() in MOVIE_SUFFIXES and p.is_file())
            if not found:
                raise BadInputError(f"request field movies: {root} holds no .mrc/.mrcs/.tif/.tiff files")
            return found
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise BadInputError("request field movies: expected a directory or a non-empty list of file paths")
    paths = [(base / v).resolve() for v in value]
    for p in paths:
        if p.suffix.lower() not in MOVIE_SUFFIXES:
            raise BadInputError(f"request field movies: {p.name} is not .mrc, .mrcs, .tif or .tiff")
        if not p.is_file():
            raise BadInputError(f"request field movies: {p} does not exist")
    if len({p.stem for p in paths}) != len(paths):
        raise BadInputError("request field movies: two movies share a name; micrograph names must be unique")
    return paths


class MovieCheckError(BadInputError):
    """A movie-header check failed for a local request: a BadInputError (a step exits 2 on
    it, the CLI reports bad input) carrying the shared check's code (``unreadable_movie``,
    ``truncated_movie``, ``inconsistent_movies``, ``invalid_request``)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code

    def __str__(self) -> str:
        return f"[{self.code}] {super().__str__()}"


def check_movies(paths: list[Path], box: int) -> MovieInfo:
    """The movies' headers, checked as the workflow's Validate Input checks them
    (:func:`foldstack.cryoem.headers.check_consistent`: one frame count >= 2 and one frame
    size, at least two boxes wide); returns the first movie's header."""
    try:
        return check_consistent(read_movie_headers([str(p) for p in paths]), box)
    except InputValidationError as exc:
        text = exc.message
        # a movie's fault is reported against the request field that lists it
        if not text.startswith("request field"):
            text = f"request field movies: {text.removeprefix('movie ')}"
        raise MovieCheckError(text, code=exc.code) from None


def check_params(optics_raw: Any, diameter_raw: Any, box: Any, symmetry: Any) -> tuple[Optics, float, int, str]:
    """The request's numbers and symmetry, checked (one BadInputError naming the field):
    what :func:`parse_request` and the cloud model (:class:`CryoemRunRequest`) share."""
    if not isinstance(optics_raw, dict):
        raise BadInputError("request field optics is missing or not an object")
    optics = Optics(**{k: _number(optics_raw, k, "optics.") for k in
                       ("pixel_size", "voltage_kv", "cs_mm", "amplitude_contrast", "dose_per_frame")})
    diameter = _number({"particle_diameter": diameter_raw} if diameter_raw is not None else {}, "particle_diameter", "")
    if isinstance(box, bool) or not isinstance(box, int) or not MIN_BOX <= box <= MAX_BOX or box % 2:
        raise BadInputError(f"request field box_size={box!r}: expected an even whole number {MIN_BOX} to {MAX_BOX}")
    if diameter / optics.pixel_size > box:
        raise BadInputError(
            f"request field box_size={box}: smaller than the particle ({diameter:g} Å = "
            f"{diameter / optics.pixel_size:.0f} px at {optics.pixel_size:g} Å/px)")
    if not isinstance(symmetry, str) or not SYMMETRY.match(symmetry.upper()):
        raise BadInputError(f"request field symmetry={symmetry!r}: expected C<n>, D<n>, T, O or I")
    return optics, diameter, box, symmetry.upper()


def check_reference_name(name: str) -> None:
    if not name.lower().endswith(REFERENCE_SUFFIXES):
        raise BadInputError(f"request field reference: {name} is not a map (.mrc/.map) or model (.pdb/.cif)")


def parse_request(data: Any, *, base: Path) -> CryoemRequest:
    """Validate a request dict (see module docstring); `base` resolves relative paths."""
    if not isinstance(data, dict):
        raise BadInputError("request: expected a JSON object")
    unknown = set(data) - {"movies", "optics", "particle_diameter", "box_size", "symmetry", "reference"}
    if unknown:
        raise BadInputError(f"request field {sorted(unknown)[0]} is not known")
    optics, diameter, box, symmetry = check_params(data.get("optics"), data.get("particle_diameter"),
                                                   data.get("box_size"), data.get("symmetry", "C1"))
    reference = data.get("reference")
    ref_path = None
    if reference is not None:
        if not isinstance(reference, str):
            raise BadInputError("request field reference: expected a file path")
        ref_path = (base / reference).resolve()
        if not ref_path.is_file():
            raise BadInputError(f"request field reference: {ref_path} does not exist")
        check_reference_name(ref_path.name)
    movies = _movie_paths(data.get("movies"), base)
    header = check_movies(movies, box)
    return CryoemRequest(movies=movies, optics=optics, particle_diameter=diameter, box_size=box,
                         symmetry=symmetry, frames=header.frames, frame_shape=(header.ny, header.nx),
                         reference=ref_path)


def load_request(dataset: Path | str) -> CryoemRequest:
    """A dataset directory (its ``request.json``) or a request file."""
    path = Path(dataset)
    if path.is_dir():
        path = path / "request.json"
    if not path.is_file():
        raise BadInputError(f"request not found: {path} (a dataset directory holds request.json)")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BadInputError(f"request {path} is not valid JSON: {exc}") from exc
    return parse_request(data, base=path.parent)



# --------------------------------------------------------------------------- the cloud request


class OpticsSpec(BaseModel):
    """The request's optics (one optics group), as clients submit it."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    pixel_size: float  # Å
    voltage_kv: float
    cs_mm: float
    amplitude_contrast: float
    dose_per_frame: float  # e/Å² per frame


class CryoemRunRequest(BaseModel):
    """One CryoEM run as submitted (``Client.submit(workflow="cryoem")``, the workflow's
    execution input): the movies and reference as URIs (``s3://...``, ``file://...`` or
    local paths; ``movies`` a prefix/folder or a list of files), where the results go
    (``output_uri``) and optional knob overrides (:class:`foldstack.cryoem.knobs.Knobs`:
    QC thresholds, iterations). The numbers are checked as :func:`parse_request` checks a
    dataset's request.json (:func:`check_params`); the movies' headers are checked where
    they can be read (:func:`foldstack.cryoem.submission.resolve_movies`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    schema_version: Literal[1] = 1
    name: str = Field(default="cryoem", pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")  # the run id's label
    movies: str | list[str]
    optics: OpticsSpec
    particle_diameter: float  # Å
    box_size: int  # px
    symmetry: str = "C1"
    reference: str | None = None  # a map (MRC) or atomic model (PDB/mmCIF) to start refinement from
    output_uri: str = Field(min_length=1)
    batch_size: int = Field(default=10, ge=1, le=1000)  # movies per preprocessing job
    bias_guard: bool = True  # with a reference: re-refine from a harder-filtered start and compare
    reuse_cache: bool = True  # reuse (and fill) the per-micrograph preprocessing cache (foldstack.cryoem.cache)
    knobs: dict[str, float | int] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _checks(self) -> CryoemRunRequest:
        try:
            check_params(self.optics.model_dump(), self.particle_diameter, self.box_size, self.symmetry)
            if self.reference is not None:
                check_reference_name(self.reference.rstrip("/").rsplit("/", 1)[-1])
        except BadInputError as exc:
            raise ValueError(str(exc.args[0])) from None
        if isinstance(self.movies, list) and (not self.movies or len(set(self.movies)) != len(self.movies)):
            raise ValueError("request field movies: expected a prefix or a non-empty list of distinct URIs")
        Knobs.with_overrides(self.knobs)
        return self


def parse_run_request(raw: Any) -> CryoemRunRequest:
    """`raw` as a :class:`CryoemRunRequest`, or one one-line InputValidationError
    (code ``invalid_request``) naming the first bad field."""
    if isinstance(raw, CryoemRunRequest):
        return raw
    if not isinstance(raw, dict):
        raise InputValidationError("cryoem request: expected a JSON object", code="invalid_request")
    try:
        return CryoemRunRequest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        text = first["msg"].removeprefix("Value error, ")
        message = text if text.startswith(("request field", "knobs.")) or not where else \
            f"request field {where}: {text}"
        more = len(exc.errors()) - 1
        raise InputValidationError(" ".join(message.split()) + (f" (and {more} more)" if more else ""),
                                   code="invalid_request") from None
