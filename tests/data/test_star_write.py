"""Writing RELION 3.1 particle STAR files: round trips, integer columns, atomicity, RELION reads them."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from relion_cryopares.data import read_particle_star, read_volume, write_particle_star
from relion_cryopares.errors import InputError

FILES = [
    "cryodrgn_relion31/relion31.star",
    "cryodrgn_relion31/relion31.6opticsgroups.star",
    "cryodrgn_relion31/FinalRefinement-OriginalParticles-PfCRT.star",
    "cryodrgn_relion31/relion5.star",
    "cryodrgn_empiar10076/empiar_10076_7.star",
    "cryodrgn_sta_ribosome/sta_testing_bin8.star",
    "star_formats/aspire/sample_particles_relion30.star",
    "star_formats/aspire/sample_particles_relion31.star",
]


def _assert_same(a, b):
    for x, y in ((a.optics, b.optics), (a.particles, b.particles)):
        assert list(x.columns) == list(y.columns)
        for col in x.columns:
            if pd.api.types.is_numeric_dtype(x[col].dtype) and not x[col].isna().all():
                np.testing.assert_allclose(x[col].to_numpy(float), y[col].to_numpy(float),
                                           rtol=1e-6, atol=1e-6, err_msg=col)
            else:
                assert x[col].astype(str).tolist() == y[col].astype(str).tolist(), col


@pytest.mark.parametrize("name", FILES)
def test_round_trip(shared_data, tmp_path, name, monkeypatch):
    monkeypatch.chdir((shared_data / name).parent)  # so stack headers resolve where present
    star = read_particle_star(shared_data / name)
    write_particle_star(tmp_path / "out.star", star)
    again = read_particle_star(tmp_path / "out.star")
    _assert_same(star, again)
    write_particle_star(tmp_path / "out2.star", again)
    assert (tmp_path / "out.star").read_text() == (tmp_path / "out2.star").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.star", "out2.star"]  # no temp files


def _loop(text: str, block: str) -> pd.DataFrame:
    """Parse one loop of our output by hand (independent of starfile) as text tokens."""
    lines = text.split(f"data_{block}\n", 1)[1].splitlines()
    labels, rows = [], []
    for line in lines:
        if line.startswith("_"):
            labels.append(line.split()[0][1:])
        elif line.strip() and not line.startswith(("loop_", "#", "data_")):
            rows.append(line.split())
        elif labels and rows and (line.startswith("data_") or line.startswith("#")):
            break
    return pd.DataFrame(rows, columns=labels)


def test_written_format(shared_data, tmp_path):
    star = read_particle_star(shared_data / "cryodrgn_relion31" / "FinalRefinement-OriginalParticles-PfCRT.star")
    star = star.with_columns(rlnClassNumber=star.column("rlnClassNumber").astype(float))
    write_particle_star(tmp_path / "p.star", star)
    text = (tmp_path / "p.star").read_text()
    assert text.splitlines()[0] == "# version 30001"
    assert text.index("data_optics") < text.index("data_particles")
    particles = _loop(text, "particles")
    assert "rlnOriginXAngst" in particles.columns and "rlnOriginX" not in particles.columns
    for col in ("rlnOpticsGroup", "rlnRandomSubset", "rlnClassNumber"):
        assert particles[col].str.fullmatch(r"\d+").all(), col
    optics = _loop(text, "optics")
    assert optics["rlnOpticsGroup"].tolist() == ["1"]
    assert float(optics["rlnImagePixelSize"].iloc[0]) == pytest.approx(1.035)


def test_small_values_keep_precision(shared_data, tmp_path):
    star = read_particle_star(shared_data / "cryodrgn_relion31" / "relion31.star")
    tiny = np.array([1.2345678e-7, 0.5, 0, 3e-4, 2.0])
    write_particle_star(tmp_path / "p.star", star.with_columns(rlnMaxValueProbDistribution=tiny))
    back = read_particle_star(tmp_path / "p.star").column("rlnMaxValueProbDistribution")
    np.testing.assert_allclose(back.astype(float), tiny, rtol=1e-8)


def test_write_is_atomic(shared_data, tmp_path, monkeypatch):
    star = read_particle_star(shared_data / "cryodrgn_relion31" / "relion31.star")
    write_particle_star(tmp_path / "p.star", star)
    before = (tmp_path / "p.star").read_text()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        write_particle_star(tmp_path / "p.star", star.select([0]))
    assert (tmp_path / "p.star").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["p.star"]


@pytest.mark.parametrize("text, problem", [
    (None, "file not found"),
    ("data_particles\nloop_\n_rlnImageName #1\n_rlnDefocusU #2\n1@a.mrcs 10000\n", "no pixel size"),
    ("data_optics\nloop_\n_rlnOpticsGroup\n_rlnImagePixelSize\n1 1.0\n\n"
     "data_particles\nloop_\n_rlnImageName\n_rlnOpticsGroup\n1@a.mrcs 1\n2@a.mrcs 7\n",
     "particle row 2 refers to optics group 7, which is not in data_optics"),
    ("data_optics\nloop_\n_rlnOpticsGroup\n_rlnImagePixelSize\n1 1.0\n\n"
     "data_particles\nloop_\n_rlnDefocusU\n_rlnOpticsGroup\n1 1\n", "missing column rlnImageName"),
    ("data_optics\nloop_\n_rlnOpticsGroup\n_rlnVoltage\n1 300\n\n"
     "data_particles\nloop_\n_rlnImageName\n_rlnOpticsGroup\n1@a.mrcs 1\n",
     "missing column rlnImagePixelSize in data_optics"),
    ("data_optics\nloop_\n_rlnOpticsGroup\n_rlnImagePixelSize\n1 1.0\n", "no data_particles block"),
    ("data_optics\nloop_\n_rlnOpticsGroup\n_rlnImagePixelSize\n1 0\n\n"
     "data_particles\nloop_\n_rlnImageName\n_rlnOpticsGroup\n1@a.mrcs 1\n",
     "rlnImagePixelSize in data_optics must be a positive number"),
    ("data_micrographs\nloop_\n_rlnMicrographName\nx.mrc\n", "no particle table"),
])
def test_bad_star_files(tmp_path, text, problem):
    path = tmp_path / "particles.star"
    if text is not None:
        path.write_text(text)
    with pytest.raises(InputError) as info:
        read_particle_star(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message


@pytest.mark.relion
def test_relion_reads_our_output(shared_data, tmp_path, needs_relion):
    star = read_particle_star(shared_data / "cryodrgn_relion31" / "relion31.6opticsgroups.star")
    write_particle_star(tmp_path / "ours.star", star)
    run = subprocess.run(["relion_star_handler", "--i", "ours.star", "--o", "check.star"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    _assert_same(star, read_particle_star(tmp_path / "check.star"))


@pytest.mark.relion
def test_relion_project_output_is_normalised(shared_data, tmp_path, needs_relion, monkeypatch):
    """Debian's relion_project writes pixel origins in a 3.1 file: we convert them to Å."""
    (tmp_path / "map.mrc").symlink_to(shared_data / "maps_emdb" / "emd_1832.map")  # RELION wants .mrc
    monkeypatch.chdir(tmp_path)
    run = subprocess.run(["relion_project", "--i", "map.mrc",
                          "--o", "proj", "--nr_uniform", "3", "--angpix", "5.7"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    star = read_particle_star(tmp_path / "proj.star")
    assert "rlnOriginX" not in star.particles.columns and star.origins_angstrom().shape == (3, 2)
    np.testing.assert_allclose(star.pixel_size_angstrom(), 5.7)
    assert star.has_poses() and star.optics_groups()[1].image_size_px == 64


@pytest.mark.relion
def test_relion_reconstructs_the_same_map_from_our_conversion(shared_data, tmp_path, needs_relion,
                                                             monkeypatch):
    """RELION's reconstruction from the 3.0 original and from our 3.1 rewrite agree (CTF, origins, pixel)."""
    if shutil.which("relion_reconstruct") is None:
        pytest.skip("relion_reconstruct not on PATH")
    src = shared_data / "cryodrgn_sta_ribosome"
    stack = "ay19102021_L3_position6_ribo_it09_bin8_1.82A.mrcs"
    (tmp_path / stack).symlink_to(src / stack)
    shutil.copy(src / "sta_testing_bin8.star", tmp_path / "orig.star")
    monkeypatch.chdir(tmp_path)  # the project directory: stack paths are relative to it
    star = read_particle_star(tmp_path / "orig.star")
    write_particle_star(tmp_path / "ours.star", star)
    for name in ("orig", "ours"):
        run = subprocess.run(["relion_reconstruct", "--i", f"{name}.star", "--o", f"{name}.mrc", "--ctf"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
    a, pa = read_volume(tmp_path / "orig.mrc")
    b, pb = read_volume(tmp_path / "ours.mrc")
    assert pa == pytest.approx(1.96) and pb == pytest.approx(1.96)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9999


def test_number_format_matches_printf():
    from relion_cryopares.data._starfmt import _column_matrix

    rng = np.random.default_rng(0)
    x = rng.normal(size=20000) * 10.0 ** rng.integers(-3, 12, size=20000)
    x = np.concatenate([x[np.abs(x) >= 1e-3], [0.0, 1e-3, -0.5, 999999.9999995, 0.9999996, -0.9999996]])
    m = _column_matrix("fixed", x)
    got = [m[i].tobytes().decode().strip() for i in range(len(x))]
    assert got == ["%.6f" % v for v in x]
    ints = np.array([0, -1, 7, 123456789, -987654321012])
    m = _column_matrix("int", ints)
    assert [m[i].tobytes().decode().strip() for i in range(len(ints))] == [str(v) for v in ints]


def test_text_with_spaces_is_quoted(shared_data, tmp_path):
    star = read_particle_star(shared_data / "cryodrgn_relion31" / "relion31.star")
    star = star.with_columns(rlnMicrographName=["a b.mrc", "", "c.mrc", "d.mrc", "é.mrc"])
    write_particle_star(tmp_path / "p.star", star)
    back = read_particle_star(tmp_path / "p.star").column("rlnMicrographName").tolist()
    assert back[2:] == ["c.mrc", "d.mrc", "é.mrc"]
    assert back[0] == "a b.mrc"


@pytest.mark.relion
@pytest.mark.parametrize("name", ["cryodrgn_relion31/FinalRefinement-OriginalParticles-PfCRT.star",
                                  "cryodrgn_sta_ribosome/sta_testing_bin8.star",
                                  "star_formats/aspire/sample_particles_relion30.star"])
def test_our_30_conversion_matches_relions(shared_data, tmp_path, name, needs_relion, monkeypatch):
    """RELION converts 3.0 files itself (relion_star_handler); our normalised reading must agree."""
    monkeypatch.chdir((shared_data / name).parent)
    run = subprocess.run(["relion_star_handler", "--i", str(shared_data / name),
                          "--o", str(tmp_path / "relion.star")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    ours, theirs = read_particle_star(shared_data / name), read_particle_star(tmp_path / "relion.star")
    assert set(ours.particles.columns) == set(theirs.particles.columns)
    np.testing.assert_array_equal(ours.optics_group_numbers(), theirs.optics_group_numbers())
    np.testing.assert_allclose(ours.pixel_size_angstrom(), theirs.pixel_size_angstrom(), atol=1e-6)
    np.testing.assert_allclose(ours.origins_angstrom(), theirs.origins_angstrom(), atol=1e-5)
    a, b = ours.ctf_parameters(), theirs.ctf_parameters()
    for field in ("voltage_kv", "spherical_aberration_mm", "amplitude_contrast", "defocus_u_angstrom",
                  "bfactor_angstrom2", "scale"):
        np.testing.assert_allclose(getattr(a, field).numpy(), getattr(b, field).numpy(), atol=1e-6)
