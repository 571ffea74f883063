"""The reference-bias guard's comparison, and the FSC it uses, on synthetic maps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from foldstack.cryoem.fsc import fsc_curve, resolution_at
from foldstack.cryoem.mrc import write_mrc
from foldstack.cryoem.pipeline import bias_guard

BOX, PX = 32, 4.0


def _blob(seed: int) -> np.ndarray:
    """A random map low-passed to ~12 Å (the scale a refinement here resolves)."""
    rng = np.random.default_rng(seed)
    f = np.fft.fftn(rng.normal(size=(BOX,) * 3))
    k = np.sqrt(sum(g**2 for g in np.meshgrid(*[np.fft.fftfreq(BOX, d=PX)] * 3, indexing="ij")))
    return np.real(np.fft.ifftn(f * (k < 1 / 12.0))).astype(np.float32)


def _refine_dir(root, name, volume, gold):
    d = root / name
    (d / "Refine3D").mkdir(parents=True)
    write_mrc(d / "Refine3D" / "run_class001.mrc", volume, PX)
    (d / "refine3d.json").write_text(json.dumps({"gold_standard_resolution": gold, "particles": 100}))
    return d


def test_fsc_of_a_map_with_itself_is_one_and_with_another_is_low():
    a, b = _blob(1), _blob(2)
    assert all(v == pytest.approx(1.0) for _, v in fsc_curve(a, a, PX)[:8])
    assert resolution_at(fsc_curve(a, b, PX), 0.143) > 40.0


def test_guard_agrees_on_the_same_structure_and_flags_another(tmp_path):
    rng = np.random.default_rng(0)
    truth = _blob(1)
    main = _refine_dir(tmp_path, "main", truth + rng.normal(0, 0.02, truth.shape).astype(np.float32), 14.0)
    same = _refine_dir(tmp_path, "same", truth + rng.normal(0, 0.02, truth.shape).astype(np.float32), 16.0)
    other = _refine_dir(tmp_path, "other", _blob(5), 16.0)
    ok = bias_guard(main, same, PX)
    assert ok["flagged"] is False and ok["cross_resolution_fsc_0.143"] < 16.0
    bad = bias_guard(main, other, PX)
    assert bad["flagged"] is True and bad["cross_resolution_fsc_0.143"] > 1.5 * 16.0
