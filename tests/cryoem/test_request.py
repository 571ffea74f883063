"""Request validation: every bad field is one BadInputError naming it; nothing is written."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from foldstack.core.errors import BadInputError
from foldstack.cryoem.mrc import write_mrc
from foldstack.cryoem.request import load_request, parse_request

GOOD = {
    "movies": "movies",
    "optics": {"pixel_size": 2.5, "voltage_kv": 300, "cs_mm": 2.7, "amplitude_contrast": 0.1, "dose_per_frame": 1.5},
    "particle_diameter": 130,
    "box_size": 64,
    "symmetry": "C1",
}


def _movies(root: Path, shapes: list[tuple[int, int, int]]) -> None:
    (root / "movies").mkdir()
    for i, shape in enumerate(shapes):
        write_mrc(root / "movies" / f"m{i}.mrcs", np.zeros(shape, np.float32), 2.5)


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_good_request_reads_headers(tmp_path):
    _movies(tmp_path, [(4, 160, 192)] * 3)
    (tmp_path / "request.json").write_text(json.dumps(GOOD))
    req = load_request(tmp_path)
    assert [p.name for p in req.movies] == ["m0.mrcs", "m1.mrcs", "m2.mrcs"]
    assert (req.frames, req.frame_shape) == (4, (160, 192))
    assert req.optics.pixel_size == 2.5 and req.symmetry == "C1"


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r["optics"].pop("voltage_kv"), r"optics\.voltage_kv is missing"),
    (lambda r: r["optics"].update(pixel_size=-1), r"optics\.pixel_size=-1: expected"),
    (lambda r: r["optics"].update(cs_mm="2.7"), r"optics\.cs_mm: expected a number"),
    (lambda r: r["optics"].update(amplitude_contrast=0.9), r"optics\.amplitude_contrast=0\.9"),
    (lambda r: r["optics"].update(dose_per_frame=float("nan")), r"optics\.dose_per_frame: expected a number"),
    (lambda r: r.update(particle_diameter=3), r"particle_diameter=3"),
    (lambda r: r.update(box_size=63), r"box_size=63: expected an even"),
    (lambda r: r.update(box_size=40), r"box_size=40: smaller than the particle"),
    (lambda r: r.update(symmetry="C0"), r"symmetry='C0'"),
    (lambda r: r.update(symmetry="X2"), r"symmetry='X2'"),
    (lambda r: r.update(movies=[]), r"movies: expected a directory"),
    (lambda r: r.update(movies=["movies/none.mrcs"]), r"movies: .*none\.mrcs does not exist"),
    (lambda r: r.update(movies=["request.json"]), r"movies: request\.json is not \.mrc"),
    (lambda r: r.update(reference="nope.pdb"), r"reference: .*nope\.pdb does not exist"),
    (lambda r: r.update(extra=1), r"field extra is not known"),
])
def test_bad_field_is_named_and_nothing_written(tmp_path, change, message):
    _movies(tmp_path, [(4, 160, 192)] * 2)
    request = copy.deepcopy(GOOD)
    change(request)
    before = _listing(tmp_path)
    with pytest.raises(BadInputError, match=message) as info:
        parse_request(request, base=tmp_path)
    assert "\n" not in str(info.value)
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("symmetry", ["C1", "c7", "D2", "T", "O", "I", "I3"])
def test_symmetries_accepted(tmp_path, symmetry):
    _movies(tmp_path, [(4, 160, 192)])
    assert parse_request({**GOOD, "symmetry": symmetry}, base=tmp_path).symmetry == symmetry.upper()


def test_movies_must_agree_on_frames_and_size(tmp_path):
    _movies(tmp_path, [(4, 160, 192), (5, 160, 192)])
    with pytest.raises(BadInputError, match=r"movies: m1\.mrcs is 5 x 160 x 192 .* all movies must match"):
        parse_request(GOOD, base=tmp_path)


def test_single_frame_is_not_a_movie(tmp_path):
    _movies(tmp_path, [(1, 160, 192)])
    with pytest.raises(BadInputError, match="needs? >= 2"):
        parse_request(GOOD, base=tmp_path)


def test_garbled_movie_is_named(tmp_path):
    _movies(tmp_path, [(4, 160, 192)])
    (tmp_path / "movies" / "m1.mrcs").write_bytes(b"not an mrc file" * 100)
    with pytest.raises(BadInputError, match=r"m1\.mrcs is not a readable MRC"):
        parse_request(GOOD, base=tmp_path)


def test_a_movie_cut_short_is_refused_before_anything_runs(tmp_path):
    _movies(tmp_path, [(4, 160, 192)] * 2)
    movie = tmp_path / "movies" / "m1.mrcs"
    movie.write_bytes(movie.read_bytes()[:-160 * 192 * 4])  # the last frame lost in a copy
    before = _listing(tmp_path)
    with pytest.raises(BadInputError) as info:
        parse_request(GOOD, base=tmp_path)
    assert info.value.code == "truncated_movie" and "m1.mrcs is truncated" in str(info.value)
    assert _listing(tmp_path) == before


@pytest.mark.parametrize(("shapes", "box", "garble", "code"), [
    ([(4, 160, 192)] * 2, 64, True, "unreadable_movie"),
    ([(4, 160, 192), (4, 160, 190)], 64, False, "inconsistent_movies"),
    ([(4, 100, 192)] * 2, 64, False, "invalid_request"),
])
def test_movie_checks_carry_the_workflow_checks_codes(tmp_path, shapes, box, garble, code):
    # run-local and the workflow's Validate Input share one implementation (foldstack.cryoem.headers)
    _movies(tmp_path, shapes)
    if garble:
        (tmp_path / "movies" / "m1.mrcs").write_bytes(b"\xff" * 2048)
    with pytest.raises(BadInputError) as info:
        parse_request({**GOOD, "box_size": box}, base=tmp_path)
    assert info.value.code == code and str(info.value).startswith(f"[{code}] request field ")
    assert "\n" not in str(info.value)


def test_missing_request_file(tmp_path):
    with pytest.raises(BadInputError, match="request not found"):
        load_request(tmp_path)
