"""The CTF estimator on synthetic spectra and images with a known defocus."""

from __future__ import annotations

import numpy as np
import pytest

from foldstack.cryoem import ctf

OPTICS = {"voltage_kv": 300.0, "cs_mm": 2.7, "amplitude_contrast": 0.1}


def test_wavelength_at_300_kv():
    assert ctf.wavelength_angstrom(300.0) == pytest.approx(0.01969, abs=1e-5)


def test_ctf_is_positive_at_low_frequency_relion_convention():
    assert ctf.ctf_values(np.array([0.0]), 15000.0, **OPTICS)[0] == pytest.approx(0.1)


@pytest.mark.parametrize("defocus", [8000.0, 15000.0, 24000.0, 38000.0])
def test_fit_recovers_defocus_from_a_1d_spectrum(defocus):
    rng = np.random.default_rng(int(defocus))
    k = np.linspace(0, 1 / 5.0, 400)
    background = 2.0 * np.exp(-k * 25) + 0.3
    envelope = 1.5 * np.exp(-(k * 12) ** 2)
    power = background + envelope * ctf.ctf_values(k, defocus, **OPTICS) ** 2
    power *= rng.normal(1.0, 0.05, k.shape)
    fit = ctf.fit_defocus(k, power, **OPTICS, k_min=1 / 50.0, k_max=1 / 6.0)
    assert fit.defocus == pytest.approx(defocus, rel=0.01)
    assert fit.figure_of_merit > 0.5
    assert fit.max_resolution < 20.0


@pytest.mark.slow
def test_estimate_on_a_ctf_filtered_noise_image():
    rng = np.random.default_rng(7)
    shape, pixel = (512, 512), 2.0
    c = ctf.ctf_image(shape, pixel, defocus_u=20100.0, defocus_v=19900.0, angle_deg=30.0, **OPTICS)
    image = np.fft.irfft2(np.fft.rfft2(rng.normal(size=shape)) * c, s=shape) + rng.normal(0, 0.3, shape)
    fit = ctf.estimate_micrograph(image, pixel, **OPTICS)
    assert fit.defocus == pytest.approx(20000.0, rel=0.02)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.slow
def test_pure_noise_fits_below_the_curation_floor(seed):
    from foldstack.cryoem.stagekit import Knobs

    fit = ctf.estimate_micrograph(np.random.default_rng(seed).normal(size=(512, 512)), 2.0, **OPTICS)
    assert fit.figure_of_merit < Knobs().min_ctf_fom


def _angle_error(a: float, b: float) -> float:
    d = abs(a - b) % 180.0
    return min(d, 180.0 - d)


def _synthetic_spectrum(u: float, v: float, angle: float, *, seed: int, tile: int = 256, pixel: float = 2.0,
                        looks: int = 9) -> np.ndarray:
    """A ``fftshift``-ed 2-D power spectrum: background + envelope x CTF^2, with the
    multiplicative noise of a periodogram averaged over `looks` tiles."""
    yy, xx = np.indices((tile, tile)) - tile // 2
    k = np.hypot(yy, xx) / (tile * pixel)
    theta = np.arctan2(yy, xx)
    dz = (u + v) / 2 + (u - v) / 2 * np.cos(2 * (theta - np.deg2rad(angle)))
    clean = 2.0 * np.exp(-k * 25) + 0.3 + 1.5 * np.exp(-(k * 8) ** 2) * ctf.ctf_values(k, dz, **OPTICS) ** 2
    return clean * np.random.default_rng(seed).gamma(looks, 1.0 / looks, clean.shape)


@pytest.mark.parametrize(("u", "v", "angle"), [(20300.0, 19700.0, 30.0), (15600.0, 14400.0, 125.0),
                                               (26500.0, 23500.0, 80.0), (9200.0, 8900.0, 170.0)])
@pytest.mark.slow
def test_fit_recovers_astigmatism_from_a_2d_spectrum(u, v, angle):
    fit = ctf.estimate_from_spectrum(_synthetic_spectrum(u, v, angle, seed=int(u)), 2.0, **OPTICS)
    assert fit.defocus_u == pytest.approx(u, rel=0.02) and fit.defocus_v == pytest.approx(v, rel=0.02), fit
    assert fit.defocus_u >= fit.defocus_v and 0.0 <= fit.defocus_angle < 180.0
    assert _angle_error(fit.defocus_angle, angle) < 5.0, fit
    assert fit.astigmatism == pytest.approx(u - v, abs=150.0)
    assert fit.figure_of_merit > 0.5


@pytest.mark.slow
def test_isotropic_spectrum_fits_without_astigmatism():
    fit = ctf.estimate_from_spectrum(_synthetic_spectrum(18000.0, 18000.0, 0.0, seed=3), 2.0, **OPTICS)
    assert fit.defocus_u == pytest.approx(18000.0, rel=0.02) and fit.defocus_v == pytest.approx(18000.0, rel=0.02)
    assert fit.astigmatism < 200.0, fit


def test_noisy_astigmatic_image():
    """Few looks (a 512 px image: 9 tiles) and white noise as strong as the CTF-filtered signal."""
    rng = np.random.default_rng(11)
    shape, pixel = (512, 512), 2.0
    c = ctf.ctf_image(shape, pixel, defocus_u=17400.0, defocus_v=16600.0, angle_deg=55.0, **OPTICS)
    image = np.fft.irfft2(np.fft.rfft2(rng.normal(size=shape)) * c, s=shape) + rng.normal(0, 0.7, shape)
    fit = ctf.estimate_micrograph(image, pixel, **OPTICS)
    assert fit.defocus_u == pytest.approx(17400.0, rel=0.02) and fit.defocus_v == pytest.approx(16600.0, rel=0.02)
    assert _angle_error(fit.defocus_angle, 55.0) < 5.0, fit
    # the equiphase average keeps the outer rings the rotational average blurs
    flat = ctf.estimate_micrograph(image, pixel, **OPTICS, astigmatism=False)
    assert fit.max_resolution <= flat.max_resolution and fit.figure_of_merit >= flat.figure_of_merit - 0.01


def test_isotropic_fit_reports_u_equal_v():
    fit = ctf.CtfFit(defocus=15000.0, figure_of_merit=0.9, max_resolution=8.0)
    assert (fit.defocus_u, fit.defocus_v, fit.astigmatism) == (15000.0, 15000.0, 0.0)


def test_spectrum_must_be_square():
    with pytest.raises(ValueError, match="square power spectrum"):
        ctf.estimate_from_spectrum(np.ones((64, 32)), 2.0, **OPTICS)
