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


def test_estimate_on_a_ctf_filtered_noise_image():
    rng = np.random.default_rng(7)
    shape, pixel = (512, 512), 2.0
    c = ctf.ctf_image(shape, pixel, defocus_u=20100.0, defocus_v=19900.0, angle_deg=30.0, **OPTICS)
    image = np.fft.irfft2(np.fft.rfft2(rng.normal(size=shape)) * c, s=shape) + rng.normal(0, 0.3, shape)
    fit = ctf.estimate_micrograph(image, pixel, **OPTICS)
    assert fit.defocus == pytest.approx(20000.0, rel=0.02)


@pytest.mark.parametrize("seed", range(4))
def test_pure_noise_fits_below_the_curation_floor(seed):
    from foldstack.cryoem.stagekit import Knobs

    fit = ctf.estimate_micrograph(np.random.default_rng(seed).normal(size=(512, 512)), 2.0, **OPTICS)
    assert fit.figure_of_merit < Knobs().min_ctf_fom
