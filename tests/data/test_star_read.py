"""Reading real RELION particle STAR files (3.0, 3.1, 5) into the normalised ParticleStar."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import starfile
import torch

from relion_cryopares.data import ImageStackReader, OpticsGroup, read_particle_star
from relion_cryopares.errors import InputError


def test_relion31_with_poses_and_ctf(shared_data):
    path = shared_data / "cryodrgn_relion31" / "relion31.star"
    star = read_particle_star(path)
    raw = starfile.read(path, always_dict=True)["particles"]
    assert len(star) == 5
    # The mrcs header says 1.0 Å; the STAR file's optics table wins.
    np.testing.assert_allclose(star.pixel_size_angstrom(), 2.806)
    np.testing.assert_array_equal(star.image_size_px(), 256)
    assert star.has_poses()
    angles = star.angles_deg()
    assert angles.shape == (5, 3) and angles.dtype == np.float64
    np.testing.assert_allclose(angles[:, 0], raw["rlnAngleRot"])
    np.testing.assert_allclose(angles[:, 2], raw["rlnAnglePsi"])
    np.testing.assert_allclose(star.origins_angstrom(), raw[["rlnOriginXAngst", "rlnOriginYAngst"]])
    ctf = star.ctf_parameters()
    assert len(ctf) == 5 and ctf.defocus_u_angstrom.dtype == torch.float64
    np.testing.assert_allclose(ctf.defocus_u_angstrom.numpy(), raw["rlnDefocusU"])
    np.testing.assert_allclose(ctf.defocus_angle_deg.numpy(), raw["rlnDefocusAngle"])
    np.testing.assert_allclose(ctf.voltage_kv.numpy(), 300.0)
    np.testing.assert_allclose(ctf.spherical_aberration_mm.numpy(), 0.01)
    np.testing.assert_allclose(ctf.amplitude_contrast.numpy(), 0.1)
    np.testing.assert_allclose(ctf.pixel_size_angstrom.numpy(), 2.806)
    np.testing.assert_array_equal(star.random_subset(), raw["rlnRandomSubset"])
    sub = star.ctf_parameters(rows=[4, 1])
    np.testing.assert_allclose(sub.defocus_v_angstrom.numpy(), raw["rlnDefocusV"].to_numpy()[[4, 1]])
    (group,) = star.optics_groups().values()
    assert group == OpticsGroup(1, "opticsGroup1", 2.806, 256, 300.0, 0.01, 0.1, False)
    assert star.image_names()[0] == "000001@relion31.mrcs"


def test_relion31_images(shared_data, monkeypatch):
    import mrcfile

    monkeypatch.chdir(shared_data / "cryodrgn_relion31")
    star = read_particle_star("relion31.star")
    with ImageStackReader() as reader:
        images = star.read_images(reader, rows=[4, 0, 2])
    with warnings.catch_warnings():  # this real file has no "MAP " id and no machine stamp
        warnings.simplefilter("ignore", RuntimeWarning)
        with mrcfile.open("relion31.mrcs", permissive=True) as mrc:
            np.testing.assert_array_equal(images, mrc.data[[4, 0, 2]])


def test_relion31_block_order_does_not_matter(shared_data):
    a = read_particle_star(shared_data / "cryodrgn_relion31" / "relion31.star")
    b = read_particle_star(shared_data / "cryodrgn_relion31" / "relion31.v2.star")
    assert a.optics.equals(b.optics)
    assert a.particles.equals(b.particles)


def test_six_optics_groups(shared_data):
    star = read_particle_star(shared_data / "cryodrgn_relion31" / "relion31.6opticsgroups.star")
    raw = starfile.read(shared_data / "cryodrgn_relion31" / "relion31.6opticsgroups.star")
    groups = star.optics_groups()
    assert sorted(groups) == [1, 2, 3, 4, 5, 6] and len(star) == 139
    assert groups[2].pixel_size_angstrom == pytest.approx(1.24)
    assert groups[4].spherical_aberration_mm == pytest.approx(2.6)
    assert groups[4].name == "opticsGroup1" and groups[1].voltage_kv == 200.0
    per_group = raw["optics"].set_index("rlnOpticsGroup")["rlnImagePixelSize"]
    expected = per_group.loc[raw["particles"]["rlnOpticsGroup"]].to_numpy()
    np.testing.assert_allclose(star.pixel_size_angstrom(), expected)
    assert set(np.unique(star.pixel_size_angstrom())) == {1.24, 1.25}
    np.testing.assert_array_equal(star.optics_group_numbers(), raw["particles"]["rlnOpticsGroup"])
    cs = star.ctf_parameters().spherical_aberration_mm.numpy()
    np.testing.assert_allclose(cs[star.optics_group_numbers() == 4], 2.6)
    assert "rlnOddZernike" in star.optics.columns  # every optics column kept


def test_relion30_images_origins_pixels_to_angstrom(shared_data):
    path = shared_data / "cryodrgn_relion31" / "FinalRefinement-OriginalParticles-PfCRT.star"
    raw = starfile.read(path)
    star = read_particle_star(path)
    pixel = raw["rlnDetectorPixelSize"].to_numpy() * 1e4 / raw["rlnMagnification"].to_numpy()
    np.testing.assert_allclose(star.pixel_size_angstrom(), pixel)
    np.testing.assert_allclose(star.origins_angstrom()[:, 0], raw["rlnOriginX"] * pixel)
    np.testing.assert_allclose(star.origins_angstrom()[:, 1], raw["rlnOriginY"] * pixel)
    assert "rlnOriginX" not in star.particles.columns
    assert len(star.optics) == 1 and star.random_subset() is not None
    # The stack is not shipped: the image size is only needed (and reported) when asked for.
    with pytest.raises(InputError, match=r"PfCRT.mrcs: stack not found \(referenced by "
                                         r"FinalRefinement-OriginalParticles-PfCRT.star row 1"):
        star.image_size_px()


def test_relion30_ctf_only_stack_named_mrc(shared_data, monkeypatch):
    monkeypatch.chdir(shared_data / "cryodrgn_empiar10076")
    star = read_particle_star("empiar_10076_7.star")
    assert len(star) == 7 and not star.has_poses()
    np.testing.assert_allclose(star.pixel_size_angstrom(), 1.31, atol=1e-5)
    np.testing.assert_array_equal(star.image_size_px(), 320)  # from the .mrc header
    np.testing.assert_allclose(star.origins_angstrom(), 0.0)
    assert star.random_subset() is None
    ctf = star.ctf_parameters()
    np.testing.assert_allclose(ctf.amplitude_contrast.numpy(), 0.07)
    np.testing.assert_allclose(ctf.spherical_aberration_mm.numpy(), 2.7)
    np.testing.assert_allclose(ctf.phase_shift_deg.numpy(), 0.0)
    np.testing.assert_allclose(ctf.scale.numpy(), 1.0)
    assert star.column("rlnMicrographName").tolist()[:2] == ["1", "2"]  # text stays text
    with pytest.raises(InputError, match="missing column rlnAngleRot"):
        star.angles_deg()
    with ImageStackReader() as reader:
        images = star.read_images(reader)
    assert images.shape == (7, 320, 320) and images.dtype == np.float32


def test_sta_ribosome_reads_all_images(shared_data, monkeypatch):
    monkeypatch.chdir(shared_data / "cryodrgn_sta_ribosome")
    raw = starfile.read("sta_testing_bin8.star")
    star = read_particle_star("sta_testing_bin8.star")
    assert len(star) == 219
    np.testing.assert_allclose(star.pixel_size_angstrom(), 1.96)
    ctf = star.ctf_parameters()
    np.testing.assert_allclose(ctf.bfactor_angstrom2.numpy(), raw["rlnCtfBfactor"])
    np.testing.assert_allclose(ctf.scale.numpy(), raw["rlnCtfScalefactor"])
    with ImageStackReader(max_open_files=2) as reader:
        images = star.read_images(reader)
    assert images.shape == (219, 64, 64) and np.isfinite(images).all()
    direct = reader.read([f"{i}@ay19102021_L3_position6_ribo_it09_bin8_1.82A.mrcs" for i in (1, 219)])
    np.testing.assert_array_equal(direct, images[[0, 218]])


@pytest.mark.parametrize("version", ["30", "31"])
def test_aspire_two_optics_groups(shared_data, version):
    star = read_particle_star(shared_data / "star_formats" / "aspire" /
                              f"sample_particles_relion{version}.star")
    assert len(star) == 17 and len(star.optics) == 2
    voltage = star.ctf_parameters().voltage_kv.numpy()
    np.testing.assert_allclose(voltage[:8], 300.0)
    np.testing.assert_allclose(voltage[8:], 200.0)
    assert star.optics_group_numbers().tolist() == [1] * 8 + [2] * 9
    assert star.has_poses()


def test_relion5_format(shared_data):
    star = read_particle_star(shared_data / "cryodrgn_relion31" / "relion5.star")
    assert len(star) == 17
    (group,) = star.optics_groups().values()
    assert group.image_size_px == 448 and group.voltage_kv == 100.0 and not group.ctf_premultiplied
    assert star.angles_deg().shape == (17, 3)


def test_column_select_with_columns_concat(shared_data):
    star = read_particle_star(shared_data / "cryodrgn_relion31" / "relion31.6opticsgroups.star")
    np.testing.assert_allclose(star.column("rlnImagePixelSize"), star.pixel_size_angstrom())
    np.testing.assert_array_equal(star.column("rlnNotThere", 7), 7)
    with pytest.raises(InputError, match="missing column rlnNotThere"):
        star.column("rlnNotThere")
    mask = star.optics_group_numbers() == 2
    sub = star.select(mask)
    assert len(sub) == mask.sum() and (sub.optics_group_numbers() == 2).all()
    assert star.select([3, 0]).image_names() == [star.image_names()[3], star.image_names()[0]]
    assert len(star.select(torch.tensor([1, 2]))) == 2
    new = star.with_columns(rlnAngleRot=torch.zeros(len(star)), rlnCryoParesScore=1.5)
    assert (new.angles_deg()[:, 0] == 0).all() and (new.column("rlnCryoParesScore") == 1.5).all()
    assert (star.angles_deg()[:, 0] != 0).any()  # the original is untouched
    both = type(star).concat([star.select(mask), star.select(~mask)])
    assert len(both) == len(star) and len(both.optics) == 6


def test_ctf_defaults_and_missing_defocus(shared_data):
    star = read_particle_star(shared_data / "cryodrgn_relion31" / "relion31.star")
    bare = type(star)(star.optics, star.particles.drop(
        columns=["rlnPhaseShift", "rlnCtfBfactor", "rlnCtfScalefactor"]), star.path)
    ctf = bare.ctf_parameters()
    np.testing.assert_array_equal(ctf.phase_shift_deg.numpy(), 0.0)
    np.testing.assert_array_equal(ctf.bfactor_angstrom2.numpy(), 0.0)
    np.testing.assert_array_equal(ctf.scale.numpy(), 1.0)
    nodefocus = type(star)(star.optics, star.particles.drop(columns=["rlnDefocusU"]), star.path)
    with pytest.raises(InputError, match=r"relion31.star: missing column rlnDefocusU \(needed for CTF\)"):
        nodefocus.ctf_parameters()
