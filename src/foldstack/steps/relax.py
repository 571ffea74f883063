"""Amber relaxation of predicted models with OpenMM, following AlphaFold's relax protocol.

The protocol (the settings of AlphaFold 2.3's ``run_alphafold.py``):

* **Clean-up** with PDBFixer: standard residues only (heterogens and waters removed,
  non-standard residues replaced by their parents), missing heavy atoms (e.g. the
  terminal OXT) and hydrogens at pH 7 added; missing residues are *not* built.
* **Force field** Amber99sb, no solvent (``NoCutoff``), bonds to hydrogen constrained.
* **Restraints**: a harmonic pull of every heavy atom to its position at the start of
  the minimisation, stiffness 10 kcal/mol/Å².
* **Minimisation**: L-BFGS to an energy tolerance of 2.39 kcal/mol (OpenMM 8 reads it
  as an RMS force of 2.39 kcal/mol/Å), no iteration limit (``max_iterations`` 0).
* **Outer loop**: count violations after minimising; while some remain, release the
  restraints on the violating residues and minimise again from where it stopped, at
  most 3 times (``max_outer_iterations``, AlphaFold 2.3's setting).

**Violations** (:func:`count_violations`), on heavy atoms, with AlphaFold's literature
values and its tolerance of 12 standard deviations:

* bond lengths within a residue outside ``length ± 12σ`` (Engh & Huber values as
  AlphaFold tabulates them);
* the peptide bond C(i)–N(i+1) between residues consecutive in one chain outside
  1.329 ± 12·0.014 Å (1.341 ± 12·0.016 Å before a proline), and the cosines of the
  CA–C–N and C–N–CA angles across it outside −0.4473 ± 12·0.0311 and −0.5203 ± 12·0.0353;
* clashes: heavy atoms of different residues closer than the sum of their van der
  Waals radii (C 1.7, N 1.55, O 1.52, S 1.8 Å) minus 1.5 Å, except the peptide-bond
  pair and disulfide SG–SG pairs.

The count is the number of **residues** involved in at least one violation (AlphaFold's
per-residue violation mask, summed); :func:`count_violations` also returns the number
of each kind.

Energies are the Amber99sb potential energy in kJ/mol *without* the restraint term, so
before and after are comparable. The platform is the fastest OpenMM reports that can
open a context (CUDA where a GPU is present, else CPU); ``FOLDSTACK_OPENMM_PLATFORM``
names one instead. A relaxation that fails (an unsupported residue, forces that explode
to NaN on a nonsense structure) raises :class:`RelaxError`; :func:`relax_models` records
it and keeps the unrelaxed model. Two kinds of model are refused before minimising: one
with a residue without atoms (AlphaFold refuses these too) and, foldstack's own rule, one
where more than half the residues violate (``MAX_VIOLATING_FRACTION``: not protein-like,
e.g. from random demo weights; minimising it takes minutes and repairs nothing).

Within a residue only bond lengths are checked (AlphaFold also checks intra-residue
clashes against its bounds table), so the counts can differ slightly from AlphaFold's.
"""

from __future__ import annotations

import functools
import io
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from foldstack.core.request import RELAX_MODES
from foldstack.steps.outputs import Prediction, structure_of, write_marked

STIFFNESS = 10.0  # kcal/mol/Å²
TOLERANCE = 2.39  # kcal/mol (per Å, as OpenMM >= 8 reads it)
MAX_ITERATIONS = 0  # L-BFGS iterations per minimisation; 0 = until converged
MAX_OUTER_ITERATIONS = 3
PLATFORM_ENV = "FOLDSTACK_OPENMM_PLATFORM"
VIOLATION_TOLERANCE = 12.0  # standard deviations
CLASH_OVERLAP = 1.5  # Å
VDW_RADIUS = {"C": 1.7, "N": 1.55, "O": 1.52, "S": 1.8}
KCAL = 4.184  # kJ per kcal
# (chain id, residue name, residue number, {heavy atom name: xyz Å}) per residue, in chain order
Residues = list[tuple[str, str, int, dict[str, np.ndarray]]]
# Refuse models where more residues than this violate: restrained minimisation fixes local
# errors of a protein-like model; on a collapsed one (random demo weights) it ran 9 minutes
# for 68 residues and still left 63 violating (CPU, measured).
MAX_VIOLATING_FRACTION = 0.5


class RelaxError(RuntimeError):
    """This model could not be relaxed (recorded as ``relax: {status: failed}``; never fatal)."""

    def __init__(self, message: str, *, violations_before: int | None = None) -> None:
        super().__init__(message)
        self.violations_before = violations_before


@dataclass
class RelaxResult:
    pdb: str  # the relaxed model with hydrogens (OpenMM's PDB writer)
    energy_before: float  # kJ/mol, Amber99sb without restraints
    energy_after: float
    violations_before: int
    violations_after: int
    rmsd: float  # Å, heavy atoms, relaxed vs start
    outer_iterations: int
    platform: str

    def record(self, seconds: float) -> dict[str, Any]:
        return {"status": "relaxed", "relaxed": True,
                "violations_before": self.violations_before, "violations_after": self.violations_after,
                "energy_before_kj_mol": round(self.energy_before, 1),
                "energy_after_kj_mol": round(self.energy_after, 1),
                "heavy_atom_rmsd": round(self.rmsd, 3), "outer_iterations": self.outer_iterations,
                "platform": self.platform, "seconds": round(seconds, 2)}


# --------------------------------------------------------------------------- violations

@functools.cache
def _bond_table() -> dict[str, list[tuple[str, str, float, float]]]:
    """Per residue name: (atom, atom, length Å, stddev Å) of its bonds (AlphaFold's table)."""
    from alphafold.common import residue_constants as rc

    bonds, _virtual, _angles = rc.load_stereo_chemical_props()
    return {res: [(b.atom1_name, b.atom2_name, b.length, b.stddev) for b in rows] for res, rows in bonds.items()}


def _cos(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
    u, v = a - b, c - b
    return float(np.dot(u, v) / max(1e-8, np.linalg.norm(u) * np.linalg.norm(v)))


def count_violations(residues: Residues) -> dict[str, int]:
    """Violations of one model (see the module docstring). Returns ``{"residues": n,
    "bonds": n, "peptide": n, "clashes": n}``: violating residues, and each kind's count."""
    bad, counts = _violations(residues)
    return {"residues": len(bad), **counts}


def _violations(residues: Residues) -> tuple[set[int], dict[str, int]]:
    """The indices of the residues with a violation, and the count of each kind."""
    bond_table = _bond_table()
    tol = VIOLATION_TOLERANCE
    bad: set[int] = set()
    counts = {"bonds": 0, "peptide": 0, "clashes": 0}
    for i, (_chain, name, _num, atoms) in enumerate(residues):
        for a1, a2, length, sd in bond_table.get(name, []):
            if a1 in atoms and a2 in atoms and abs(float(np.linalg.norm(atoms[a1] - atoms[a2])) - length) > tol * sd:
                counts["bonds"] += 1
                bad.add(i)
    for i in range(len(residues) - 1):
        (c1, _n1, num1, r1), (c2, n2, num2, r2) = residues[i], residues[i + 1]
        if c1 != c2 or num2 - num1 != 1 or not all(k in r1 for k in ("CA", "C")) or not all(
                k in r2 for k in ("N", "CA")):
            continue
        length, sd = (1.341, 0.016) if n2 == "PRO" else (1.329, 0.014)
        checks = (abs(float(np.linalg.norm(r1["C"] - r2["N"]) - length)) > tol * sd,
                  abs(_cos(r1["CA"], r1["C"], r2["N"]) + 0.4473) > tol * 0.0311,
                  abs(_cos(r1["C"], r2["N"], r2["CA"]) + 0.5203) > tol * 0.0353)
        if any(checks):
            counts["peptide"] += sum(checks)
            bad.update((i, i + 1))
    clashing = _clashes(residues)
    counts["clashes"] = len(clashing)
    bad.update(int(i) for i in np.unique(clashing))
    return bad, counts


def _clashes(residues: Residues) -> np.ndarray:
    """(n, 2) residue indices i < j, one row per clashing atom pair between residues."""
    xyz, res_of, kind, radius = [], [], [], []
    for i, (_c, name, _num, atoms) in enumerate(residues):
        for atom, pos in atoms.items():
            r = VDW_RADIUS.get(atom[0])
            if r is None:
                continue
            xyz.append(pos)
            res_of.append(i)
            radius.append(r)
            # 1: backbone C, 2: backbone N, 3: cysteine SG (for the bonded pairs left out)
            kind.append({"C": 1, "N": 2}.get(atom, 3 if (atom, name) == ("SG", "CYS") else 0))
    if not xyz:
        return np.zeros((0, 2), dtype=int)
    pos = np.asarray(xyz, dtype=np.float64)
    res_arr, rad, kinds = np.asarray(res_of), np.asarray(radius), np.asarray(kind)
    chain_arr = np.asarray([residues[i][0] for i in res_of])
    num_arr = np.asarray([residues[i][2] for i in res_of])
    found = []
    cutoff = 2 * max(VDW_RADIUS.values()) - CLASH_OVERLAP
    order = np.argsort(pos[:, 0], kind="stable")  # sweep along x: compare only atoms within reach
    xs = pos[order, 0]
    chunk = 256
    for start in range(0, len(order), chunk):
        end = min(start + chunk, len(order))
        lo, hi = np.searchsorted(xs, xs[start] - cutoff), np.searchsorted(xs, xs[end - 1] + cutoff, side="right")
        a, b = order[start:end], order[lo:hi]
        d = np.linalg.norm(pos[a, None, :] - pos[None, b, :], axis=-1)
        close = d < rad[a, None] + rad[None, b] - CLASH_OVERLAP
        rows, cols = np.nonzero(close & (res_arr[a, None] < res_arr[None, b]))  # each pair once
        ia, ib = a[rows], b[cols]
        peptide = ((chain_arr[ia] == chain_arr[ib]) & (num_arr[ib] - num_arr[ia] == 1)
                   & (kinds[ia] == 1) & (kinds[ib] == 2))
        disulfide = (kinds[ia] == 3) & (kinds[ib] == 3)
        keep = ~(peptide | disulfide)
        found.append(np.stack([res_arr[ia[keep]], res_arr[ib[keep]]], axis=1))
    return np.concatenate(found)


def _residues(topology: Any, positions_nm: np.ndarray) -> Residues:
    out = []
    for res in topology.residues():
        atoms = {a.name: positions_nm[a.index] * 10.0 for a in res.atoms()
                 if a.element is not None and a.element.symbol != "H"}
        number = int("".join(ch for ch in str(res.id) if ch.isdigit() or ch == "-") or 0)
        out.append((res.chain.id, res.name, number, atoms))
    return out


# --------------------------------------------------------------------------- minimisation

_chosen_platform: list[str] = []  # the platform that opened a context (kept for the process)


def _platform_order() -> list[Any]:
    import openmm

    wanted = os.environ.get(PLATFORM_ENV, "").strip()
    if wanted:
        try:
            return [openmm.Platform.getPlatformByName(wanted)]
        except Exception as exc:  # noqa: BLE001 - OpenMMException: unknown name
            known = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
            raise RelaxError(f"{PLATFORM_ENV}={wanted!r} is not an OpenMM platform here "
                             f"(available: {', '.join(known)})") from exc
    if _chosen_platform:
        return [openmm.Platform.getPlatformByName(_chosen_platform[0])]
    platforms = [openmm.Platform.getPlatform(i) for i in range(openmm.Platform.getNumPlatforms())]
    return sorted(platforms, key=lambda p: -p.getSpeed())


def _context(system: Any, positions: Any) -> tuple[Any, str]:
    """An OpenMM context on the fastest platform that can open one (a CUDA plugin loads
    on a machine without a GPU and only fails here)."""
    import openmm

    errors = []
    for platform in _platform_order():
        try:
            context = openmm.Context(system, openmm.VerletIntegrator(0.001), platform)
        except Exception as exc:  # noqa: BLE001 - try the next platform
            errors.append(f"{platform.getName()}: {exc}")
            continue
        context.setPositions(positions)
        if not os.environ.get(PLATFORM_ENV):
            _chosen_platform[:] = [platform.getName()]
        return context, platform.getName()
    raise RelaxError("no OpenMM platform could open a context: " + "; ".join(errors))


def _fix(pdb_text: str) -> Any:
    from pdbfixer import PDBFixer

    fixer = PDBFixer(pdbfile=io.StringIO(pdb_text))
    fixer.findMissingResidues()
    fixer.missingResidues = {}  # add atoms, never residues: the model is complete
    fixer.findNonstandardResidues()
    fixer.replaceNonstandardResidues()
    fixer.removeHeterogens(keepWater=False)
    fixer.findMissingAtoms()
    fixer.addMissingAtoms(seed=0)
    fixer.addMissingHydrogens(7.0)
    return fixer


@functools.cache
def _forcefield() -> Any:
    from openmm import app

    return app.ForceField("amber99sb.xml")


def _minimise(topology: Any, positions_nm: np.ndarray, excluded: set[int], *, stiffness: float,
              tolerance: float, max_iterations: int) -> tuple[np.ndarray, float, float, str]:
    """One restrained minimisation from `positions_nm`; returns (positions, energy before,
    energy after, platform), energies without the restraint term."""
    import openmm
    from openmm import app, unit

    system = _forcefield().createSystem(topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds)
    restraint = openmm.CustomExternalForce("0.5*k*((x-x0)^2+(y-y0)^2+(z-z0)^2)")
    restraint.addGlobalParameter("k", stiffness * KCAL * 100.0)  # kcal/mol/Å² -> kJ/mol/nm²
    for name in ("x0", "y0", "z0"):
        restraint.addPerParticleParameter(name)
    for atom in topology.atoms():
        if atom.element is not None and atom.element.symbol != "H" and atom.residue.index not in excluded:
            restraint.addParticle(atom.index, [float(v) for v in positions_nm[atom.index]])
    restraint.setForceGroup(1)  # Amber terms stay in group 0: energies are reported without it
    system.addForce(restraint)
    context, platform = _context(system, positions_nm * unit.nanometer)
    before = context.getState(getEnergy=True, groups={0}).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    openmm.LocalEnergyMinimizer.minimize(
        context, tolerance * KCAL * 10.0, max_iterations)  # kcal/mol/Å -> kJ/mol/nm
    state = context.getState(getEnergy=True, getPositions=True, groups={0})
    after = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    positions = np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer), dtype=np.float64)
    if not (math.isfinite(before) and math.isfinite(after) and np.isfinite(positions).all()):
        raise RelaxError(f"minimisation diverged (energy {before:.4g} -> {after:.4g} kJ/mol)")
    return positions, before, after, platform


def relax_pdb(pdb_text: str, *, stiffness: float = STIFFNESS, tolerance: float = TOLERANCE,
              max_iterations: int = MAX_ITERATIONS, max_outer_iterations: int = MAX_OUTER_ITERATIONS,
              max_violating_fraction: float = MAX_VIOLATING_FRACTION) -> RelaxResult:
    """Relax one model given as PDB text (see the module docstring). Violations before are
    counted on the model as given; one where more than `max_violating_fraction` of the
    residues violate is refused (:class:`RelaxError`) before any minimisation."""
    residues = _residues_of_pdb(pdb_text)
    violations_before = len(_violations(residues)[0])
    if violations_before > max_violating_fraction * len(residues):
        raise RelaxError(f"not relaxed: {violations_before} of {len(residues)} residues have violations (bond "
                         "lengths, clashes): not a protein-like model, which restrained minimisation cannot "
                         "repair (random demo weights?)", violations_before=violations_before)
    try:
        from openmm import app, unit  # inside: an image without OpenMM records why, never fails the target

        fixer = _fix(pdb_text)
        topology = fixer.topology
        start = np.asarray(fixer.positions.value_in_unit(unit.nanometer), dtype=np.float64)
        positions, excluded = start, set()
        energy_before = energy_after = float("nan")
        violations, iteration, platform = violations_before, 0, ""
        # AlphaFold's outer loop: minimise at least once, then while violations remain
        while iteration == 0 or (violations > 0 and iteration < max_outer_iterations):
            positions, before, energy_after, platform = _minimise(
                topology, positions, excluded, stiffness=stiffness, tolerance=tolerance,
                max_iterations=max_iterations)
            if iteration == 0:
                energy_before = before
            per_residue, _counts = _violations(_residues(topology, positions))
            violations = len(per_residue)
            excluded |= per_residue  # their restraints go: let the force field fix them
            iteration += 1
    except RelaxError as exc:
        exc.violations_before = violations_before
        raise
    except Exception as exc:  # noqa: BLE001 - OpenMM / PDBFixer errors name the residue or the force
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise RelaxError(f"{type(exc).__name__}: {first}"[:300], violations_before=violations_before) from exc
    heavy = [a.index for a in topology.atoms() if a.element is not None and a.element.symbol != "H"]
    rmsd = float(np.sqrt(np.mean(np.sum((positions[heavy] - start[heavy]) ** 2, axis=-1)))) * 10.0
    out = io.StringIO()
    app.PDBFile.writeFile(topology, positions * unit.nanometer, out, keepIds=True)
    return RelaxResult(pdb=out.getvalue(), energy_before=energy_before, energy_after=energy_after,
                       violations_before=violations_before, violations_after=violations, rmsd=rmsd,
                       outer_iterations=iteration, platform=platform)


def _residues_of_pdb(pdb_text: str) -> Residues:
    """Heavy atoms per residue of a PDB text (polymer residues; first model)."""
    import gemmi

    st = gemmi.read_pdb_string(pdb_text)
    st.remove_ligands_and_waters()
    return [(ch.name, res.name, res.seqid.num,
             {a.name: np.array(a.pos.tolist()) for a in res if a.element.name not in ("H", "D")})
            for ch in st[0] for res in ch]


# --------------------------------------------------------------------------- publishing

def relax_versions() -> dict[str, str]:
    """Versions of the relaxation's libraries, for the step's provenance."""
    from importlib import metadata

    out = {}
    for dist in ("openmm", "pdbfixer"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def selected_ranks(mode: str, n_models: int) -> list[int]:
    """The ranks a ``relax`` mode relaxes: none, the best (rank 0) or every model."""
    if mode not in RELAX_MODES:
        raise ValueError(f"relax must be one of {', '.join(RELAX_MODES)}, not {mode!r}")
    return {"none": [], "best": [0][:n_models], "all": list(range(n_models))}[mode]


def _relaxed_structure(pdb_text: str, unrelaxed: Any, target: str) -> Any:
    """The relaxed model as a gemmi structure named like the unrelaxed one, each residue's
    B-factor its pLDDT again (OpenMM writes none)."""
    import gemmi

    plddt = {(ch.name, res.seqid.num): res[0].b_iso for ch in unrelaxed[0] for res in ch if len(res)}
    st = gemmi.read_pdb_string(pdb_text)
    st.name = target
    st.raw_remarks = []  # OpenMM's "CREATED WITH" line; provenance lives in metrics.json
    for ch in st[0]:
        for res in ch:
            res.entity_type = gemmi.EntityType.Polymer
            for atom in res:
                atom.b_iso = plddt.get((ch.name, res.seqid.num), 0.0)
    st.setup_entities()
    return st


def relax_models(out_dir: Path, models: list[Prediction], *, mode: str, target: str, demo: bool,
                 log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Relax the models `mode` selects (best first, as ranked) and write each as
    ``relaxed_<rank>.pdb/.cif`` (demo-weight models marked like the unrelaxed ones).
    Returns one record per model: ``status`` relaxed | failed | skipped, ``relaxed``, and
    violations, energies (kJ/mol), RMSD, platform and seconds, or the ``reason`` it failed."""
    chosen = set(selected_ranks(mode, len(models)))
    records: list[dict[str, Any]] = []
    for rank, model in enumerate(models):
        if rank not in chosen:
            records.append({"status": "skipped", "relaxed": False})
            continue
        started = time.monotonic()
        unrelaxed = structure_of(model, target)
        try:
            empty = np.nonzero(np.asarray(model.atom_mask).sum(axis=-1) == 0)[0]
            if len(empty):  # PDBFixer would bond across the hole (AlphaFold refuses these too)
                raise RelaxError(f"{len(empty)} residue(s) without atoms (unknown residues, e.g. X at "
                                 f"position {int(empty[0]) + 1}): Amber cannot model them")
            result = relax_pdb(unrelaxed.make_pdb_string())
        except RelaxError as exc:
            seconds = time.monotonic() - started
            records.append({"status": "failed", "relaxed": False, "reason": str(exc),
                            "violations_before": exc.violations_before, "seconds": round(seconds, 2)})
            log(f"relax ranked_{rank} ({model.model_name}) failed after {seconds:.1f} s, keeping the unrelaxed "
                f"model: {exc}")
            continue
        write_marked(out_dir, f"relaxed_{rank}", _relaxed_structure(result.pdb, unrelaxed, target), demo=demo)
        seconds = time.monotonic() - started
        records.append({**result.record(seconds), "file": f"relaxed_{rank}.pdb"})
        log(f"relaxed ranked_{rank} ({model.model_name}) on {result.platform} in {seconds:.1f} s: violations "
            f"{result.violations_before} -> {result.violations_after}, energy {result.energy_before:.0f} -> "
            f"{result.energy_after:.0f} kJ/mol, heavy-atom RMSD {result.rmsd:.2f} Å")
    return records
