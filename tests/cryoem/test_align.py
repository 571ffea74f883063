"""Rigid map alignment (foldstack.cryoem.align) on a synthetic, asymmetric "protein": a
known rotation, shift and change of hand must be recovered."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from foldstack.cryoem import align as A
from foldstack.cryoem.fsc import fsc_curve, resolution_at

BOX, PX = 32, 4.0


def pseudo_protein(seed: int = 0, blobs: int = 40, spread: tuple[float, float, float] = (3.5, 3.5, 3.5)) -> np.ndarray:
    """Gaussian "domains" of mixed sizes scattered asymmetrically, `spread` voxels (sd) along
    z, y, x: globular by default."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(BOX) - BOX // 2] * 3, indexing="ij"), axis=-1).astype(float)
    vol = np.zeros((BOX,) * 3)
    for _ in range(blobs):
        centre = rng.normal(0, spread, 3) + np.array([1.5, -1.0, 0.5])
        sigma = rng.uniform(1.0, 2.2)
        vol += rng.uniform(0.5, 1.5) * np.exp(-((grid - centre) ** 2).sum(-1) / (2 * sigma**2))
    return vol


def _noisy(vol: np.ndarray, seed: int, level: float = 0.05) -> np.ndarray:
    return vol + np.random.default_rng(seed).normal(0, level * vol.std(), vol.shape)


def _fsc143(a: np.ndarray, b: np.ndarray) -> float:
    return resolution_at(fsc_curve(a, b, PX), 0.143)


def test_rotation_grid_covers_so3():
    grid = A.rotation_grid(30.0)
    assert np.allclose(grid @ grid.transpose(0, 2, 1), np.eye(3), atol=1e-9)
    # every random rotation lies within the grid's spacing of a grid point
    probes = Rotation.random(40, random_state=1).as_matrix()
    worst = max(min(A._angle(p, g) for g in grid) for p in probes)
    assert worst < 30.0, worst


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.slow
def test_known_rotation_and_shift_are_recovered(seed):
    vol = pseudo_protein()
    true_rot = Rotation.random(random_state=seed).as_matrix()
    shift = np.random.default_rng(seed).uniform(-3, 3, 3)
    moved = _noisy(A.transform(vol, true_rot, shift), seed)
    pose = A.align(vol, moved)
    assert not pose.mirrored
    # the pose undoes the applied rotation: their composition is (nearly) the identity
    assert A._angle(pose.rotation @ true_rot, np.eye(3)) < 10.0
    reference = _fsc143(vol, _noisy(vol, seed))  # the same noise, no rotation
    assert _fsc143(vol, A.apply(moved, pose)) <= reference * 1.1
    assert _fsc143(vol, moved) > 3 * reference  # and unaligned, the comparison fails
    assert pose.correlation > 0.9


@pytest.mark.slow
def test_mirror_image_is_recognised():
    vol = pseudo_protein(seed=3)
    rot = Rotation.from_euler("ZYZ", [70, 110, -40], degrees=True).as_matrix()
    moved = _noisy(A.transform(vol, rot, np.array([1.0, 2.0, -2.0]))[:, ::-1, :], 5)  # other hand
    pose = A.align(vol, moved)
    assert pose.mirrored
    assert _fsc143(vol, A.apply(moved, pose)) <= 1.1 * _fsc143(vol, _noisy(vol, 5))
    # without the mirror search the best proper rotation cannot match the other hand as well
    # (a low-resolution blob cloud is nearly its own mirror image, hence the small margin)
    proper = A.align(vol, moved, mirror=False)
    assert proper.correlation < pose.correlation - 0.03
    assert _fsc143(vol, A.apply(moved, proper)) > _fsc143(vol, A.apply(moved, pose))


@pytest.mark.slow
def test_identity_and_record():
    vol = pseudo_protein(seed=4)
    pose = A.align(vol, _noisy(vol, 6), mirror=False)
    assert pose.angle_deg < 2.0 and np.abs(pose.shift).max() < 0.5
    rec = pose.to_json(PX)
    assert set(rec) == {"rotation_matrix_xyz", "rotation_deg", "shift_px_xyz", "shift_angstrom_xyz", "mirrored",
                        "correlation"}
    assert rec["mirrored"] is False and len(rec["rotation_matrix_xyz"]) == 3


def test_maps_of_different_sizes_are_refused():
    with pytest.raises(ValueError, match="two cubic maps of one size"):
        A.align(np.zeros((32, 32, 32)), np.zeros((30, 30, 30)))


@pytest.mark.slow
def test_map_vs_truth_aligns_a_map_in_its_own_frame(tmp_path):
    from foldstack.cryoem.mrc import write_mrc
    from foldstack.cryoem.truth import map_vs_truth

    vol = pseudo_protein(seed=9).astype(np.float32)
    (tmp_path / "truth").mkdir()
    write_mrc(tmp_path / "truth" / "true_map.mrc", vol, PX)
    rot = Rotation.from_euler("ZYZ", [-60, 45, 200], degrees=True).as_matrix()
    write_mrc(tmp_path / "denovo.mrc", _noisy(A.transform(vol, rot, np.array([0.0, 1.0, -2.0])), 2)
              .astype(np.float32), PX)
    as_is = map_vs_truth(tmp_path, tmp_path / "denovo.mrc", PX)
    aligned = map_vs_truth(tmp_path, tmp_path / "denovo.mrc", PX, align=True)
    assert "alignment" not in as_is and aligned["alignment"]["mirrored"] is False
    assert aligned["resolution_fsc_0.5"] < 0.5 * as_is["resolution_fsc_0.5"], (aligned, as_is)


def test_refine_identity_finds_a_small_turn_and_shift_without_a_global_search():
    fixed = pseudo_protein(3)
    turn = Rotation.from_rotvec(np.radians([4.0, -3.0, 2.0])).as_matrix()
    moving = _noisy(A.transform(fixed, turn, np.array([0.8, -0.5, 0.0])), seed=4)
    local = A.refine_identity(fixed, moving)
    assert not local.mirrored and local.angle_deg < 10.0 and float(abs(local.shift).max()) < 2.0
    assert local.correlation > A._corr(fixed, moving)  # it refined away from no turn at all
    unrelated = A.refine_identity(fixed, _noisy(pseudo_protein(9), seed=5))
    assert unrelated.correlation < local.correlation - 0.1
