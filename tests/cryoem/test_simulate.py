"""The simulator: deterministic by seed, and its truth matches what it wrote."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from foldstack.core.errors import BadInputError
from foldstack.cryoem.mrc import read_mrc
from foldstack.cryoem.request import load_request
from foldstack.cryoem.simulate import SimParams, simulate

pytestmark = pytest.mark.skipif(shutil.which("relion_project") is None, reason="Debian relion not installed")
TINY = SimParams(micrographs=2, particles_per_micrograph=4, box=32, pixel_size=5.0, frames=3, seed=11,
                 particle_diameter=130.0)


def _digest(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "truth.json"}


def test_same_seed_same_dataset_other_seed_differs(tmp_path):
    a = simulate(tmp_path / "a", TINY)
    b = simulate(tmp_path / "b", TINY)
    c = simulate(tmp_path / "c", SimParams(**{**TINY.__dict__, "seed": 12}))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert a["micrographs"] == b["micrographs"]
    assert _digest(tmp_path / "a")["movies/mic_000.mrcs"] != _digest(tmp_path / "c")["movies/mic_000.mrcs"]
    assert a["micrographs"][0]["defocus_mean"] != c["micrographs"][0]["defocus_mean"]


def test_dataset_is_a_valid_request_with_its_truth(tmp_path):
    truth = simulate(tmp_path / "d", TINY)
    req = load_request(tmp_path / "d")
    assert len(req.movies) == 2 and req.frames == 3 and req.box_size == 32
    assert read_mrc(tmp_path / "d" / "truth" / "true_map.mrc").shape == (32, 32, 32)
    on_disk = json.loads((tmp_path / "d" / "truth" / "truth.json").read_text())
    assert on_disk["micrographs"] == json.loads(json.dumps(truth["micrographs"]))
    first = on_disk["micrographs"][0]
    assert first["shifts_px"][0] == [0.0, 0.0] and len(first["shifts_px"]) == 3
    assert len(first["particles"]) == 4
    assert (tmp_path / "d" / "reference" / "7DDO.pdb.gz").is_file()


def test_refuses_to_overwrite_a_dataset(tmp_path):
    simulate(tmp_path / "d", TINY)
    with pytest.raises(BadInputError, match="already holds a dataset"):
        simulate(tmp_path / "d", TINY)
