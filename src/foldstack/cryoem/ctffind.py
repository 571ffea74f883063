"""CTFFIND 4.1 as the ``ctf`` stage's estimator, where the image has it.

The CPU image builds CTFFIND 4.1.14 (``containers/cryoem-cpu/Dockerfile``) because it is
the field's estimator; Debian has none, so a local run without it falls back to
:mod:`foldstack.cryoem.ctf`. :func:`choose` makes that choice (knob ``ctf_estimator``:
0 picks CTFFIND when found, 1 forces foldstack's own, 2 forces CTFFIND), and
:func:`run_ctffind` runs one micrograph.

CTFFIND 4.1 takes its parameters as answers to interactive prompts; like RELION's
``relion_run_ctffind``, the answers go to its stdin, one a line, in the prompt order of
4.1.14 (:meth:`CtffindParams.answers`). A misread answer does not make CTFFIND fail, so
the parameters the summary file echoes back are checked against the ones sent
(:func:`check_echo`): a prompt order that changed is an error, not a silently wrong fit.

The summary (``<diagnostic root>.txt``; RELION reads the same file) is a few ``#``
comment lines, then one line per micrograph: number, defocus 1 and 2 (Å), azimuth of
astigmatism (degrees), additional phase shift (radians), cross-correlation, and the
spacing (Å) up to which the Thon rings were fitted (``inf`` when none were).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from foldstack.core.errors import BadInputError, StepError
from foldstack.cryoem.ctf import CtfFit
from foldstack.cryoem.knobs import Knobs

ENV_BINARY = "FOLDSTACK_CTFFIND"  # a CTFFIND binary to use instead of `ctffind` on PATH
AUTO, OWN, CTFFIND = 0, 1, 2  # the ctf_estimator knob
OWN_NAME, CTFFIND_NAME = "foldstack", "ctffind"
DEFOCUS_STEP = 100.0  # Å: CTFFIND 4.1's own default step of the exhaustive 1-D search
TIMEOUT_S = 900.0  # one micrograph takes seconds to a minute; beyond this it hangs on a prompt
MAX_MIN_RESOLUTION = 50.0  # Å: CTFFIND 4.1 refuses a lower "Minimum resolution"
NYQUIST_MARGIN = 2.2  # px: the fit's high-resolution end stays this far from Nyquist (2 px)


class CtffindError(StepError):
    """CTFFIND failed on a micrograph (exit 1: a retry may help). The one-line message
    names the micrograph and the log."""

    code = "ctffind_failed"

    def __str__(self) -> str:
        return f"[{self.code}] {super().__str__()}"


@dataclass(frozen=True)
class CtffindParams:
    """What the prompts ask, in their order."""

    pixel_size: float  # Å
    voltage_kv: float
    cs_mm: float
    amplitude_contrast: float
    box: int  # px, the amplitude spectrum's size
    min_resolution: float  # Å, lowest resolution fitted
    max_resolution: float  # Å, highest
    defocus_min: float  # Å, underfocus positive
    defocus_max: float
    defocus_step: float = DEFOCUS_STEP
    astigmatism_tolerance: float = 0.0  # Å; 0: no restraint on astigmatism
    slower_search: bool = True  # RELION's default since CTFFIND 4.1.8: more accurate

    def answers(self, micrograph: str, diagnostic: str) -> list[str]:
        """The stdin lines for a single-frame micrograph (a stack would be asked whether it
        is a movie after its name; the motion-corrected sums never are)."""
        lines = [micrograph, diagnostic, _num(self.pixel_size), _num(self.voltage_kv), _num(self.cs_mm),
                 _num(self.amplitude_contrast), str(self.box), _num(self.min_resolution), _num(self.max_resolution),
                 _num(self.defocus_min), _num(self.defocus_max), _num(self.defocus_step),
                 "no",  # Do you know what astigmatism is present?
                 "yes" if self.slower_search else "no"]  # Slower, more exhaustive search?
        if self.astigmatism_tolerance > 0:
            lines += ["yes", _num(self.astigmatism_tolerance)]  # Use a restraint on astigmatism? + tolerance
        else:
            lines.append("no")
        lines += ["no",  # Find additional phase shift? (no phase plate in the request's optics)
                  "no",  # Do you want to set expert options?
                  # read only by builds that ask "Determine sample tilt?" before the expert
                  # options (cisTEM's later 4.1.14): there the line above answers tilt and
                  # this one the expert options; the release tarball never reads it
                  "no"]
        return lines


def _num(value: float) -> str:
    return f"{value:g}"


@dataclass(frozen=True)
class CtffindResult:
    """One micrograph's line of the summary file, and the parameters it echoes."""

    version: str
    defocus_1: float  # Å
    defocus_2: float  # Å
    azimuth: float  # degrees, of defocus 1's axis from x
    phase_shift: float  # radians
    cross_correlation: float
    fit_resolution: float  # Å; inf when no ring was fitted
    echoed: dict[str, float]  # pixel_size, voltage_kv, cs_mm, amplitude_contrast, box, min/max_resolution

    def to_fit(self, min_resolution: float) -> CtfFit:
        """The ``ctf`` stage's record (RELION's convention: DefocusU the larger, angle in
        [0, 180)). A fit that reached no ring reports the lowest resolution fitted, as
        foldstack's own estimator does."""
        u, v, angle = self.defocus_1, self.defocus_2, self.azimuth
        if v > u:  # the same ellipse, named from its other axis
            u, v, angle = v, u, angle + 90.0
        reach = self.fit_resolution if math.isfinite(self.fit_resolution) else min_resolution
        return CtfFit(defocus=(u + v) / 2.0, figure_of_merit=self.cross_correlation, max_resolution=reach,
                      defocus_u=u, defocus_v=v, defocus_angle=angle % 180.0,
                      phase_shift=math.degrees(self.phase_shift))


_ECHO = {  # summary header -> CtffindParams field
    "pixel_size": r"Pixel size:\s*([-\d.eE+]+)",
    "voltage_kv": r"acceleration voltage:\s*([-\d.eE+]+)",
    "cs_mm": r"spherical aberration:\s*([-\d.eE+]+)",
    "amplitude_contrast": r"amplitude contrast:\s*([-\d.eE+]+)",
    "box": r"Box size:\s*([-\d.eE+]+)",
    "min_resolution": r"min\. res\.:\s*([-\d.eE+]+)",
    "max_resolution": r"max\. res\.:\s*([-\d.eE+]+)",
}


def parse_output(text: str, source: str = "summary") -> CtffindResult:
    """The first micrograph of a CTFFIND 4.1 summary file (ValueError, naming `source`,
    when it is not one)."""
    comments = [ln[1:].strip() for ln in text.splitlines() if ln.startswith("#")]
    data = [ln.split() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if not data:
        raise ValueError(f"{source}: no result line (CTFFIND wrote only its header)")
    if len(data[0]) < 7:
        raise ValueError(f"{source}: expected 7 columns on the result line, got {len(data[0])}: {' '.join(data[0])}")
    try:
        _, d1, d2, azimuth, phase, cc, reach = (float(v) for v in data[0][:7])  # float() reads "inf"
    except ValueError as exc:
        raise ValueError(f"{source}: unreadable result line {' '.join(data[0])!r}") from exc
    header = " ; ".join(comments)
    version = re.search(r"CTFFind version\s+(\S+)", header, re.IGNORECASE)
    echoed = {}
    for name, pattern in _ECHO.items():
        found = re.search(pattern, header, re.IGNORECASE)
        if found:
            echoed[name] = float(found.group(1))
    return CtffindResult(version=version.group(1).rstrip(",") if version else "unknown", defocus_1=d1, defocus_2=d2,
                         azimuth=azimuth, phase_shift=phase, cross_correlation=cc, fit_resolution=reach,
                         echoed=echoed)


# the echoed parameters CTFFIND keeps as given (it may resample a small pixel, so not that)
CHECKED = ("voltage_kv", "cs_mm", "amplitude_contrast", "box", "min_resolution")


def check_echo(result: CtffindResult, params: CtffindParams) -> list[str]:
    """The parameters CTFFIND says it used that differ from those sent (the summary prints
    them rounded to 1-2 decimals): answers read by the wrong prompts shift these."""
    wrong = []
    for name in CHECKED:
        if name not in result.echoed:
            continue
        value = result.echoed[name]
        sent = float(getattr(params, name))
        if abs(value - sent) > max(0.006, 0.001 * abs(sent)):
            wrong.append(f"{name} {value:g} (sent {sent:g})")
    return wrong


def fom_floor(estimator: str | None, knobs: Knobs) -> float:
    """Curation's floor on a micrograph's ``ctf_fom``, by the estimator that fitted it:
    CTFFIND's cross-correlation is on another scale than foldstack's figure of merit."""
    return knobs.min_ctffind_cc if estimator == CTFFIND_NAME else knobs.min_ctf_fom


def find_binary() -> str | None:
    """``$FOLDSTACK_CTFFIND`` when set (bad input if it is not an executable file), else
    ``ctffind`` on PATH, else None."""
    named = os.environ.get(ENV_BINARY, "").strip()
    if named:
        path = shutil.which(named)
        if path is None:
            raise BadInputError(f"{ENV_BINARY}={named!r} is not an executable file or a program on PATH")
        return path
    return shutil.which("ctffind")


def choose(knob: int) -> tuple[str, str | None]:
    """(estimator name, CTFFIND binary or None) for the ``ctf_estimator`` knob."""
    if knob == OWN:
        return OWN_NAME, None
    binary = find_binary()
    if binary is not None:
        return CTFFIND_NAME, binary
    if knob == CTFFIND:
        raise BadInputError(f"knobs.ctf_estimator={CTFFIND} asks for CTFFIND, but there is no `ctffind` on PATH "
                            f"and {ENV_BINARY} is not set (the cryoem CPU image has it)")
    return OWN_NAME, None


def params_for(*, pixel_size: float, voltage_kv: float, cs_mm: float, amplitude_contrast: float, box: int,
               min_resolution: float, max_resolution: float, defocus_min: float, defocus_max: float,
               astigmatism_tolerance: float, shape: tuple[int, int]) -> CtffindParams:
    """The prompts' answers for a micrograph of `shape` (ny, nx): the spectrum box is kept
    within the micrograph (CTFFIND tiles it), the fit's high end off Nyquist."""
    side = min(shape) - min(shape) % 2
    if side < 128:
        raise BadInputError(f"micrograph of {shape[1]}x{shape[0]} px is too small for CTFFIND (128 px at least)")
    high = max(max_resolution, NYQUIST_MARGIN * pixel_size)
    low = min(min_resolution, MAX_MIN_RESOLUTION)
    if high >= low:
        raise BadInputError(f"CTF fit range empty: {low:g} Å to {high:g} Å at {pixel_size:g} Å/px "
                            "(knobs ctffind_min_resolution / ctffind_max_resolution)")
    return CtffindParams(pixel_size=pixel_size, voltage_kv=voltage_kv, cs_mm=cs_mm,
                         amplitude_contrast=amplitude_contrast, box=min(box, side), min_resolution=low,
                         max_resolution=round(high, 3), defocus_min=defocus_min, defocus_max=defocus_max,
                         astigmatism_tolerance=astigmatism_tolerance)


def run_ctffind(binary: str, micrograph: str, params: CtffindParams, *, cwd: Path, out_dir: str,
                log: Path, timeout: float = TIMEOUT_S) -> CtffindResult:
    """Run CTFFIND on `micrograph` (relative to `cwd`), its diagnostic spectrum written to
    ``<out_dir>/<name>.ctf`` (an MRC file, RELION's name for it) and its summary beside;
    its stdout appended to `log`. Raises :class:`CtffindError` naming the micrograph."""
    name = Path(micrograph).name.split(".")[0]
    (cwd / out_dir).mkdir(parents=True, exist_ok=True)
    diagnostic = f"{out_dir}/{name}.ctf"
    summary = cwd / out_dir / f"{name}.txt"
    answers = params.answers(micrograph, diagnostic)
    start = log.stat().st_size if log.is_file() else 0  # the log holds earlier micrographs' runs
    with open(log, "a") as fh:
        fh.write(f"$ {binary}  # answers: {' | '.join(answers)}\n")
        fh.flush()
        try:
            proc = subprocess.run([binary], input="\n".join(answers) + "\n", cwd=cwd, stdout=fh,
                                  stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise CtffindError(f"ctffind on {micrograph} ran past {timeout:g}s (log: {log})") from exc
        except OSError as exc:
            raise CtffindError(f"ctffind on {micrograph} could not start: {exc} (log: {log})") from exc
    if proc.returncode != 0:
        raise CtffindError(f"ctffind on {micrograph} exited {proc.returncode}: {_last_line(log, start)} (log: {log})")
    if not summary.is_file():  # where this CTFFIND says it wrote it (RELION reads this log line)
        summary = _summary_from_log(log, start, cwd) or summary
    if not summary.is_file():  # CTFFIND reports some errors and still exits 0
        raise CtffindError(f"ctffind on {micrograph} wrote no {out_dir}/{name}.txt: {_last_line(log, start)} "
                           f"(log: {log})")
    try:
        result = parse_output(summary.read_text(errors="replace"), f"{out_dir}/{name}.txt")
    except ValueError as exc:
        raise CtffindError(f"ctffind on {micrograph}: {exc}") from exc
    wrong = check_echo(result, params)
    if wrong:
        raise CtffindError(f"ctffind on {micrograph} used other parameters than sent (its prompts changed?): "
                           f"{', '.join(wrong)} (log: {log})")
    return result


def _new_lines(log: Path, start: int) -> list[str]:
    with open(log, "rb") as fh:
        fh.seek(start)
        return fh.read().decode(errors="replace").splitlines()


def _summary_from_log(log: Path, start: int, cwd: Path) -> Path | None:
    lines = [ln for ln in _new_lines(log, start) if "Summary of results" in ln]
    return cwd / lines[-1].split()[-1] if lines and lines[-1].split() else None


def _last_line(log: Path, start: int) -> str:
    lines = [ln.strip() for ln in _new_lines(log, start) if ln.strip()]
    for line in reversed(lines):
        if "error" in line.lower():
            return line[:300]
    return lines[-1][:300] if lines else "no output"
