"""The CryoEM request: movies, optics, particle diameter, box size, symmetry.

Read from a dataset's ``request.json`` (what ``foldstack cryoem demo-data`` writes) or
built in code; :func:`validate_request` checks every field and the movies' headers (same
frame count and frame size across movies, via mrcfile / Pillow, no data read) and raises
one one-line :class:`BadInputError` naming the field. It writes nothing.

``movies`` is a directory (its ``*.mrc``, ``*.mrcs``, ``*.tif``, ``*.tiff``) or a list of
files; relative paths are relative to the request file's folder."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from foldstack.core.errors import BadInputError
from foldstack.cryoem.mrc import MOVIE_SUFFIXES, MovieHeader, movie_header

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


def check_headers(paths: list[Path]) -> MovieHeader:
    """All movies must have the same frame count (>= 2) and frame size; returns the first header."""
    headers = [movie_header(p) for p in paths]
    first = headers[0]
    if first.frames < 2:
        raise BadInputError(f"request field movies: {first.path.name} has {first.frames} frame(s); movies need >= 2")
    for h in headers[1:]:
        if (h.frames, h.ny, h.nx) != (first.frames, first.ny, first.nx):
            raise BadInputError(
                f"request field movies: {h.path.name} is {h.frames} x {h.ny} x {h.nx} (frames x y x x), "
                f"{first.path.name} is {first.frames} x {first.ny} x {first.nx}; all movies must match")
    return first


def parse_request(data: Any, *, base: Path) -> CryoemRequest:
    """Validate a request dict (see module docstring); `base` resolves relative paths."""
    if not isinstance(data, dict):
        raise BadInputError("request: expected a JSON object")
    unknown = set(data) - {"movies", "optics", "particle_diameter", "box_size", "symmetry", "reference"}
    if unknown:
        raise BadInputError(f"request field {sorted(unknown)[0]} is not known")
    optics_raw = data.get("optics")
    if not isinstance(optics_raw, dict):
        raise BadInputError("request field optics is missing or not an object")
    optics = Optics(**{k: _number(optics_raw, k, "optics.") for k in
                       ("pixel_size", "voltage_kv", "cs_mm", "amplitude_contrast", "dose_per_frame")})
    diameter = _number(data, "particle_diameter", "")
    box = data.get("box_size")
    if isinstance(box, bool) or not isinstance(box, int) or not MIN_BOX <= box <= MAX_BOX or box % 2:
        raise BadInputError(f"request field box_size={box!r}: expected an even whole number {MIN_BOX} to {MAX_BOX}")
    if diameter / optics.pixel_size > box:
        raise BadInputError(
            f"request field box_size={box}: smaller than the particle ({diameter:g} Å = "
            f"{diameter / optics.pixel_size:.0f} px at {optics.pixel_size:g} Å/px)")
    symmetry = data.get("symmetry", "C1")
    if not isinstance(symmetry, str) or not SYMMETRY.match(symmetry.upper()):
        raise BadInputError(f"request field symmetry={symmetry!r}: expected C<n>, D<n>, T, O or I")
    reference = data.get("reference")
    ref_path = None
    if reference is not None:
        if not isinstance(reference, str):
            raise BadInputError("request field reference: expected a file path")
        ref_path = (base / reference).resolve()
        if not ref_path.is_file():
            raise BadInputError(f"request field reference: {ref_path} does not exist")
        if not ref_path.name.lower().endswith((".mrc", ".map", ".pdb", ".cif", ".pdb.gz", ".cif.gz")):
            raise BadInputError(
                f"request field reference: {ref_path.name} is not a map (.mrc/.map) or model (.pdb/.cif)")
    movies = _movie_paths(data.get("movies"), base)
    header = check_headers(movies)
    if min(header.ny, header.nx) < 2 * box:
        raise BadInputError(f"request field box_size={box}: micrographs ({header.nx} x {header.ny}) are too small")
    return CryoemRequest(movies=movies, optics=optics, particle_diameter=diameter, box_size=box,
                         symmetry=symmetry.upper(), frames=header.frames, frame_shape=(header.ny, header.nx),
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
