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
    min_particles: int = 1  # curate: micrographs with fewer extracted particles are dropped
    classes_2d: int = 4
    iter_2d: int = 15
    min_class_fraction: float = 0.05  # 2D selection: classes holding less are junk
    max_class_resolution_ratio: float = 1.5  # 2D selection: ... or blurrier than this x the best class
    reference_lowpass: float = 40.0  # Å: a supplied reference is filtered to this before refinement
    guard_lowpass: float = 60.0  # Å: the bias guard's second, harder-filtered start
    denovo_iter: int = 10  # SGD iterations in each phase of the de novo initial model
    mask_protein_fraction: float = 0.15  # mask threshold: this fraction of the particle sphere is protein
    pick_threshold: float = 2.0  # relion_autopick --LoG_adjust_threshold (in sigma of the LoG response)

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
