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


def test_truth_records_astigmatism_in_relion_convention(tmp_path):
    truth = simulate(tmp_path / "d", SimParams(**{**TINY.__dict__, "micrographs": 3, "max_astigmatism": 800.0}))
    for m in truth["micrographs"]:
        assert m["defocus_u"] >= m["defocus_v"] and m["defocus_u"] - m["defocus_v"] <= 800.0
        assert m["defocus_mean"] == pytest.approx((m["defocus_u"] + m["defocus_v"]) / 2)
        assert 0.0 <= m["defocus_angle"] < 180.0


def test_simulated_astigmatism_is_recovered(tmp_path):
    """The estimator on a simulated micrograph (frames summed at the true shifts): the
    simulator's CTF and the estimator's agree on U, V and the angle's convention."""
    import numpy as np

    from foldstack.cryoem.ctf import estimate_micrograph

    params = SimParams(micrographs=1, particles_per_micrograph=36, box=40, pixel_size=4.0, frames=4, seed=4,
                       max_astigmatism=1500.0)
    m = simulate(tmp_path / "d", params)["micrographs"][0]
    movie = read_mrc(tmp_path / "d" / "movies" / "mic_000.mrcs").astype(float)
    ky, kx = np.fft.fftfreq(movie.shape[1])[:, None], np.fft.rfftfreq(movie.shape[2])[None, :]
    summed = sum(np.fft.irfft2(np.fft.rfft2(f) * np.exp(2j * np.pi * (kx * dx + ky * dy)), s=f.shape)
                 for f, (dx, dy) in zip(movie, m["shifts_px"], strict=True))
    fit = estimate_micrograph(summed, params.pixel_size, voltage_kv=params.voltage_kv, cs_mm=params.cs_mm,
                              amplitude_contrast=params.amplitude_contrast)
    assert m["defocus_u"] - m["defocus_v"] > 200.0  # the seed draws enough astigmatism to test the angle
    assert fit.defocus_u == pytest.approx(m["defocus_u"], rel=0.02)
    assert fit.defocus_v == pytest.approx(m["defocus_v"], rel=0.02)
    diff = abs(fit.defocus_angle - m["defocus_angle"]) % 180.0
    assert min(diff, 180.0 - diff) < 10.0, (fit, m)
