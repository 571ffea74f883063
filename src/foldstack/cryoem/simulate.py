"""A simulated single-particle dataset with known truth (``foldstack cryoem demo-data``).

From a real structure that ships with Debian's ``python-biopython-doc`` (PDB 7DDO, 796
residues in two chains; found at run time): gemmi computes an electron-scattering density
map; RELION's ``relion_project`` projects it at known, uniformly random orientations;
the projections are placed at known positions (a jittered grid, no overlaps) in each
micrograph together with white "structural" noise (ice; it moves with the specimen, so
its Thon rings are what the CTF estimator sees); the micrograph is multiplied in Fourier
space by ``-CTF`` (protein dark, as in real data) at a known per-micrograph defocus with
astigmatism (up to 1,000 Å, random direction; ``truth.json`` records DefocusU >= DefocusV
and the angle of U from the x axis, RELION's convention); each movie frame is that image
shifted by a known drift (smooth, up to a few pixels, frame 1 unshifted) plus its own shot
noise. Deterministic by seed.

Written to ``DIR``: ``movies/*.mrcs`` (float32 MRC stacks), ``request.json`` (optics,
particle diameter, box size, symmetry: what :mod:`foldstack.cryoem.request` reads) and
``truth/`` (``truth.json``: positions, orientations, defocus, drift; ``true_map.mrc``)
and ``reference/7DDO.pdb.gz`` (the model, for ``run-local --reference``).
"""

from __future__ import annotations

import gzip
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from foldstack.core.errors import BadInputError
from foldstack.cryoem.ctf import ctf_image
from foldstack.cryoem.mrc import read_mrc, write_mrc
from foldstack.cryoem.relion import relion_version, run_relion
from foldstack.cryoem.star import table, write_star

STRUCTURE_NAME = "7DDO.pdb.gz"
STRUCTURE_DIRS = (Path("/usr/share/doc/python-biopython-doc/Tests/PDB"),
                  Path("/usr/share/doc/python3-biopython/Tests/PDB"))
STRUCTURE_ENV = "FOLDSTACK_CRYOEM_STRUCTURE"


@dataclass(frozen=True)
class SimParams:
    micrographs: int = 20
    particles_per_micrograph: int = 100
    box: int = 64
    pixel_size: float = 2.5
    frames: int = 8
    seed: int = 0
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.1
    dose_per_frame: float = 1.5
    defocus_range: tuple[float, float] = (12000.0, 25000.0)
    # Å, |DefocusU - DefocusV| drawn uniformly up to this: real micrographs mostly stay under
    # 1,000 Å, and the estimator is tested on the astigmatism it must recover
    max_astigmatism: float = 1000.0
    max_drift: float = 4.0  # px, total over the movie
    ice_noise: float = 1.0  # std of the structural noise, relative to the projections' std
    shot_noise: float = 0.6  # std of each frame's noise in the sum, relative to the projections' std
    particle_diameter: float = 130.0  # Å, 7DDO's longest extent with a margin
    symmetry: str = "C1"


def find_structure() -> Path:
    """The structure file: ``FOLDSTACK_CRYOEM_STRUCTURE`` if set, else 7DDO from Debian's
    python-biopython-doc (the same folders the demo template DB reads)."""
    override = os.environ.get(STRUCTURE_ENV, "").strip()
    candidates = [Path(override)] if override else [d / STRUCTURE_NAME for d in STRUCTURE_DIRS]
    for path in candidates:
        if path.is_file():
            return path
    raise BadInputError(
        f"structure {candidates[0]} not found: install Debian's python-biopython-doc "
        f"(scripts/install_system_deps.sh), which ships {STRUCTURE_NAME}, or set {STRUCTURE_ENV}")


def density_map(structure: Path, box: int, pixel_size: float) -> np.ndarray:
    """Electron-scattering density of the structure, centred in a box^3 map ([z, y, x])."""
    import gemmi

    text = gzip.decompress(structure.read_bytes()).decode() if structure.suffix == ".gz" else structure.read_text()
    st = gemmi.read_pdb_string(text)
    st.setup_entities()
    st.remove_ligands_and_waters()
    st.remove_hydrogens()
    length = box * pixel_size
    c = st[0].calculate_center_of_mass()
    st[0].transform_pos_and_adp(gemmi.Transform(gemmi.Mat33(), gemmi.Vec3(length / 2 - c.x, length / 2 - c.y,
                                                                          length / 2 - c.z)))
    st.cell = gemmi.UnitCell(length, length, length, 90, 90, 90)
    calc = gemmi.DensityCalculatorE()
    calc.d_min = 2 * pixel_size
    calc.grid.set_unit_cell(st.cell)
    calc.grid.spacegroup = gemmi.SpaceGroup("P 1")
    calc.grid.set_size(box, box, box)
    calc.add_model_density_to_grid(st[0])
    calc.grid.symmetrize_sum()
    return np.array(calc.grid, copy=True).transpose(2, 1, 0).astype(np.float32)  # gemmi is [x, y, z]


def random_orientations(rng: np.random.Generator, n: int) -> np.ndarray:
    """(rot, tilt, psi) in degrees, uniform over SO(3)."""
    rot = rng.uniform(0, 360, n)
    tilt = np.degrees(np.arccos(rng.uniform(-1, 1, n)))
    psi = rng.uniform(0, 360, n)
    return np.stack([rot, tilt, psi], axis=1)


def project(volume_path: Path, angles: np.ndarray, params: SimParams, work: Path) -> np.ndarray:
    """relion_project at the given (rot, tilt, psi); returns (n, box, box)."""
    optics = table("optics", [{"rlnOpticsGroup": 1, "rlnOpticsGroupName": "opticsGroup1",
                               "rlnImagePixelSize": params.pixel_size, "rlnImageSize": params.box,
                               "rlnImageDimensionality": 2, "rlnVoltage": params.voltage_kv,
                               "rlnSphericalAberration": params.cs_mm,
                               "rlnAmplitudeContrast": params.amplitude_contrast}])
    rows = [{"rlnAngleRot": float(a[0]), "rlnAngleTilt": float(a[1]), "rlnAnglePsi": float(a[2]),
             "rlnOriginXAngst": 0.0, "rlnOriginYAngst": 0.0, "rlnOpticsGroup": 1} for a in angles]
    write_star(work / "angles.star", [optics, table("particles", rows)])
    run_relion(["relion_project", "--i", str(volume_path), "--o", str(work / "proj"), "--ang",
                str(work / "angles.star"), "--angpix", str(params.pixel_size)], cwd=work, log=work / "project.log")
    stack = read_mrc(work / "proj.mrcs")
    return stack.reshape(len(angles), params.box, params.box)


def _positions(rng: np.random.Generator, count: int, box: int) -> tuple[np.ndarray, int]:
    """Particle centres on a jittered grid with at least a box between neighbours; and the
    (square, FFT-friendly) micrograph size that holds them with a box of margin."""
    side = math.ceil(math.sqrt(count))
    spacing = int(box * 1.4)
    size = side * spacing + 2 * box
    size = int(math.ceil(size / 64.0) * 64)
    offset = (size - side * spacing) / 2.0 + spacing / 2.0
    cells = rng.permutation(side * side)[:count]
    jitter = (spacing - box) / 2.0
    xy = np.stack([cells % side, cells // side], axis=1) * spacing + offset
    xy = xy + rng.uniform(-jitter, jitter, xy.shape)
    return np.round(xy).astype(float), size


def _drift(rng: np.random.Generator, frames: int, max_drift: float) -> np.ndarray:
    """Per-frame (x, y) shifts in px: a smooth, decelerating track from (0, 0)."""
    total = rng.uniform(0.5, 1.0) * max_drift
    angle = rng.uniform(0, 2 * np.pi)
    bend = rng.uniform(-0.6, 0.6)
    t = np.arange(frames) / max(frames - 1, 1)
    along = total * (1 - (1 - t) ** 2)  # fast early, then slowing (beam-induced motion)
    across = bend * total * t * (1 - t)
    ux, uy = np.cos(angle), np.sin(angle)
    return np.stack([along * ux - across * uy, along * uy + across * ux], axis=1)


def _fourier_shift(spectrum: np.ndarray, shape: tuple[int, int], dx: float, dy: float) -> np.ndarray:
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    return np.fft.irfft2(spectrum * np.exp(-2j * np.pi * (kx * dx + ky * dy)), s=shape)


def simulate(out: Path | str, params: SimParams) -> dict:
    """Write a dataset to `out` (must not hold one already); returns the truth record."""
    out = Path(out)
    if params.micrographs < 1 or params.particles_per_micrograph < 1 or params.frames < 2:
        raise BadInputError("demo data needs at least 1 micrograph, 1 particle per micrograph and 2 frames")
    if params.box < 32 or params.box % 2:
        raise BadInputError(f"--box {params.box}: expected an even number >= 32")
    if (out / "request.json").exists():
        raise BadInputError(f"{out} already holds a dataset (request.json); choose a new --out")
    rng = np.random.default_rng(params.seed)
    structure = find_structure()
    (out / "movies").mkdir(parents=True, exist_ok=True)
    (out / "truth").mkdir(exist_ok=True)
    (out / "reference").mkdir(exist_ok=True)
    # the atomic model, for runs that start refinement from a reference (--reference)
    shutil.copy2(structure, out / "reference" / structure.name)
    volume = density_map(structure, params.box, params.pixel_size)
    write_mrc(out / "truth" / "true_map.mrc", volume, params.pixel_size)

    n_total = params.micrographs * params.particles_per_micrograph
    angles = random_orientations(rng, n_total)
    with tempfile.TemporaryDirectory(prefix="cryoem-sim-") as tmp:
        projections = project(out / "truth" / "true_map.mrc", angles, params, Path(tmp))
    scale = float(projections.std()) or 1.0
    projections /= scale

    micrographs = []
    for m in range(params.micrographs):
        name = f"mic_{m:03d}"
        xy, size = _positions(rng, params.particles_per_micrograph, params.box)
        image = rng.normal(0.0, params.ice_noise, (size, size))
        idx = slice(m * params.particles_per_micrograph, (m + 1) * params.particles_per_micrograph)
        half = params.box // 2
        for (x, y), proj in zip(xy, projections[idx], strict=True):
            x0, y0 = int(x) - half, int(y) - half
            image[y0:y0 + params.box, x0:x0 + params.box] += proj
        mean_dz = rng.uniform(*params.defocus_range)
        astig = rng.uniform(0, params.max_astigmatism)
        astig_angle = rng.uniform(0, 180)
        ctf = ctf_image((size, size), params.pixel_size, defocus_u=mean_dz + astig / 2, defocus_v=mean_dz - astig / 2,
                        angle_deg=astig_angle, voltage_kv=params.voltage_kv, cs_mm=params.cs_mm,
                        amplitude_contrast=params.amplitude_contrast)
        spectrum = -np.fft.rfft2(image) * ctf  # protein dark (see ctf.py)
        shifts = _drift(rng, params.frames, params.max_drift)
        frame_sigma = params.shot_noise / math.sqrt(params.frames)
        movie = np.empty((params.frames, size, size), dtype=np.float32)
        for f, (dx, dy) in enumerate(shifts):
            frame = _fourier_shift(spectrum, (size, size), dx, dy) / params.frames
            movie[f] = frame + rng.normal(0.0, frame_sigma, (size, size))
        write_mrc(out / "movies" / f"{name}.mrcs", movie, params.pixel_size)
        micrographs.append({
            "name": name, "size": size, "defocus_u": mean_dz + astig / 2, "defocus_v": mean_dz - astig / 2,
            "defocus_angle": astig_angle, "defocus_mean": mean_dz,
            "shifts_px": shifts.round(4).tolist(),
            "particles": [{"x": float(x), "y": float(y), "rot": float(a[0]), "tilt": float(a[1]), "psi": float(a[2])}
                          for (x, y), a in zip(xy, angles[idx], strict=True)],
        })

    request = {
        "movies": "movies",
        "optics": {"pixel_size": params.pixel_size, "voltage_kv": params.voltage_kv, "cs_mm": params.cs_mm,
                   "amplitude_contrast": params.amplitude_contrast, "dose_per_frame": params.dose_per_frame},
        "particle_diameter": params.particle_diameter,
        "box_size": params.box,
        "symmetry": params.symmetry,
    }
    (out / "request.json").write_text(json.dumps(request, indent=2) + "\n")
    truth = {
        "structure": {"source": str(structure), "pdb_id": "7DDO"},
        "params": asdict(params),
        "relion_version": relion_version(),
        "true_map": "true_map.mrc",
        "shift_convention": "frame f of the movie is the specimen moved by (+x, +y) px from frame 1",
        "micrographs": micrographs,
    }
    (out / "truth" / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return truth

