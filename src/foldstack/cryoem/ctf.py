"""The contrast transfer function (RELION's convention) and a CTF estimator.

One home for the CTF model: the simulator applies it, the estimator fits it.

Convention (RELION's ``CTF::getCTF``): defocus in Å, positive underfocus;
``chi(k) = pi*lambda*dz*k^2 - pi/2*Cs*lambda^3*k^4`` and
``CTF = sqrt(1-A^2)*sin(chi) + A*cos(chi)`` (positive at low frequency: RELION expects
protein white, so raw micrographs, where protein is dark, are ``-CTF (x) object`` and are
extracted with ``--invert_contrast``).

Estimator (CTFFIND is not packaged in Debian, so local mode has its own; the ``ctf`` stage
runs CTFFIND instead where the image has it: :mod:`foldstack.cryoem.ctffind`): the periodogram
average of overlapping tiles of the motion-corrected micrograph, rotationally averaged;
for every trial defocus, the 1-D spectrum is fitted by linear least squares as
``background(k) + envelope(k) * CTF(k)^2`` (both low-order polynomials in k), and the
defocus with the smallest residual wins (grid, then a finer grid around the best). The fit
resolution is the highest frequency up to which the background-subtracted spectrum still
correlates with CTF^2 (correlation >= 0.5 in windows of 16 samples), the figure of merit the overall
correlation.

Astigmatism: the 1-D fit gives the mean defocus and a radial background; the 2-D periodogram,
background-subtracted and divided by its smoothed per-ring RMS (so faint outer rings count
as much as strong inner ones), is then correlated with ``CTF^2(k, theta)`` for defocus
``mean + a*cos(2*(theta - angle))``, parametrised as ``(mean, a*cos 2angle, a*sin 2angle)`` so
the fit has no wrap-around and no singularity at zero astigmatism: a coarse set of starts
(astigmatism 0-2,000 Å in 8 directions) then Nelder-Mead. Figure of merit and fit resolution
come from the equiphase average (each 2-D sample moved to the radius where the mean defocus
gives it the same CTF phase, then averaged by ring: the 1-D statistics, astigmatism removed).
Reported as RELION does: ``DefocusU >= DefocusV``, ``DefocusAngle`` (degrees, [0, 180)) the
direction of U from the x axis.
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


def power_spectrum_2d(image: np.ndarray, tile: int = 256) -> np.ndarray:
    """The periodogram average of half-overlapping, mean-subtracted, Hann-windowed tiles
    (``fftshift``-ed: zero frequency at ``[tile // 2, tile // 2]``)."""
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
    return np.fft.fftshift(acc / max(count, 1))


def _ring_average(radius: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    ring = np.rint(radius).astype(int).ravel()
    keep = ring < n
    sums = np.bincount(ring[keep], values.ravel()[keep], minlength=n)
    counts = np.bincount(ring[keep], minlength=n)
    return sums[:n] / np.maximum(counts[:n], 1)


def _polar(tile: int, pixel_size: float) -> tuple[np.ndarray, np.ndarray]:
    """(k in 1/Å, theta in rad) of every sample of a ``fftshift``-ed tile x tile spectrum."""
    yy, xx = np.indices((tile, tile)) - tile // 2
    return np.hypot(yy, xx) / (tile * pixel_size), np.arctan2(yy, xx)


def radial_power_spectrum(image: np.ndarray, pixel_size: float, tile: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(k in 1/Å, rotationally averaged power) from half-overlapping, mean-subtracted tiles."""
    power = power_spectrum_2d(image, tile)
    n = power.shape[0] // 2
    k, _ = _polar(power.shape[0], pixel_size)
    return np.arange(n) / (power.shape[0] * pixel_size), _ring_average(k * power.shape[0] * pixel_size, power, n)


@dataclass(frozen=True)
class CtfFit:
    defocus: float  # Å, mean defocus
    figure_of_merit: float  # correlation of the background-subtracted spectrum with CTF^2
    max_resolution: float  # Å: the fit holds up to here
    defocus_u: float = 0.0  # Å, the larger defocus (RELION's rlnDefocusU); 0: same as `defocus`
    defocus_v: float = 0.0  # Å, the smaller one (rlnDefocusV); 0: same as `defocus`
    defocus_angle: float = 0.0  # degrees in [0, 180): direction of U from the x axis (rlnDefocusAngle)
    phase_shift: float = 0.0  # degrees (rlnPhaseShift): a phase plate's; CTFFIND's, 0 when not searched

    def __post_init__(self) -> None:
        if not self.defocus_u and not self.defocus_v:  # an isotropic fit
            object.__setattr__(self, "defocus_u", self.defocus)
            object.__setattr__(self, "defocus_v", self.defocus)

    @property
    def astigmatism(self) -> float:
        """|DefocusU - DefocusV| (Å): RELION's rlnCtfAstigmatism."""
        return abs(self.defocus_u - self.defocus_v)


@dataclass(frozen=True)
class _Fit1d:
    """The 1-D fit's model, kept to subtract its background from the 2-D spectrum."""
    fit: CtfFit
    k0: float
    k1: float
    coef: np.ndarray
    scale: float

    def background(self, k: np.ndarray) -> np.ndarray:
        kn = (k - self.k0) / (self.k1 - self.k0)
        return sum(self.coef[d] * kn**d for d in range(POLY_DEGREE + 1))


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
    return _fit_1d(k, power, voltage_kv=voltage_kv, cs_mm=cs_mm, amplitude_contrast=amplitude_contrast, k_min=k_min,
                   k_max=k_max, defocus_min=defocus_min, defocus_max=defocus_max, step=step).fit


def _fit_1d(k: np.ndarray, power: np.ndarray, *, voltage_kv: float, cs_mm: float, amplitude_contrast: float,
            k_min: float, k_max: float, defocus_min: float, defocus_max: float, step: float,
            fixed: float | None = None) -> _Fit1d:
    """The 1-D fit; with `fixed`, only the background and envelope are fitted at that defocus."""
    sel = (k >= k_min) & (k <= k_max)
    if sel.sum() < 2 * (POLY_DEGREE + 1) + 4:
        raise ValueError(f"too few spectrum samples between {k_min:.4f} and {k_max:.4f} 1/Å to fit a CTF")
    ks = k[sel]
    scale = float(np.max(power[sel]))
    spec = np.maximum(power[sel], 1e-30 * scale) / scale  # scale only; the linear model stays linear
    kn = (ks - ks[0]) / (ks[-1] - ks[0])
    optics = {"voltage_kv": voltage_kv, "cs_mm": cs_mm, "amplitude_contrast": amplitude_contrast}

    def score(dz: float) -> float:
        return _fit_one(kn, spec, ctf_values(ks, dz, **optics) ** 2)[0]

    if fixed is None:
        grid = np.arange(defocus_min, defocus_max + step, step)
        best = grid[int(np.argmin([score(dz) for dz in grid]))]
        fine = np.arange(best - step, best + step, step / 20.0)
        best = float(fine[int(np.argmin([score(dz) for dz in fine]))])
    else:
        best = float(fixed)

    ctf2 = ctf_values(ks, best, **optics) ** 2
    _, coef = _fit_one(kn, spec, ctf2)
    poly = np.stack([kn**d for d in range(POLY_DEGREE + 1)], axis=1)
    background, envelope = poly @ coef[: POLY_DEGREE + 1], poly @ coef[POLY_DEGREE + 1:]
    # the Thon rings relative to their fitted envelope: what CTF^2 should look like
    signal = (spec - background) / np.where(np.abs(envelope) > 1e-12, envelope, 1e-12)
    fom = _corr(signal, ctf2)
    fit = CtfFit(defocus=best, figure_of_merit=fom, max_resolution=_fit_resolution(ks, signal, ctf2))
    return _Fit1d(fit=fit, k0=float(ks[0]), k1=float(ks[-1]), coef=coef, scale=scale)


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


# starts of the 2-D search: astigmatism magnitudes (Å) x directions (8 over 180 degrees)
ASTIG_STARTS = (250.0, 600.0, 1200.0, 2000.0)
ASTIG_DIRECTIONS = 8
RMS_SMOOTH_RINGS = 9  # rings over which the per-ring RMS is averaged: wider than a Thon ring at the fit's end


def _chi(k: np.ndarray, dz: np.ndarray | float, lam: float, cs: float) -> np.ndarray:
    return np.pi * lam * dz * k * k - 0.5 * np.pi * cs * lam**3 * k**4


def fit_astigmatism(power: np.ndarray, pixel_size: float, first: _Fit1d, *, voltage_kv: float, cs_mm: float,
                    amplitude_contrast: float, k_min: float, k_max: float) -> tuple[float, float, float]:
    """(DefocusU, DefocusV, angle in degrees) from a ``fftshift``-ed 2-D spectrum, starting
    from the 1-D fit (see the module docstring)."""
    from scipy.optimize import minimize

    tile = power.shape[0]
    k, theta = _polar(tile, pixel_size)
    # half the plane: the periodogram of a real image is point-symmetric
    sel = (k >= k_min) & (k <= k_max) & ((theta >= 0) & (theta < np.pi))
    radius = k * tile * pixel_size
    resid = power / first.scale - first.background(k)
    ms = _ring_average(radius[sel], resid[sel] ** 2, tile)
    box = np.ones(RMS_SMOOTH_RINGS)
    # averaged over the rings that have samples: the fit's first and last rings keep their scale
    rms = np.sqrt(np.convolve(ms, box, mode="same") / np.maximum(np.convolve(ms > 0, box, mode="same"), 1))
    ring = np.rint(radius[sel]).astype(int)
    data = resid[sel] / np.maximum(rms[ring], 1e-12 * max(float(rms.max()), 1e-30))
    data = (data - data.mean()) / (data.std() or 1.0)
    ks, cos2, sin2 = k[sel], np.cos(2 * theta[sel]), np.sin(2 * theta[sel])
    lam = wavelength_angstrom(voltage_kv)
    cs = cs_mm * 1e7
    w = np.sqrt(1.0 - amplitude_contrast**2)

    def cost(p: np.ndarray) -> float:
        chi = _chi(ks, p[0] + p[1] * cos2 + p[2] * sin2, lam, cs)
        model = (w * np.sin(chi) + amplitude_contrast * np.cos(chi)) ** 2
        model -= model.mean()
        norm = float(np.sqrt(model @ model))
        return -float(data @ model) / norm if norm > 0 else 0.0

    mean = first.fit.defocus
    starts = [np.array([mean, 0.0, 0.0])]
    for a in ASTIG_STARTS:
        for i in range(ASTIG_DIRECTIONS):
            phi = np.pi * i / ASTIG_DIRECTIONS
            starts.append(np.array([mean, a * np.cos(2 * phi), a * np.sin(2 * phi)]))
    # the two best starts, refined: one more than the best guards against a start that sits
    # on the wrong side of a ridge, more cost time for nothing on the demos
    ranked = sorted(starts, key=cost)[:2]
    best = min((minimize(cost, p0, method="Nelder-Mead",
                         options={"initial_simplex": p0 + np.array([[0, 0, 0], [40, 0, 0], [0, 80, 0], [0, 0, 80]]),
                                  "xatol": 2.0, "fatol": 1e-4, "maxiter": 400}) for p0 in ranked),
               key=lambda r: r.fun)
    mean, ax, ay = (float(v) for v in best.x)
    half = float(np.hypot(ax, ay))
    angle = float(np.degrees(0.5 * np.arctan2(ay, ax))) % 180.0
    return mean + half, mean - half, angle


def _equiphase_average(power: np.ndarray, pixel_size: float, u: float, v: float, angle: float, *, voltage_kv: float,
                       cs_mm: float) -> np.ndarray:
    """The 2-D spectrum averaged by ring after moving every sample to the radius at which
    the mean defocus gives it the same CTF phase: a rotational average without the ring
    blurring of astigmatism."""
    tile = power.shape[0]
    k, theta = _polar(tile, pixel_size)
    lam, cs = wavelength_angstrom(voltage_kv), cs_mm * 1e7
    mean, half = (u + v) / 2.0, (u - v) / 2.0
    chi = _chi(k, mean + half * np.cos(2 * (theta - np.deg2rad(angle))), lam, cs)
    a1, a2 = np.pi * lam * mean, 0.5 * np.pi * cs * lam**3
    # a2*q^2 - a1*q + chi = 0 for q = k'^2: the smaller root, written to stay exact as a2 -> 0
    disc = np.sqrt(np.maximum(a1 * a1 - 4 * a2 * chi, 0.0))
    k_eq = np.sqrt(np.maximum(2 * chi / (a1 + disc), 0.0))
    return _ring_average(k_eq * tile * pixel_size, power, tile // 2)


def estimate_micrograph(image: np.ndarray, pixel_size: float, *, voltage_kv: float, cs_mm: float,
                        amplitude_contrast: float, low_res: float = 50.0, high_res: float | None = None,
                        defocus_min: float = 3000.0, defocus_max: float = 50000.0,
                        astigmatism: bool = True) -> CtfFit:
    """Estimate the defocus (and, unless `astigmatism` is off, DefocusU/V and angle) of a
    (motion-corrected) micrograph."""
    return estimate_from_spectrum(power_spectrum_2d(image), pixel_size, voltage_kv=voltage_kv, cs_mm=cs_mm,
                                  amplitude_contrast=amplitude_contrast, low_res=low_res, high_res=high_res,
                                  defocus_min=defocus_min, defocus_max=defocus_max, astigmatism=astigmatism)


def estimate_from_spectrum(power: np.ndarray, pixel_size: float, *, voltage_kv: float, cs_mm: float,
                           amplitude_contrast: float, low_res: float = 50.0, high_res: float | None = None,
                           defocus_min: float = 3000.0, defocus_max: float = 50000.0,
                           astigmatism: bool = True) -> CtfFit:
    """The fit on a square, ``fftshift``-ed 2-D power spectrum (what :func:`power_spectrum_2d` returns)."""
    tile = power.shape[0]
    if power.ndim != 2 or power.shape[1] != tile or tile % 2:
        raise ValueError(f"expected a square power spectrum of even size, got {power.shape}")
    n = tile // 2
    k = np.arange(n) / (tile * pixel_size)
    radial = _ring_average(_polar(tile, pixel_size)[0] * tile * pixel_size, power, n)
    high = max(high_res or 0.0, 2.0 * pixel_size * 1.1)
    optics = {"voltage_kv": voltage_kv, "cs_mm": cs_mm, "amplitude_contrast": amplitude_contrast}
    bounds = {"k_min": 1.0 / low_res, "k_max": 1.0 / high}
    search = {"defocus_min": defocus_min, "defocus_max": defocus_max, "step": 100.0}
    first = _fit_1d(k, radial, **optics, **bounds, **search)
    if not astigmatism:
        return first.fit
    u, v, angle = fit_astigmatism(power, pixel_size, first, **optics, **bounds)
    mean = (u + v) / 2.0
    epa = _equiphase_average(power, pixel_size, u, v, angle, voltage_kv=voltage_kv, cs_mm=cs_mm)
    stats = _fit_1d(k, epa, **optics, **bounds, **search, fixed=mean).fit
    return CtfFit(defocus=mean, figure_of_merit=stats.figure_of_merit, max_resolution=stats.max_resolution,
                  defocus_u=u, defocus_v=v, defocus_angle=angle)
