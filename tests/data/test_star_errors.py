"""A malformed particle STAR file fails with one InputError naming the file, the line and the problem
(not pandas' IntCastingNaNError far from the cause); well-formed oddities (quotes, comments, 'nan'
values) still read."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from relion_cryopares.data import ParticleStar, read_particle_star, write_particle_star
from relion_cryopares.errors import InputError

GOOD = """
# version 30001

data_optics

loop_
_rlnOpticsGroup #1
_rlnOpticsGroupName #2
_rlnImagePixelSize #3
_rlnImageSize #4
_rlnVoltage #5
_rlnSphericalAberration #6
_rlnAmplitudeContrast #7
1 opticsGroup1 1.5 64 300 2.7 0.1


# version 30001

data_particles

loop_
_rlnImageName #1
_rlnMicrographName #2
_rlnDefocusU #3
_rlnDefocusV #4
_rlnAngleRot #5
_rlnOpticsGroup #6
_rlnRandomSubset #7
000001@s.mrcs m.mrc 10000 10000 1.0 1 1
000002@s.mrcs m.mrc 10000 10000 1.0 1 2
000003@s.mrcs m.mrc 10000 10000 1.0 1 1
000004@s.mrcs m.mrc 10000 10000 1.0 1 2
"""
ROW3 = "000003@s.mrcs m.mrc 10000 10000 1.0 1 1"
LINE3 = GOOD.splitlines().index(ROW3) + 1  # 1-based line in the file
LINE4 = LINE3 + 1


def _read(tmp_path, text: str, name: str = "particles.star") -> ParticleStar:
    path = tmp_path / name
    path.write_text(text)
    return read_particle_star(path)


def _error(tmp_path, text: str) -> str:
    with pytest.raises(InputError) as info:
        _read(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message and "particles.star" in message
    return message


@pytest.mark.parametrize("row, line, words", [
    ("000003@s.mrcs m.mrc 10000 1.0 1 1", LINE3, ["6 values for 7 columns", "data_particles"]),  # missing
    ("000003@s.mrcs m.mrc 10000 10000 1.0 1 1 7", LINE3, ["8 values for 7 columns"]),  # extra
    ("000003@s.mrcs m.mrc abc 10000 1.0 1 1", LINE3, ["rlnDefocusU 'abc' is not a number"]),
    ("000003@s.mrcs m.mrc 10000 10000 1.0 nan 1", LINE3, ["rlnOpticsGroup has no value"]),
])
def test_bad_row_names_its_line(tmp_path, row, line, words):
    message = _error(tmp_path, GOOD.replace(ROW3, row))
    assert f"line {line}:" in message and all(w in message for w in words), message


def test_truncated_last_line(tmp_path):
    text = GOOD.rstrip("\n")[:-6]  # the file ends inside the last row
    message = _error(tmp_path, text)
    assert f"line {LINE4}: 5 values for 7 columns" in message, message


def test_bad_first_row_and_optics_row(tmp_path):
    first = "000001@s.mrcs m.mrc 10000 10000 1.0 1 1"
    line1 = GOOD.splitlines().index(first) + 1
    assert f"line {line1}: 8 values" in _error(tmp_path, GOOD.replace(first, first + " 9"))
    optics = "1 opticsGroup1 1.5 64 300 2.7 0.1"
    line_o = GOOD.splitlines().index(optics) + 1
    message = _error(tmp_path, GOOD.replace(optics, "1 opticsGroup1 1.5 64 300 2.7"))
    assert f"line {line_o}: 6 values for 7 columns of data_optics" in message
    message = _error(tmp_path, GOOD.replace(optics, "1 opticsGroup1 1.5 64 kV 2.7 0.1"))
    assert f"line {line_o}: rlnVoltage 'kV' is not a number" in message


def test_line_numbers_count_comments_and_blank_lines(tmp_path):
    text = GOOD.replace(ROW3, "# a comment\n\n" + ROW3).replace(
        "000004@s.mrcs m.mrc 10000 10000 1.0 1 2", "000004@s.mrcs m.mrc 10000 10000 1.0 1")
    assert f"line {LINE4 + 2}: 6 values" in _error(tmp_path, text)


def test_wellformed_oddities_still_read(tmp_path):
    text = GOOD.replace("000002@s.mrcs m.mrc", '000002@s.mrcs "m 2.mrc"')
    text = text.replace(ROW3, "# a comment\n\n" + ROW3.replace("1.0 1 1", "nan 1 1"))
    star = _read(tmp_path, text)
    assert len(star) == 4 and star.particles["rlnMicrographName"].iloc[1] == "m 2.mrc"
    assert np.isnan(star.particles["rlnAngleRot"].iloc[2])
    assert star.optics_group_numbers().tolist() == [1, 1, 1, 1]


def test_large_file_error_is_located_and_reading_stays_fast(tmp_path):
    n = 20000
    rng = np.random.default_rng(0)
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"],
                           "rlnImagePixelSize": [1.5], "rlnImageSize": [64], "rlnVoltage": [300.0],
                           "rlnSphericalAberration": [2.7], "rlnAmplitudeContrast": [0.1]})
    cols = {"rlnImageName": [f"{i % 500 + 1:06d}@s{i // 500}.mrcs" for i in range(n)]}
    for label in ("rlnDefocusU", "rlnDefocusV", "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"):
        cols[label] = rng.normal(size=n) * 100
    cols["rlnOpticsGroup"] = np.ones(n, dtype=int)
    path = tmp_path / "big.star"
    write_particle_star(path, ParticleStar(optics, pd.DataFrame(cols)))
    t0 = time.perf_counter()
    assert len(read_particle_star(path)) == n
    happy = time.perf_counter() - t0
    lines = path.read_text().splitlines()
    target = len(lines) - 100
    words = lines[target - 1].split()
    lines[target - 1] = " ".join(words[:2] + ["12x"] + words[3:])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=f"big.star: line {target}: rlnDefocusV '12x' is not a number"):
        read_particle_star(path)
    assert happy < 5.0


def test_fixed_file_reads_after_a_failure(tmp_path):
    """starfile reads through linecache, which a failed parse used to leave stale for the path."""
    _error(tmp_path, GOOD.replace(ROW3, ROW3 + " 7"))
    assert len(_read(tmp_path, GOOD)) == 4
