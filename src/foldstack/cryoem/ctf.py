"""The contrast transfer function (RELION's convention) and a CTF estimator.

One home for the CTF model: the simulator applies it, the estimator fits it.

Convention (RELION's ``CTF::getCTF``): defocus in Å, positive underfocus;
``chi(k) = pi*lambda*dz*k^2 - pi/2*Cs*lambda^3*k^4`` and
``CTF = sqrt(1-A^2)*sin(chi) + A*cos(chi)`` (positive at low frequency: RELION expects
protein white, so raw micrographs, where protein is dark, are ``-CTF (x) object`` and are
extracted with ``--invert_contrast``).

Estimator (CTFFIND is not packaged in Debian, so local mode has its own): the periodogram
average of overlapping tiles of the motion-corrected micrograph, rotationally averaged;
for every trial defocus, the 1-D spectrum is fitted by linear least squares as
``background(k) + envelope(k) * CTF(k)^2`` (both low-order polynomials in k), and the
defocus with the smallest residual wins (grid, then a finer grid around the best). The fit
resolution is the highest frequency up to which the background-subtracted spectrum still
correlates with CTF^2 (correlation >= 0.5 in windows of 16 samples), the figure of merit the overall
correlation. Astigmatism is not estimated: the rotational average gives the mean defocus,
reported as ``DefocusU = DefocusV``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

POLY_DEGREE = 3
WINDOW_CC_FLOOR = 0.5


def wavelength_angstrom(voltage_kv: float) -> float:
    """Relativistic electron wavelength (Å)."""
    volts = voltage_kv * 1e3
    return 12.2643247 / np.sqrt(volts * (1.0 + volts * 0.978466e-6))


def ctf_values(k: np.ndarray, defocus: np.ndarray | float, *, voltage_kv: float, cs_mm: float,
               amplitude_contrast: float) -> np.ndarray:
    """CTF at spatial frequencies `k` (1/Å) for defocus (Å, broadcast against k)."""
    lam = wavelength_angstrom(voltage_kv)
    cs = cs_mm * 1e7
    k2 = k * k
    chi = np.pi * lam * defocus * k2 - 0.5 * np.pi * cs * lam**3 * k2 * k2
    return np.sqrt(1.0 - amplitude_contrast**2) * np.sin(chi) + amplitude_contrast * np.cos(chi)


def ctf_image(shape: tuple[int, int], pixel_size: float, *, defocus_u: float, defocus_v: float,
              angle_deg: float, voltage_kv: float, cs_mm: float, amplitude_contrast: float) -> np.ndarray:
    """The CTF on numpy's ``rfft2`` grid for an image of `shape` (rows, cols)."""
    ky = np.fft.fftfreq(shape[0], d=pixel_size)[:, None]
    kx = np.fft.rfftfreq(shape[1], d=pixel_size)[None, :]
    k = np.sqrt(kx * kx + ky * ky)
    theta = np.arctan2(ky, kx)
    mean, half = (defocus_u + defocus_v) / 2.0, (defocus_u - defocus_v) / 2.0
    dz = mean + half * np.cos(2.0 * (theta - np.deg2rad(angle_deg)))
    return ctf_values(k, dz, voltage_kv=voltage_kv, cs_mm=cs_mm, amplitude_contrast=amplitude_contrast)


def radial_power_spectrum(image: np.ndarray, pixel_size: float, tile: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(k in 1/Å, rotationally averaged power) from half-overlapping, mean-subtracted tiles."""
    tile = min(tile, *image.shape)
    tile -= tile % 2
    step = tile // 2
    window = np.outer(np.hanning(tile), np.hanning(tile))
    acc = np.zeros((tile, tile))
    count = 0
    for y in range(0, image.shape[0] - tile + 1, step):
        for x in range(0, image.shape[1] - tile + 1, step):
            patch = image[y:y + tile, x:x + tile].astype(np.float64)
            acc += np.abs(np.fft.fft2((patch - patch.mean()) * window)) ** 2
            count += 1
    power = np.fft.fftshift(acc / max(count, 1))
    yy, xx = np.indices(power.shape) - tile // 2
    ring = np.rint(np.hypot(yy, xx)).astype(int)
    sums = np.bincount(ring.ravel(), power.ravel())
    counts = np.bincount(ring.ravel())
    n = tile // 2
    radial = sums[:n] / np.maximum(counts[:n], 1)
    k = np.arange(n) / (tile * pixel_size)
    return k, radial


@dataclass(frozen=True)
class CtfFit:
    defocus: float  # Å, mean defocus
    figure_of_merit: float  # correlation of the background-subtracted spectrum with CTF^2
    max_resolution: float  # Å: the fit holds up to here


def _design(kn: np.ndarray, ctf2: np.ndarray) -> np.ndarray:
    poly = np.stack([kn**d for d in range(POLY_DEGREE + 1)], axis=1)
    return np.concatenate([poly, poly * ctf2[:, None]], axis=1)


def _fit_one(kn: np.ndarray, spectrum: np.ndarray, ctf2: np.ndarray) -> tuple[float, np.ndarray]:
    design = _design(kn, ctf2)
    coef, *_ = np.linalg.lstsq(design, spectrum, rcond=None)
    resid = spectrum - design @ coef
    return float(resid @ resid), coef


def fit_defocus(k: np.ndarray, power: np.ndarray, *, voltage_kv: float, cs_mm: float, amplitude_contrast: float,
                k_min: float, k_max: float, defocus_min: float = 3000.0, defocus_max: float = 50000.0,
                step: float = 100.0) -> CtfFit:
    """Fit a 1-D power spectrum (see the module docstring); `k_min`/`k_max` bound the fit (1/Å)."""
    sel = (k >= k_min) & (k <= k_max)
    if sel.sum() < 2 * (POLY_DEGREE + 1) + 4:
        raise ValueError(f"too few spectrum samples between {k_min:.4f} and {k_max:.4f} 1/Å to fit a CTF")
    ks = k[sel]
    spec = np.log(np.maximum(power[sel], 1e-30))
    spec = np.exp(spec - spec.max())  # scale only; the linear model stays linear
    kn = (ks - ks[0]) / (ks[-1] - ks[0])

    def score(dz: float) -> float:
        ctf2 = ctf_values(ks, dz, voltage_kv=voltage_kv, cs_mm=cs_mm, amplitude_contrast=amplitude_contrast) ** 2
        return _fit_one(kn, spec, ctf2)[0]

    grid = np.arange(defocus_min, defocus_max + step, step)
    best = grid[int(np.argmin([score(dz) for dz in grid]))]
    fine = np.arange(best - step, best + step, step / 20.0)
    best = float(fine[int(np.argmin([score(dz) for dz in fine]))])

    ctf2 = ctf_values(ks, best, voltage_kv=voltage_kv, cs_mm=cs_mm, amplitude_contrast=amplitude_contrast) ** 2
    _, coef = _fit_one(kn, spec, ctf2)
    poly = np.stack([kn**d for d in range(POLY_DEGREE + 1)], axis=1)
    background, envelope = poly @ coef[: POLY_DEGREE + 1], poly @ coef[POLY_DEGREE + 1:]
    # the Thon rings relative to their fitted envelope: what CTF^2 should look like
    signal = (spec - background) / np.where(np.abs(envelope) > 1e-12, envelope, 1e-12)
    fom = _corr(signal, ctf2)
    return CtfFit(defocus=best, figure_of_merit=fom, max_resolution=_fit_resolution(ks, signal, ctf2))


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a @ a) * (b @ b)))
    return float(a @ b) / denom if denom > 0 else 0.0


def _fit_resolution(ks: np.ndarray, signal: np.ndarray, ctf2: np.ndarray, window: int = 16) -> float:
    """The outer edge of the last of the consecutive, non-overlapping windows (from low
    frequency up) in which the background-subtracted spectrum correlates with CTF^2; the
    second window in a row that fails after a good one ends the search (beyond it the rings
    are noise); windows before the first good one may hold only a slope the background
    absorbs."""
    reach, misses = 0.0, 0
    for start in range(0, len(ks) - window + 1, window):
        part = slice(start, start + window)
        if _corr(signal[part], ctf2[part]) >= WINDOW_CC_FLOOR:
            reach, misses = float(ks[start + window - 1]), 0
        elif reach > 0:
            misses += 1
            if misses == 2:
                break
    return float(1.0 / reach) if reach > 0 else float(1.0 / ks[0])


def estimate_micrograph(image: np.ndarray, pixel_size: float, *, voltage_kv: float, cs_mm: float,
                        amplitude_contrast: float, low_res: float = 50.0, high_res: float | None = None,
                        defocus_min: float = 3000.0, defocus_max: float = 50000.0) -> CtfFit:
    """Estimate the mean defocus of a (motion-corrected) micrograph."""
    k, power = radial_power_spectrum(image, pixel_size)
    nyquist_res = 2.0 * pixel_size
    high = max(high_res or 0.0, nyquist_res * 1.1)
    return fit_defocus(k, power, voltage_kv=voltage_kv, cs_mm=cs_mm, amplitude_contrast=amplitude_contrast,
                       k_min=1.0 / low_res, k_max=1.0 / high, defocus_min=defocus_min, defocus_max=defocus_max)
