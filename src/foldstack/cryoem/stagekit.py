"""What the CryoEM stages share: the fold steps' contract (:func:`run_step`), plus the
pieces RELION needs. Each stage is one future Batch job: it runs under ``run_step`` in
``<scratch>/<run_id>/<stage>/<target>/`` (attempt dir, done record with checksums,
typed errors and exit codes), RELION runs with the attempt dir as its working directory,
and whatever a stage reads from an earlier stage is first linked into its attempt dir
(:func:`link_inputs`), so every STAR file a stage writes holds paths relative to its own
folder and stays valid after the attempt dir is renamed into place.

What does not fit from the fold contract: ``StepContext.read_target`` (a FASTA target):
here the target is a micrograph batch (``batch-000``) or ``all``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from foldstack.core.errors import BadInputError
from foldstack.cryoem.knobs import Knobs
from foldstack.cryoem.request import CryoemRequest, Optics
from foldstack.cryoem.star import StarBlock, read_star, table
from foldstack.steps.common import StepContext, done_path, load_valid_done, run_step

ALL = "all"
__all__ = ["ALL", "Knobs", "link_inputs", "read_json", "save_request", "stage", "stage_dir", "write_json"]


def stage(name: str, run_id: str, target: str, scratch: Path, body: Callable[[StepContext], None]) -> Path:
    """Run one stage under the fold steps' contract; returns its final directory."""
    return run_step(name, run_id, target, scratch, body)


def stage_dir(scratch: Path, run_id: str, name: str, target: str) -> Path:
    """The final directory of a finished stage; bad input if it has not finished."""
    folder = Path(scratch) / run_id / name / target
    if load_valid_done(folder, name, run_id, target) is None:
        raise BadInputError(f"stage {name} [{target}] has not finished: no valid {done_path(folder, name).name} "
                            f"in {folder}")
    return folder


def link_inputs(ctx: StepContext, source_dir: Path, names: list[str]) -> None:
    """Hard-link (copy across file systems) `names` from an earlier stage into the attempt
    dir under the same relative paths, recording each as an input."""
    for name in names:
        src, dst = source_dir / name, ctx.work_dir / name
        if not src.is_file():
            raise BadInputError(f"input {src} is missing")
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
        ctx.record_input(src)


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def save_request(ctx: StepContext, request: CryoemRequest) -> None:
    write_json(ctx.work_dir / "request.json", request.to_json())


def micrograph_optics(optics: Optics) -> StarBlock:
    """RELION 3.1's optics table for micrographs (one optics group)."""
    return table("optics", [{
        "rlnOpticsGroupName": "opticsGroup1", "rlnOpticsGroup": 1,
        "rlnMicrographOriginalPixelSize": optics.pixel_size, "rlnVoltage": optics.voltage_kv,
        "rlnSphericalAberration": optics.cs_mm, "rlnAmplitudeContrast": optics.amplitude_contrast,
        "rlnMicrographPixelSize": optics.pixel_size,
    }])


def star_rows(path: Path, block: str) -> list[dict[str, str]]:
    blocks = read_star(path)
    if block not in blocks:
        raise BadInputError(f"{path}: no data_{block} block")
    return blocks[block].records()
