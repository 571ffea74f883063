"""Rigid alignment of one 3-D map onto another (numpy/scipy), for comparisons of maps that
need not share a frame: a de novo map and a reference-started one, or either and the true map.

A map refined from a de novo start sits in its own orientation and origin, and, since
projections cannot tell a structure from its mirror image, possibly in the other hand.
Comparing such maps voxel by voxel understates their agreement, so the moving map is
first placed onto the fixed one:

1. both maps are Fourier-cropped to at most ``COARSE_SIZE`` voxels a side (a low-pass and a
   smaller grid in one), normalised and given a soft spherical mask;
2. coarse search: for every rotation of a near-uniform grid over SO(3) (directions on a
   Fibonacci sphere x in-plane angles, ``COARSE_STEP_DEG`` apart), of the map and of its
   mirror image, the best translation is the peak of the cross-correlation computed by FFT;
3. local refinement: Nelder-Mead over a small rotation (rotation vector) and the shift,
   maximising the real-space correlation, from the ``REFINE_CANDIDATES`` best coarse poses,
   then once more for the winner on a finer grid (at most ``FINE_SIZE`` a side).

The transform: ``aligned(x) = moving(A (x - c - t) + c)`` with ``A = R^T`` (``M R^T`` for the
mirror image, ``M`` flipping z), ``c`` the box centre (voxel ``n // 2``, RELION's origin) and
``t`` the shift; voxel coordinates in the arrays' (z, y, x) order internally, reported in
(x, y, z).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

COARSE_SIZE = 20  # voxels a side for the global search: enough for the shape, cheap to rotate
FINE_SIZE = 48  # voxels a side for the final local refinement
COARSE_STEP_DEG = 30.0  # coarse grid spacing (1,104 poses with the mirror); local refinement does the rest
REFINE_CANDIDATES = 4
MIRROR = np.diag([-1.0, 1.0, 1.0])  # flips z in (z, y, x) voxel order: a change of hand


@dataclass(frozen=True)
class Alignment:
    """The pose that maps `moving` onto `fixed` (see the module docstring)."""

    rotation: np.ndarray  # 3x3, acting on (z, y, x) voxel coordinates
    shift: np.ndarray  # voxels, (z, y, x)
    mirrored: bool
    correlation: float  # real-space correlation of the aligned maps at the finest grid searched

    @property
    def angle_deg(self) -> float:
        """Magnitude of the rotation (degrees)."""
        return float(np.degrees(np.arccos(np.clip((np.trace(self.rotation) - 1.0) / 2.0, -1.0, 1.0))))

    def to_json(self, pixel_size: float) -> dict[str, Any]:
        """The record the guard keeps: rotation matrix and shift in (x, y, z) order."""
        rev = self.rotation[::-1, ::-1]  # (z, y, x) -> (x, y, z)
        shift = self.shift[::-1]
        return {"rotation_matrix_xyz": np.round(rev, 5).tolist(), "rotation_deg": round(self.angle_deg, 2),
                "shift_px_xyz": np.round(shift, 3).tolist(),
                "shift_angstrom_xyz": np.round(shift * pixel_size, 2).tolist(),
                "mirrored": self.mirrored, "correlation": round(self.correlation, 4)}


def rotation_matrix(rotvec_deg: np.ndarray) -> np.ndarray:
    """Rotation matrix from a rotation vector (axis x angle in degrees), (z, y, x) order."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(np.deg2rad(np.asarray(rotvec_deg, dtype=float))).as_matrix()


def transform(volume: np.ndarray, rotation: np.ndarray, shift: np.ndarray, *, mirrored: bool = False,
              order: int = 3) -> np.ndarray:
    """``volume`` rotated by `rotation` about the box centre, then shifted by `shift` voxels
    (the mirror image first if `mirrored`): the map :func:`align` returns the pose for."""
    from scipy.ndimage import affine_transform

    n = np.array(volume.shape, dtype=float)
    c = n // 2
    a = (MIRROR @ rotation.T) if mirrored else rotation.T
    offset = c - a @ (c + np.asarray(shift, dtype=float))
    return affine_transform(volume.astype(np.float64), a, offset=offset, order=order, mode="constant", cval=0.0)


def apply(volume: np.ndarray, alignment: Alignment, order: int = 3) -> np.ndarray:
    return transform(volume, alignment.rotation, alignment.shift, mirrored=alignment.mirrored, order=order)


def _crop(volume: np.ndarray, size: int) -> np.ndarray:
    """Fourier crop to `size` voxels a side (low-pass and resample, the box centre kept)."""
    n = volume.shape[0]
    if size >= n:
        return volume.astype(np.float64)
    f = np.fft.fftshift(np.fft.fftn(volume))
    lo = n // 2 - size // 2
    part = f[lo:lo + size, lo:lo + size, lo:lo + size]
    return np.real(np.fft.ifftn(np.fft.ifftshift(part)))


def _prepare(volume: np.ndarray, size: int) -> np.ndarray:
    v = _crop(volume, size)
    m = v.shape[0]
    r = np.sqrt(sum(g**2 for g in np.meshgrid(*[np.arange(m) - m // 2] * 3, indexing="ij")))
    edge = 0.45 * m
    mask = np.clip((edge - r) / (0.1 * m), 0.0, 1.0)  # soft edge: corners would rotate out of the box
    v = (v - v.mean()) * mask
    return v / (float(np.sqrt((v * v).sum())) or 1.0)


def rotation_grid(step_deg: float = COARSE_STEP_DEG) -> np.ndarray:
    """Near-uniform rotations (n, 3, 3): directions on a Fibonacci sphere spaced about
    `step_deg` apart, each with in-plane angles every `step_deg`."""
    from scipy.spatial.transform import Rotation

    step = np.deg2rad(step_deg)
    n_dir = max(2, int(round(4 * np.pi / step**2)))
    i = np.arange(n_dir) + 0.5
    tilt = np.arccos(1 - 2 * i / n_dir)
    rot = np.pi * (1 + 5**0.5) * i
    psi = np.arange(0.0, 2 * np.pi, step)
    eul = np.array([(r, t, p) for r, t in zip(rot, tilt, strict=True) for p in psi])
    return Rotation.from_euler("ZYZ", eul).as_matrix()


def _far_from_origin(size: int, max_shift: float) -> np.ndarray:
    """Cross-correlation lags beyond `max_shift` voxels (FFT order)."""
    idx = (np.arange(size) + size // 2) % size - size // 2
    return np.sqrt(idx[:, None, None] ** 2 + idx[None, :, None] ** 2 + idx[None, None, :] ** 2) > max_shift


def _best_shift(fixed_f: np.ndarray, moved: np.ndarray, far: np.ndarray) -> tuple[float, np.ndarray]:
    """(normalised peak correlation, shift in voxels) of `moved` against the fixed map's FFT,
    among the lags not in `far`."""
    cc = np.fft.irfftn(np.conj(fixed_f) * np.fft.rfftn(moved), s=moved.shape, axes=(0, 1, 2))
    cc[far] = -np.inf
    peak = np.unravel_index(int(np.argmax(cc)), cc.shape)
    m = moved.shape[0]
    norm = float(np.sqrt((moved * moved).sum())) or 1.0  # (not linalg.norm: its BLAS dot was 5x slower here)
    # the peak is where moved(x + s) best matches fixed: moved must move by -s
    return float(cc[peak]) / norm, -np.array([(p + m // 2) % m - m // 2 for p in peak], dtype=float)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum()) / denom if denom > 0 else 0.0


def _refine(fixed: np.ndarray, moving: np.ndarray, rotation: np.ndarray, shift: np.ndarray, mirrored: bool,
            *, step_deg: float, step_px: float) -> tuple[float, np.ndarray, np.ndarray]:
    from scipy.optimize import minimize

    def pose(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return rotation_matrix(p[:3]) @ rotation, shift + p[3:]

    def cost(p: np.ndarray) -> float:
        r, t = pose(p)
        return -_corr(fixed, transform(moving, r, t, mirrored=mirrored, order=1))

    simplex = np.zeros((7, 6))
    simplex[1:4, :3] = np.eye(3) * step_deg
    simplex[4:7, 3:] = np.eye(3) * step_px
    res = minimize(cost, np.zeros(6), method="Nelder-Mead",
                   options={"initial_simplex": simplex, "xatol": 0.05, "fatol": 1e-5, "maxiter": 500})
    r, t = pose(res.x)
    return -float(res.fun), r, t


def align(fixed: np.ndarray, moving: np.ndarray, *, mirror: bool = True,
          step_deg: float = COARSE_STEP_DEG) -> Alignment:
    """The rigid pose (and hand, if `mirror`) that best places `moving` onto `fixed`: two
    cubic maps of one size."""
    if fixed.shape != moving.shape or len(set(fixed.shape)) != 1:
        raise ValueError(f"alignment needs two cubic maps of one size, got {fixed.shape} and {moving.shape}")
    n = fixed.shape[0]
    coarse = min(n, COARSE_SIZE)
    coarse -= coarse % 2
    f_c, m_c = _prepare(fixed, coarse), _prepare(moving, coarse)
    fixed_f = np.fft.rfftn(f_c)
    zero = np.zeros(3)
    far = _far_from_origin(coarse, coarse / 4)
    hits: list[tuple[float, np.ndarray, np.ndarray, bool]] = []
    for mirrored in (False, True) if mirror else (False,):
        for r in rotation_grid(step_deg):
            score, t = _best_shift(fixed_f, transform(m_c, r, zero, mirrored=mirrored, order=1), far)
            hits.append((score, r, t, mirrored))
    hits.sort(key=lambda h: -h[0])
    picked: list[tuple[float, np.ndarray, np.ndarray, bool]] = []
    for h in hits:  # distinct starts: neighbours of a better pose would refine to the same one
        if all(h[3] != p[3] or _angle(h[1], p[1]) > 1.5 * step_deg for p in picked):
            picked.append(h)
        if len(picked) == REFINE_CANDIDATES:
            break
    refined = [(*_refine(f_c, m_c, r, t, mirrored, step_deg=step_deg / 3, step_px=0.5), mirrored)
               for _, r, t, mirrored in picked]
    _, r, t, mirrored = max(refined, key=lambda x: x[0])
    fine = min(n, FINE_SIZE)
    fine -= fine % 2
    f_f, m_f = _prepare(fixed, fine), _prepare(moving, fine)
    score, r, t = _refine(f_f, m_f, r, t * fine / coarse, mirrored, step_deg=2.0, step_px=0.5)
    return Alignment(rotation=r, shift=t * n / fine, mirrored=mirrored, correlation=score)


def refine_identity(fixed: np.ndarray, moving: np.ndarray) -> Alignment:
    """The best pose near no turn and no shift (local refinement only, same hand): for two
    maps meant to share a frame, how well they fit as they are."""
    n = fixed.shape[0]
    fine = min(n, FINE_SIZE)
    fine -= fine % 2
    score, r, t = _refine(_prepare(fixed, fine), _prepare(moving, fine), np.eye(3), np.zeros(3), False,
                          step_deg=2.0, step_px=0.5)
    return Alignment(rotation=r, shift=t * n / fine, mirrored=False, correlation=score)


def _angle(r1: np.ndarray, r2: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(r1.T @ r2) - 1.0) / 2.0, -1.0, 1.0))))
