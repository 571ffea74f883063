"""The CryoEM workflow's knobs: QC thresholds and iteration counts (pure data, so the
request model and the Lambda tasks can check a request's overrides without the stages)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Knobs:
    """Thresholds and iteration counts (the workflow's knobs)."""

    max_drift_px: float = 30.0  # curate: a micrograph that drifted more is dropped
    max_ctf_resolution: float = 20.0  # curate: Å; a CTF fit that does not reach this is dropped
    min_ctf_fom: float = 0.5  # curate: pure noise fits with a figure of merit up to ~0.3
    # curate, for CTFFIND's fits: its score is a normalised cross-correlation, ~0.02-0.3 on
    # real data, not on min_ctf_fom's scale; its fit resolution (max_ctf_resolution) does the sorting
    min_ctffind_cc: float = 0.0
    # ctf: 0 CTFFIND when found (FOLDSTACK_CTFFIND, else `ctffind` on PATH: the CPU image),
    # else foldstack's own estimator; 1 always foldstack's; 2 always CTFFIND (bad input without it)
    ctf_estimator: int = 0
    ctf_defocus_min: float = 3000.0  # Å: the defocus search range (both estimators)
    ctf_defocus_max: float = 50000.0
    ctffind_box: int = 512  # px: CTFFIND's amplitude spectrum (at most the micrograph)
    ctffind_min_resolution: float = 30.0  # Å: lowest resolution CTFFIND fits (at most 50)
    ctffind_max_resolution: float = 5.0  # Å: highest (raised to 2.2 px when the pixel is coarser)
    ctffind_astigmatism: float = 0.0  # Å: CTFFIND's astigmatism restraint (expected astigmatism; 0: none)
    min_particles: int = 1  # curate: micrographs with fewer extracted particles are dropped
    classes_2d: int = 4
    # 2D classification's cost is particles x classes x poses x iterations; on 2 CPU cores
    # the defaults below classify the demo's 2,000 particles in minutes, not the 22 it took
    # with 15 iterations, 21 translations and no bound on the fine pass
    iter_2d: int = 10
    # 1: relion_refine --fast_subsets (RELION demands >= 20 iterations with it, else it is not
    # passed): iterations 1-15 on subsets, the rest on every particle. Pays for >~10,000 particles
    fast_subsets_2d: int = 0
    maxsig_2d: int = 200  # poses per particle carried into the fine pass (--maxsig; 0: no bound)
    # Å: the 2D expectation step stops here (--strict_highres_exp). RELION users classify
    # binned particles for the same reason: class selection needs ~20 Å, and the poses'
    # cost grows with every Fourier shell past it. 0: no limit
    max_resolution_2d: float = 20.0
    offset_range_2d: float = 4.0  # px searched around the picked centre (step 2 px: 13 translations, not 21 at 5)
    min_class_fraction: float = 0.05  # 2D selection: classes holding less are junk
    max_class_resolution_ratio: float = 1.5  # 2D selection: ... or blurrier than this x the best class
    reference_lowpass: float = 40.0  # Å: a supplied reference is filtered to this before refinement
    guard_lowpass: float = 60.0  # Å: the bias guard's second, harder-filtered start
    # 1: the bias guard's second start is de novo (independent of the reference; compared
    # after a free alignment), 0: the reference filtered to guard_lowpass (same frame, strict).
    # De novo catches a bias both filtered starts share, but at 13-24 Å any two globular maps
    # of one size agree once freely aligned, so it only discriminates at real resolutions
    guard_denovo: int = 0
    denovo_iter: int = 8  # SGD iterations in each of the de novo initial model's three phases
    # The de novo SGD's resolution, Å (initial and final): at 35 Å RELION samples orientations
    # every 30 degrees (576 poses), at 25 Å every 15 (4,608: the SGD took 15-25 minutes).
    # Auto-refine low-pass filters its start to 40 Å (ini_high) anyway, so a finer initial
    # model buys nothing but time.
    denovo_resolution: float = 35.0
    denovo_subset: int = 100  # particles per SGD mini-batch in every phase (RELION's final default: 500)
    denovo_offset_range: float = 4.0  # px; 2D classification already centred the particles
    mask_protein_fraction: float = 0.15  # mask threshold: this fraction of the particle sphere is protein
    pick_threshold: float = 2.0  # relion_autopick --LoG_adjust_threshold (in sigma of the LoG response)

    def __post_init__(self) -> None:
        # the checks with_overrides cannot make from the types alone
        if self.ctf_estimator not in (0, 1, 2):
            raise ValueError(f"knobs.ctf_estimator={self.ctf_estimator!r}: expected 0 (auto), 1 (foldstack) "
                             "or 2 (ctffind)")
        if self.ctf_defocus_max <= self.ctf_defocus_min:
            raise ValueError(f"knobs.ctf_defocus_max={self.ctf_defocus_max:g}: expected > ctf_defocus_min "
                             f"({self.ctf_defocus_min:g})")
        if not 0 < self.ctffind_max_resolution < self.ctffind_min_resolution <= 50:
            raise ValueError(f"knobs.ctffind_min_resolution={self.ctffind_min_resolution:g}, ctffind_max_resolution="
                             f"{self.ctffind_max_resolution:g}: expected 0 < max < min <= 50 Å")

    def to_json(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def with_overrides(cls, overrides: dict[str, Any] | None) -> Knobs:
        """The defaults with a request's `knobs` overrides (names and types checked: ValueError)."""
        known = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for name, value in (overrides or {}).items():
            if name not in known:
                raise ValueError(f"knobs.{name} is not a knob; known: {', '.join(sorted(known))}")
            want_int = known[name] in (int, "int")
            wrong_type = not isinstance(value, int | float) or (want_int and not isinstance(value, int))
            if isinstance(value, bool) or wrong_type:
                raise ValueError(f"knobs.{name}={value!r}: expected {'a whole number' if want_int else 'a number'}")
            if value < 0:
                raise ValueError(f"knobs.{name}={value!r}: expected >= 0")
            values[name] = value
        return cls(**values)
