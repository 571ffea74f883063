"""From a :class:`CryoemRunRequest` to what the workflow runs: the movie list (a prefix or
folder listed, a list checked), the run id, the preprocessing batches and the size class.

Shared by Validate Input and Stage Inputs (``foldstack.cryoem.tasks``) and by local mode,
so a run is planned the same way wherever it is submitted. Reads only listings and the
movies' headers, on S3 with ranged reads (same frame count and size, big enough for the
box: :mod:`foldstack.cryoem.headers`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from foldstack import storage
from foldstack.core.errors import InputValidationError
from foldstack.core.runid import RUN_ID_MAX_WITH_ATTEMPTS, RUN_ID_PATTERN
from foldstack.core.uris import parse_uri, require_under
from foldstack.cryoem.headers import check_consistent, read_movie_headers
from foldstack.cryoem.mrc import MOVIE_SUFFIXES
from foldstack.cryoem.request import CryoemRunRequest

_HASH_CHARS = 16
MAX_MOVIES = 100_000


def batch_name(index: int) -> str:
    return f"batch-{index:03d}"


def batches_of(movies: Sequence[str], size: int) -> dict[str, list[str]]:
    """Consecutive movies, `size` to a batch, named ``batch-000``, ``batch-001``, ..."""
    size = max(1, size)
    return {batch_name(i // size): list(movies[i:i + size]) for i in range(0, len(movies), size)}


def _is_movie(uri: str) -> bool:
    return uri.lower().endswith(MOVIE_SUFFIXES)


def _absolute(uri: str, base: Path | None) -> str:
    """An S3 URI as it is; a local path or file:// URI as an absolute path (relative ones
    against `base`, the folder of the request file)."""
    if uri.startswith("s3://"):
        parse_uri(uri)
        return uri
    path = uri[7:] if uri.startswith("file://") else uri
    return str(((base or Path.cwd()) / path).resolve()) if not Path(path).is_absolute() else str(Path(path))


def _bad(message: str, code: str = "invalid_request") -> InputValidationError:
    return InputValidationError(message, code=code)


def resolve_movies(request: CryoemRunRequest, *, base: Path | None = None,
                   allowed_prefixes: Sequence[str] = ()) -> list[str]:
    """Every movie of the request (sorted URIs): a prefix or folder is listed for .mrc,
    .mrcs, .tif and .tiff files; a list is checked file by file. With `allowed_prefixes`,
    every movie must lie under one (AccessDeniedError)."""
    if isinstance(request.movies, str) and not _is_movie(request.movies):
        root = _absolute(request.movies, base)
        if allowed_prefixes:
            require_under(root, tuple(allowed_prefixes), what="movies")
        movies = sorted(info.uri for info in storage.list_prefix(root) if _is_movie(info.uri)
                        and "/" not in info.uri[len(root.rstrip("/")) + 1:])
        if not movies:
            raise _bad(f"request field movies: {root} holds no .mrc/.mrcs/.tif/.tiff files", "input_not_found")
    else:
        items = [request.movies] if isinstance(request.movies, str) else list(request.movies)
        movies = sorted(_absolute(m, base) for m in items)
        for uri in movies:
            if not _is_movie(uri):
                raise _bad(f"request field movies: {uri.rsplit('/', 1)[-1]} is not .mrc, .mrcs, .tif or .tiff")
            if allowed_prefixes:
                require_under(uri, tuple(allowed_prefixes), what="movie")
            if not storage.exists(uri):
                raise _bad(f"request field movies: {uri} does not exist", "input_not_found")
    if len(movies) > MAX_MOVIES:
        raise _bad(f"request field movies: {len(movies)} movies; at most {MAX_MOVIES} in one run")
    stems = [m.rsplit("/", 1)[-1].split(".")[0] for m in movies]
    if len(set(stems)) != len(stems):
        raise _bad("request field movies: two movies share a name; micrograph names must be unique")
    return movies


def resolve_reference(request: CryoemRunRequest, *, base: Path | None = None,
                      allowed_prefixes: Sequence[str] = ()) -> str | None:
    if request.reference is None:
        return None
    uri = _absolute(request.reference, base)
    if allowed_prefixes:
        require_under(uri, tuple(allowed_prefixes), what="reference")
    if not storage.exists(uri):
        raise _bad(f"request field reference: {uri} does not exist", "input_not_found")
    return uri


def check_movie_headers(movies: Sequence[str], box_size: int) -> None:
    """Every movie's header, on S3 (ranged reads) or a local file system: one frame count
    and size, big enough for the box (:mod:`foldstack.cryoem.headers`). Nothing is read
    but the headers."""
    if movies:
        check_consistent(read_movie_headers(movies), box_size)


def run_id_for(request: CryoemRunRequest, movies: Sequence[str]) -> str:
    """Same request, same movies (by name), same id: ``<name>-<movies>-<16 hex>``. The
    movies' and reference's names count, not their folders (nor their contents: a movie
    replaced under the same name is the same run; rerun it to recompute)."""
    body = request.model_dump(mode="json", exclude={"movies", "name"})
    body["output_uri"] = request.output_uri.rstrip("/")
    # by name, not where they lie: local mode links them under its input prefix first
    body["movies"] = sorted(m.rsplit("/", 1)[-1] for m in movies)
    body["reference"] = request.reference.rstrip("/").rsplit("/", 1)[-1] if request.reference else None
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    tail = f"-{len(movies)}-{digest[:_HASH_CHARS]}"
    run_id = f"{request.name[:RUN_ID_MAX_WITH_ATTEMPTS - len(tail)].rstrip('-')}{tail}"
    assert RUN_ID_PATTERN.fullmatch(run_id), run_id
    return run_id


def size_class_for(box_size: int, classes: Sequence[tuple[str, int]]) -> str:
    """The first class (in declaration order) whose ``max_box_px`` holds the box."""
    for name, max_box in classes:
        if box_size <= max_box:
            return name
    largest = max((m for _, m in classes), default=0)
    raise _bad(f"request field box_size={box_size}: larger than the largest size class ({largest} px)", "too_large")


def request_from_dataset(dataset: Path, output: str, **overrides: object) -> CryoemRunRequest:
    """A dataset folder's ``request.json`` (what ``foldstack cryoem demo-data`` writes:
    movies and reference relative to it) as the cloud request, writing to `output`;
    `overrides`: more request fields (knobs, batch_size, reference, ...)."""
    from foldstack.cryoem.request import parse_run_request

    path = Path(dataset)
    path = path / "request.json" if path.is_dir() else path
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise _bad(f"{path}: not a dataset's request.json ({exc})", "input_not_found") from None
    if not isinstance(data, dict):
        raise _bad(f"{path}: expected a JSON object")
    data = {**data, **{k: v for k, v in overrides.items() if v is not None}, "output_uri": output}
    base = path.parent.resolve()
    movies = data.get("movies")
    if isinstance(movies, str):
        data["movies"] = _absolute(movies, base)
    elif isinstance(movies, list):
        data["movies"] = [_absolute(m, base) if isinstance(m, str) else m for m in movies]
    if isinstance(data.get("reference"), str):
        data["reference"] = _absolute(data["reference"], base)
    return parse_run_request(data)
