"""The ``ctf`` stage's choice of estimator and its CTFFIND 4.1 path, with a fake ``ctffind``
that asks 4.1.14's prompts in their order (reading stdin as the real one does), records the
answers it got and writes a summary in CTFFIND's format; and the summary parser on a sample
of that format."""

from __future__ import annotations

import json
import math
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from foldstack.core.errors import BadInputError
from foldstack.cryoem import ctffind
from foldstack.cryoem.ctf import ctf_image
from foldstack.cryoem.knobs import Knobs
from foldstack.cryoem.mrc import write_mrc
from foldstack.cryoem.preprocess import estimate_ctf
from foldstack.cryoem.request import CryoemRequest, Optics
from foldstack.cryoem.stagekit import read_json, stage, star_rows, write_json

# A CTFFIND 4.1.14 summary (``<diagnostic root>.txt``) as the program documents it: the
# header echoes the parameters, then one line per micrograph with seven columns.
SAMPLE = """\
# Output from CTFFind version 4.1.14, run on 2026-11-30 21:14:07
# Input file: MotionCorr/Movies/mic_003.mrc ; Number of micrographs: 1
# Pixel size: 1.060 Angstroms ; acceleration voltage: 300.0 keV ; spherical aberration: 2.70 mm ; \
amplitude contrast: 0.10
# Box size: 512 pixels ; min. res.: 30.0 Angstroms ; max. res.: 5.0 Angstroms ; min. def.: 3000.0 um; \
max. def. 50000.0 um
# Columns: #1 - micrograph number; #2 - defocus 1 [Angstroms]; #3 - defocus 2; #4 - azimuth of astigmatism; \
#5 - additional phase shift [radians]; #6 - cross correlation; #7 - spacing (in Angstroms) up to which CTF rings \
were fit successfully
1.000000 21873.304688 21401.552734 -37.613659 0.000000 0.142381 3.875969
"""

OPTICS = Optics(pixel_size=2.0, voltage_kv=300.0, cs_mm=2.7, amplitude_contrast=0.1, dose_per_frame=1.5)
RUN, BATCH = "ctffind-test", "batch-000"


# --------------------------------------------------------------------------- the parser


def test_parses_a_ctffind_4_1_summary():
    result = ctffind.parse_output(SAMPLE, "mic_003.txt")
    assert result.version == "4.1.14"
    assert (result.defocus_1, result.defocus_2) == pytest.approx((21873.304688, 21401.552734))
    assert result.azimuth == pytest.approx(-37.613659)
    assert result.phase_shift == 0.0
    assert result.cross_correlation == pytest.approx(0.142381)
    assert result.fit_resolution == pytest.approx(3.875969)
    assert result.echoed == pytest.approx({"pixel_size": 1.06, "voltage_kv": 300.0, "cs_mm": 2.7,
                                           "amplitude_contrast": 0.1, "box": 512.0, "min_resolution": 30.0,
                                           "max_resolution": 5.0})
    fit = result.to_fit(30.0)
    assert (fit.defocus_u, fit.defocus_v) == pytest.approx((21873.304688, 21401.552734))
    assert fit.defocus == pytest.approx((21873.304688 + 21401.552734) / 2)
    assert fit.defocus_angle == pytest.approx(180.0 - 37.613659)  # RELION's [0, 180)
    assert fit.astigmatism == pytest.approx(471.751954)
    assert (fit.figure_of_merit, fit.max_resolution) == pytest.approx((0.142381, 3.875969))


def test_defocus_2_larger_is_the_same_ellipse_named_from_its_other_axis():
    text = SAMPLE.replace("21873.304688 21401.552734 -37.613659", "15000.0 15600.0 20.0")
    fit = ctffind.parse_output(text).to_fit(30.0)
    assert (fit.defocus_u, fit.defocus_v, fit.defocus_angle) == pytest.approx((15600.0, 15000.0, 110.0))


def test_no_ring_fitted_reports_the_lowest_resolution_fitted():
    text = SAMPLE.replace("0.142381 3.875969", "0.004100 inf")
    result = ctffind.parse_output(text)
    assert math.isinf(result.fit_resolution)
    assert result.to_fit(30.0).max_resolution == 30.0


def test_phase_shift_is_read_in_radians_and_kept_in_degrees():
    text = SAMPLE.replace("-37.613659 0.000000", "-37.613659 1.570796")
    assert ctffind.parse_output(text).to_fit(30.0).phase_shift == pytest.approx(90.0)


@pytest.mark.parametrize("text, message", [
    ("# Output from CTFFind version 4.1.14\n", "no result line"),
    ("1.0 20000.0 19000.0 10.0\n", "expected 7 columns"),
    ("1.0 20000.0 19000.0 ten 0.0 0.1 5.0\n", "unreadable result line"),
])
def test_a_summary_without_a_result_is_an_error_naming_it(text, message):
    with pytest.raises(ValueError, match=f"mic_007.txt: {message}"):
        ctffind.parse_output(text, "mic_007.txt")


def test_echoed_parameters_are_checked_against_those_sent():
    result = ctffind.parse_output(SAMPLE)
    sent = ctffind.CtffindParams(pixel_size=1.06, voltage_kv=300.0, cs_mm=2.7, amplitude_contrast=0.1, box=512,
                                 min_resolution=30.0, max_resolution=5.0, defocus_min=3000.0, defocus_max=50000.0)
    assert ctffind.check_echo(result, sent) == []
    shifted = ctffind.CtffindParams(pixel_size=1.06, voltage_kv=200.0, cs_mm=2.7, amplitude_contrast=0.07, box=512,
                                    min_resolution=30.0, max_resolution=5.0, defocus_min=3000.0, defocus_max=50000.0)
    assert ctffind.check_echo(result, shifted) == ["voltage_kv 300 (sent 200)", "amplitude_contrast 0.1 (sent 0.07)"]


def test_params_keep_the_box_in_the_micrograph_and_the_fit_off_nyquist():
    p = ctffind.params_for(pixel_size=3.0, voltage_kv=300.0, cs_mm=2.7, amplitude_contrast=0.1, box=512,
                           min_resolution=60.0, max_resolution=5.0, defocus_min=3000.0, defocus_max=50000.0,
                           astigmatism_tolerance=0.0, shape=(301, 400))
    assert (p.box, p.min_resolution, p.max_resolution) == (300, 50.0, 6.6)
    with pytest.raises(BadInputError, match="too small for CTFFIND"):
        ctffind.params_for(pixel_size=1.0, voltage_kv=300.0, cs_mm=2.7, amplitude_contrast=0.1, box=512,
                           min_resolution=30.0, max_resolution=5.0, defocus_min=3000.0, defocus_max=50000.0,
                           astigmatism_tolerance=0.0, shape=(100, 400))
    with pytest.raises(BadInputError, match="fit range empty"):
        ctffind.params_for(pixel_size=8.0, voltage_kv=300.0, cs_mm=2.7, amplitude_contrast=0.1, box=512,
                           min_resolution=15.0, max_resolution=5.0, defocus_min=3000.0, defocus_max=50000.0,
                           astigmatism_tolerance=0.0, shape=(512, 512))


@pytest.mark.parametrize("overrides, message", [
    ({"ctf_estimator": 3}, "ctf_estimator=3"),
    ({"ctf_defocus_min": 60000.0}, "ctf_defocus_max"),
    ({"ctffind_min_resolution": 60.0}, "ctffind_min_resolution=60"),
    ({"ctffind_max_resolution": 40.0}, "expected 0 < max < min"),
])
def test_ctf_knobs_are_checked(overrides, message):
    with pytest.raises(ValueError, match=message):
        Knobs.with_overrides(overrides)


# --------------------------------------------------------------------------- the fake ctffind

FAKE = r'''#!{python}
"""A stand-in for CTFFIND 4.1.14: its prompts in its order, one stdin line each."""
import json, os, sys
from pathlib import Path

mode = os.environ.get("FAKE_CTFFIND_MODE", "ok")
lines = iter(sys.stdin.read().split("\n"))
got = {{}}
only = os.environ.get("FAKE_CTFFIND_ONLY", "")  # misbehave on this micrograph only


def ask(prompt, kind="str"):
    try:
        answer = next(lines).strip()
    except StopIteration:
        sys.exit(f"Error: end of input at prompt {{prompt!r}}")
    print(f"{{prompt}} : {{answer}}")
    if kind == "float":
        answer = float(answer)
    elif kind == "int":
        answer = int(answer)
    elif kind == "yesno":
        if answer.lower() not in ("yes", "no", "y", "n"):
            sys.exit(f"Error: {{prompt!r}} wants yes or no, got {{answer!r}}")
        answer = answer.lower().startswith("y")
    got[prompt] = answer
    return answer


mic = ask("Input image file name")
if not Path(mic).is_file():
    sys.exit(f"Error: {{mic}} does not exist")
if only not in mic:
    mode = "ok"
if mode == "fail":
    print("Error: Oops - the micrograph could not be read")
    sys.exit(1)
diag = ask("Output diagnostic image file name")
optics = ["Pixel size", "Acceleration voltage", "Spherical aberration", "Amplitude contrast"]
if mode == "reordered":  # a build whose prompts come in another order: each answer lands elsewhere
    optics[2:] = optics[:1:-1]
for prompt in optics:
    ask(prompt, "float")
ask("Size of amplitude spectrum to compute", "int")
for prompt in ("Minimum resolution", "Maximum resolution", "Minimum defocus", "Maximum defocus",
               "Defocus search step"):
    ask(prompt, "float")
if ask("Do you know what astigmatism is present?", "yesno"):
    ask("Slower, more exhaustive search?", "yesno")
    ask("Known astigmatism", "float")
    ask("Known astigmatism angle", "float")
else:
    ask("Slower, more exhaustive search?", "yesno")
    if ask("Use a restraint on astigmatism?", "yesno"):
        ask("Expected (tolerated) astigmatism", "float")
if ask("Find additional phase shift?", "yesno"):
    for prompt in ("Minimum phase shift (rad)", "Maximum phase shift (rad)", "Phase shift search step"):
        ask(prompt, "float")
if mode == "tilt":  # cisTEM's later builds of 4.1.14
    ask("Determine sample tilt?", "yesno")
if ask("Do you want to set expert options?", "yesno"):
    sys.exit("Error: this fake has no expert options")
Path(os.environ["FAKE_CTFFIND_RECORD"]).write_text(json.dumps(got))
if mode == "silent":  # CTFFIND reports some errors and exits 0
    print("Error: box size too large")
    sys.exit(0)
root = Path(diag).with_suffix("")
Path(diag).write_bytes(b"\0" * 1024)
d1, d2, azimuth, cc, reach = json.loads(os.environ["FAKE_CTFFIND_RESULT"])
Path(f"{{root}}.txt").write_text(
    "# Output from CTFFind version 4.1.14, run on 2026-11-30 21:14:07\n"
    f"# Input file: {{mic}} ; Number of micrographs: 1\n"
    f"# Pixel size: {{got['Pixel size']:.3f}} Angstroms ; acceleration voltage: {{got['Acceleration voltage']:.1f}} keV"
    f" ; spherical aberration: {{got['Spherical aberration']:.2f}} mm ; amplitude contrast: "
    f"{{got['Amplitude contrast']:.2f}}\n"
    f"# Box size: {{got['Size of amplitude spectrum to compute']}} pixels ; min. res.: "
    f"{{got['Minimum resolution']:.1f}} Angstroms ; max. res.: {{got['Maximum resolution']:.1f}} Angstroms ; "
    f"min. def.: {{got['Minimum defocus']:.1f}} um; max. def. {{got['Maximum defocus']:.1f}} um\n"
    "# Columns: #1 - micrograph number; #2 - defocus 1 [Angstroms]; #3 - defocus 2; #4 - azimuth of astigmatism; "
    "#5 - additional phase shift [radians]; #6 - cross correlation; #7 - spacing (in Angstroms) up to which CTF "
    "rings were fit successfully\n"
    f"1.000000 {{d1:.6f}} {{d2:.6f}} {{azimuth:.6f}} 0.000000 {{cc:.6f}} {{reach}}\n")
print(f"Summary of results                          : {{root}}.txt")
'''


@pytest.fixture
def fake_ctffind(tmp_path, monkeypatch):
    path = tmp_path / "bin" / "ctffind-fake"
    path.parent.mkdir()
    path.write_text(FAKE.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv(ctffind.ENV_BINARY, str(path))
    monkeypatch.setenv("FAKE_CTFFIND_RECORD", str(tmp_path / "answers.json"))
    monkeypatch.setenv("FAKE_CTFFIND_RESULT", json.dumps([15230.5, 14810.25, -12.5, 0.1375, 6.125]))
    monkeypatch.delenv("FAKE_CTFFIND_MODE", raising=False)
    return tmp_path / "answers.json"


@pytest.fixture
def no_ctffind(monkeypatch):
    """No CTFFIND anywhere: the variable unset and PATH without a `ctffind`."""
    monkeypatch.delenv(ctffind.ENV_BINARY, raising=False)
    keep = [d for d in os.environ.get("PATH", "").split(os.pathsep) if not (Path(d) / "ctffind").exists()]
    monkeypatch.setenv("PATH", os.pathsep.join(keep))


def _motioncorr(scratch: Path, names: list[str], size: int = 256) -> CryoemRequest:
    """A finished motioncorr stage holding CTF-filtered noise as its dose-weighted sums."""
    rng = np.random.default_rng(3)

    def body(ctx):
        qc = {}
        for name in names:
            c = ctf_image((size, size), OPTICS.pixel_size, defocus_u=15200.0, defocus_v=14800.0, angle_deg=167.5,
                          voltage_kv=300.0, cs_mm=2.7, amplitude_contrast=0.1)
            image = np.fft.irfft2(np.fft.rfft2(rng.normal(size=(size, size))) * c, s=(size, size))
            rel = f"MotionCorr/Movies/{name}.mrc"
            (ctx.work_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            write_mrc(ctx.work_dir / rel, image + rng.normal(0, 0.3, image.shape), OPTICS.pixel_size)
            qc[name] = {"micrograph": rel, "shifts_px": [[0.0, 0.0]], "total_drift_px": 0.0}
        write_json(ctx.work_dir / "motion_qc.json", qc)

    stage("motioncorr", RUN, BATCH, scratch, body)
    return CryoemRequest(movies=[scratch / f"{n}.mrcs" for n in names], optics=OPTICS, particle_diameter=150.0,
                         box_size=96)


def test_ctffind_runs_with_its_prompts_answered_in_order(tmp_path, fake_ctffind):
    request = _motioncorr(tmp_path / "scratch", ["mic_000", "mic_001"])
    knobs = Knobs.with_overrides({"ctffind_astigmatism": 200.0, "ctf_defocus_min": 5000.0})
    out = estimate_ctf(tmp_path / "scratch", RUN, BATCH, request, knobs)

    answers = json.loads(fake_ctffind.read_text())  # the last micrograph's
    assert answers == {
        "Input image file name": "MotionCorr/Movies/mic_001.mrc",
        "Output diagnostic image file name": "CtfFind/mic_001.ctf",
        "Pixel size": 2.0, "Acceleration voltage": 300.0, "Spherical aberration": 2.7, "Amplitude contrast": 0.1,
        "Size of amplitude spectrum to compute": 256,  # the knob's 512, kept within the 256 px micrograph
        "Minimum resolution": 30.0, "Maximum resolution": 5.0,
        "Minimum defocus": 5000.0, "Maximum defocus": 50000.0, "Defocus search step": 100.0,
        "Do you know what astigmatism is present?": False, "Slower, more exhaustive search?": True,
        "Use a restraint on astigmatism?": True, "Expected (tolerated) astigmatism": 200.0,
        "Find additional phase shift?": False, "Do you want to set expert options?": False,
    }
    rows = star_rows(out / "micrographs_ctf.star", "micrographs")
    assert [r["rlnMicrographName"] for r in rows] == ["MotionCorr/Movies/mic_000.mrc", "MotionCorr/Movies/mic_001.mrc"]
    row = rows[1]
    assert float(row["rlnDefocusU"]) == pytest.approx(15230.5)
    assert float(row["rlnDefocusV"]) == pytest.approx(14810.25)
    assert float(row["rlnDefocusAngle"]) == pytest.approx(167.5)
    assert float(row["rlnCtfAstigmatism"]) == pytest.approx(420.25)
    assert float(row["rlnCtfFigureOfMerit"]) == pytest.approx(0.1375)
    assert float(row["rlnCtfMaxResolution"]) == pytest.approx(6.125)
    qc = read_json(out / "ctf_qc.json")
    assert qc["mic_001"] == {"defocus": 15020.4, "defocus_u": 15230.5, "defocus_v": 14810.2, "defocus_angle": 167.5,
                             "ctf_fom": 0.1375, "ctf_resolution": 6.12, "ctf_estimator": "ctffind"}
    done = read_json(out / "ctf.done.json")
    assert done["tool_versions"]["ctf_estimator"].startswith("ctffind 4.1.14 (")
    assert (out / "CtfFind" / "mic_000.txt").is_file() and (out / "CtfFind" / "mic_000.ctf").is_file()


def test_a_build_that_asks_about_tilt_reads_the_spare_answer(tmp_path, fake_ctffind, monkeypatch):
    monkeypatch.setenv("FAKE_CTFFIND_MODE", "tilt")
    request = _motioncorr(tmp_path / "scratch", ["mic_000"])
    out = estimate_ctf(tmp_path / "scratch", RUN, BATCH, request, Knobs())
    answers = json.loads(fake_ctffind.read_text())
    assert answers["Determine sample tilt?"] is False and answers["Do you want to set expert options?"] is False
    assert answers["Use a restraint on astigmatism?"] is False  # ctffind_astigmatism 0: no restraint
    assert read_json(out / "ctf_qc.json")["mic_000"]["ctf_estimator"] == "ctffind"


@pytest.mark.parametrize("mode, message", [
    ("fail", r"\[ctffind_failed\] ctffind on MotionCorr/Movies/mic_000.mrc exited 1: Error: Oops"),
    ("silent", r"\[ctffind_failed\] ctffind on MotionCorr/Movies/mic_000.mrc wrote no CtfFind/mic_000.txt: "
               "Error: box size too large"),
    ("reordered", r"\[ctffind_failed\] ctffind on MotionCorr/Movies/mic_000.mrc used other parameters than sent "
                  r"\(its prompts changed\?\): cs_mm 0.1 \(sent 2.7\), amplitude_contrast 2.7 \(sent 0.1\)"),
])
def test_a_failing_ctffind_is_a_coded_error_naming_the_micrograph(tmp_path, fake_ctffind, monkeypatch, mode,
                                                                  message):
    monkeypatch.setenv("FAKE_CTFFIND_MODE", mode)
    request = _motioncorr(tmp_path / "scratch", ["mic_000"])
    with pytest.raises(ctffind.CtffindError, match=message) as info:
        estimate_ctf(tmp_path / "scratch", RUN, BATCH, request, Knobs())
    assert info.value.exit_code == 1  # a retry may help
    assert not (tmp_path / "scratch" / RUN / "ctf" / BATCH).exists()  # nothing promoted


def test_without_ctffind_the_own_estimator_runs(tmp_path, no_ctffind):
    request = _motioncorr(tmp_path / "scratch", ["mic_000"], size=512)
    out = estimate_ctf(tmp_path / "scratch", RUN, BATCH, request, Knobs())
    qc = read_json(out / "ctf_qc.json")["mic_000"]
    assert qc["ctf_estimator"] == "foldstack"
    assert qc["defocus"] == pytest.approx(15000.0, rel=0.03)
    assert read_json(out / "ctf.done.json")["tool_versions"]["ctf_estimator"].startswith("foldstack.cryoem.ctf")
    assert not (out / "CtfFind").exists()


def test_the_knob_forces_either_estimator(tmp_path, fake_ctffind, monkeypatch):
    assert ctffind.choose(ctffind.AUTO)[0] == "ctffind"
    assert ctffind.choose(ctffind.OWN) == ("foldstack", None)
    assert ctffind.choose(ctffind.CTFFIND) == ("ctffind", os.environ[ctffind.ENV_BINARY])
    monkeypatch.setenv(ctffind.ENV_BINARY, str(tmp_path / "no-such-ctffind"))
    with pytest.raises(BadInputError, match="FOLDSTACK_CTFFIND=.*not an executable"):
        ctffind.choose(ctffind.AUTO)


def test_forcing_ctffind_without_it_is_bad_input(no_ctffind):
    assert ctffind.choose(ctffind.AUTO) == ("foldstack", None)
    with pytest.raises(BadInputError, match="ctf_estimator=2 asks for CTFFIND"):
        ctffind.choose(ctffind.CTFFIND)


def test_curation_judges_each_fit_on_its_estimators_scale():
    knobs = Knobs.with_overrides({"min_ctf_fom": 0.5, "min_ctffind_cc": 0.03})
    assert ctffind.fom_floor("ctffind", knobs) == 0.03  # CTFFIND's CC: ~0.02-0.3 on real data
    assert ctffind.fom_floor("foldstack", knobs) == 0.5
    assert ctffind.fom_floor(None, knobs) == 0.5  # QC written before the estimator was recorded


def test_a_later_micrograph_that_writes_nothing_is_not_read_from_an_earlier_ones_log(tmp_path, fake_ctffind,
                                                                                      monkeypatch):
    monkeypatch.setenv("FAKE_CTFFIND_MODE", "silent")
    monkeypatch.setenv("FAKE_CTFFIND_ONLY", "mic_001")
    request = _motioncorr(tmp_path / "scratch", ["mic_000", "mic_001"])
    with pytest.raises(ctffind.CtffindError, match="ctffind on MotionCorr/Movies/mic_001.mrc wrote no "
                                                   "CtfFind/mic_001.txt: Error: box size too large"):
        estimate_ctf(tmp_path / "scratch", RUN, BATCH, request, Knobs())
