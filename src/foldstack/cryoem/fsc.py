"""Fourier shell correlation between two maps (numpy), for comparisons RELION's
postprocess does not make: a refined map against the simulator's true map, and the two
refinements of the reference-bias guard."""

from __future__ import annotations

import numpy as np


def fsc_curve(a: np.ndarray, b: np.ndarray, pixel_size: float) -> list[tuple[float, float]]:
    """[(resolution Å, FSC)] per shell from 1 to Nyquist, for two cubic maps of one size."""
    if a.shape != b.shape or len(set(a.shape)) != 1:
        raise ValueError(f"FSC needs two cubic maps of one size, got {a.shape} and {b.shape}")
    n = a.shape[0]
    fa, fb = np.fft.fftn(a), np.fft.fftn(b)
    freq = np.fft.fftfreq(n)
    kz, ky, kx = np.meshgrid(freq, freq, freq, indexing="ij")
    shell = np.rint(np.sqrt(kx * kx + ky * ky + kz * kz) * n).astype(int).ravel()
    num = np.bincount(shell, (fa * np.conj(fb)).real.ravel())
    da = np.bincount(shell, (np.abs(fa) ** 2).ravel())
    db = np.bincount(shell, (np.abs(fb) ** 2).ravel())
    curve = []
    for s in range(1, n // 2 + 1):
        denom = np.sqrt(da[s] * db[s])
        curve.append((n * pixel_size / s, float(num[s] / denom) if denom > 0 else 0.0))
    return curve


def resolution_at(curve: list[tuple[float, float]], threshold: float) -> float:
    """The resolution (Å) where the FSC first falls below `threshold`, interpolated between
    shells; the last shell's resolution if it never does."""
    prev_res, prev_fsc = curve[0]
    if prev_fsc < threshold:
        return prev_res
    for res, value in curve[1:]:
        if value < threshold:
            t = (prev_fsc - threshold) / (prev_fsc - value)
            inv = (1 / prev_res) + t * (1 / res - 1 / prev_res)
            return float(1 / inv)
        prev_res, prev_fsc = res, value
    return float(curve[-1][0])
