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


@pytest.mark.slow
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


@pytest.mark.slow
def test_guard_aligns_a_map_in_another_frame_and_hand(tmp_path):
    """A de novo-like guard map (same structure, rotated, shifted and mirrored) agrees after
    alignment, and the guard records the pose; compared voxel by voxel it would be flagged."""
    from scipy.spatial.transform import Rotation

    from foldstack.cryoem import align as A
    from tests.cryoem.test_align import pseudo_protein

    rng = np.random.default_rng(1)
    truth = pseudo_protein(seed=7).astype(np.float32)
    rot = Rotation.from_euler("ZYZ", [35, 80, 150], degrees=True).as_matrix()
    other_frame = A.transform(truth, rot, np.array([2.0, -1.0, 1.0]))[::-1].copy()  # mirrored: the other hand
    main = _refine_dir(tmp_path, "main", truth + rng.normal(0, 0.05 * truth.std(), truth.shape).astype(np.float32),
                       14.0)
    guard = _refine_dir(tmp_path, "guard", (other_frame + rng.normal(0, 0.05 * truth.std(), truth.shape))
                        .astype(np.float32), 16.0)
    res = bias_guard(main, guard, PX, same_frame=False)
    assert res["flagged"] is False, res
    assert res["cross_resolution_fsc_0.143_unaligned"] > 1.5 * 16.0
    assert res["cross_resolution_fsc_0.143"] == res["cross_resolution_fsc_0.143_aligned"] < 16.0
    pose = res["alignment"]
    assert pose["mirrored"] is True and pose["correlation"] > 0.9


@pytest.mark.slow
def test_unrelated_globular_maps_stay_flagged_in_one_frame(tmp_path):
    """Two different pseudo-proteins of one size: freely aligned they agree to ~18 Å at this
    resolution (a globule matches a globule), so with a shared frame the turned pose does
    not count and the guard flags them."""
    from tests.cryoem.test_align import pseudo_protein

    main = _refine_dir(tmp_path, "main", pseudo_protein(seed=7).astype(np.float32), 14.0)
    other = _refine_dir(tmp_path, "other", pseudo_protein(seed=8).astype(np.float32), 16.0)
    res = bias_guard(main, other, PX)
    assert res["flagged"] is True and res["pose_near_identity"] is False, res
    assert res["cross_resolution_fsc_0.143"] == res["cross_resolution_fsc_0.143_unaligned"] > 1.5 * 16.0
