"""The STAR reader/writer on RELION-shaped text."""

from __future__ import annotations

import pytest

from foldstack.core.errors import DamagedFileError
from foldstack.cryoem.star import StarBlock, format_star, parse_star, table

RELION_TEXT = """
# version 30001

data_general

_rlnImageSizeX                                      384
_rlnMicrographMovieName                    movies/mic_000.mrcs

data_global_shift

loop_
_rlnMicrographFrameNumber #1
_rlnMicrographShiftX #2
_rlnMicrographShiftY #3
           1     0.000000     0.000000
           2    -0.76428     -0.04927
"""


def test_parse_pairs_and_loop():
    blocks = parse_star(RELION_TEXT)
    assert blocks["general"].pairs == {"rlnImageSizeX": "384", "rlnMicrographMovieName": "movies/mic_000.mrcs"}
    shift = blocks["global_shift"]
    assert shift.columns == ["rlnMicrographFrameNumber", "rlnMicrographShiftX", "rlnMicrographShiftY"]
    assert shift.floats("rlnMicrographShiftX") == [0.0, -0.76428]
    assert shift.records()[1]["rlnMicrographShiftY"] == "-0.04927"


def test_roundtrip_keeps_values_and_quotes_spaces():
    blocks = [StarBlock("general", pairs={"rlnFinalResolution": "8.5"}),
              table("particles", [{"rlnImageName": "000001@Particles/a.mrcs", "rlnGroupName": "group one"},
                                  {"rlnImageName": "000002@Particles/a.mrcs", "rlnGroupName": "g2"}])]
    again = parse_star(format_star(blocks))
    assert again["general"].pairs == {"rlnFinalResolution": "8.5"}
    assert again["particles"].column("rlnGroupName") == ["group one", "g2"]


def test_row_with_wrong_column_count_names_the_line():
    bad = "data_x\nloop_\n_rlnA #1\n_rlnB #2\n1 2\n3\n"
    with pytest.raises(DamagedFileError, match=r"f.star:6: 1 values for 2 columns"):
        parse_star(bad, source="f.star")


def test_missing_column_is_a_key_error():
    with pytest.raises(KeyError, match="rlnNope"):
        parse_star(RELION_TEXT)["global_shift"].column("rlnNope")
