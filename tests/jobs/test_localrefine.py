"""cryopares_localrefine in-process: accuracy, half maps against the true poses, other reference grid,
incremental continue, kill/abort safety, bad inputs.

Simulated data: EMD-1832 (box 64, 5.7 Å), CTF, SNR 0.1; starting poses up to 5° and origins up to
3 px from the truth. Jobs run single-threaded (``--j 1``): OpenMP threads spin on busy CI runners.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import torch

from relion_cryopares.data import (ImageStackReader, parse_image_name, read_particle_star, read_volume,
                                   write_particle_star, write_volume)
from relion_cryopares.fourier import FourierAccumulator, resample_volume, soft_sphere_mask
from relion_cryopares.geometry import (canonical_symmetry_mate, euler_to_matrix, geodesic_distance_deg,
                                       matrix_to_euler, symmetry_matrices)
from relion_cryopares.jobs import localrefine
from relion_cryopares.jobs._halfmaps import ReconstructionGrid, finish_half_maps, insert_particles
from relion_cryopares.refine import rotation_vector_to_matrix
from relion_cryopares.relion import ABORT_NOW
from tests.refine._simulated import simulate
from tests.relion_project import make_project

MAPS = ("run_half1_class001_unfil.mrc", "run_half2_class001_unfil.mrc", "run_class001.mrc")


@contextlib.contextmanager
def _cwd(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _run(project: Path, job: str, star: str = "start.star", ref: str = "map.mrc", *extra: str) -> int:
    with _cwd(project):
        return localrefine.main(["--o", f"External/{job}/", "--in_parts", star, "--in_3dref", ref, "--j", "1",
                                 *extra])


@pytest.fixture(scope="module")
def project(test_map, tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("localrefine"))
    vol, px = test_map
    sim = simulate(test_map, root, n=200, seed=21)
    write_volume(root / "map.mrc", vol.numpy(), px)
    assert _run(root, "job001", "start.star", "map.mrc", "--refine_zscore_thr", "none") == 0
    return root, sim


def _errors(out, truth):
    index = {name: i for i, name in enumerate(truth.image_names())}
    rows = np.array([index[name] for name in out.image_names()])
    px = float(truth.pixel_size_angstrom()[0])
    ang = geodesic_distance_deg(euler_to_matrix(torch.from_numpy(out.angles_deg())),
                                euler_to_matrix(torch.from_numpy(truth.angles_deg()[rows])))
    shift = np.linalg.norm(out.origins_angstrom() - truth.origins_angstrom()[rows], axis=1) / px
    return ang, shift


def test_refines_poses_and_shifts_and_keeps_every_column(project):
    root, sim = project
    job = root / "External" / "job001"
    assert (job / "RELION_JOB_EXIT_SUCCESS").exists()
    out = read_particle_star(job / "run_data.star")
    start = read_particle_star(root / "start.star")
    assert out.image_names() == start.image_names()  # same particles, input order
    assert set(start.particles.columns) <= set(out.particles.columns)
    for column in ("rlnDefocusU", "rlnMicrographName", "rlnCoordinateX", "rlnClassNumber"):
        assert np.array_equal(out.particles[column].to_numpy(), start.particles[column].to_numpy())
    ang, shift = _errors(out, sim.star)
    start_ang, start_shift = _errors(sim.start, sim.star)
    print(f"job: angle {np.median(start_ang):.2f} -> {ang.median():.3f}°, shift {np.median(start_shift):.2f} -> "
          f"{np.median(shift):.3f} px")
    assert ang.median() <= 1.5 and np.median(shift) <= 0.5
    fom = out.particles["rlnParticleFigureOfMerit"].to_numpy()
    assert ((fom >= 0) & (fom <= 1)).all() and np.median(fom) > 0.99  # real particles: significant peaks
    assert set(out.particles["rlnRandomSubset"]) == {1, 2}
    nodes = (job / "RELION_OUTPUT_NODES.star").read_text()
    for name, kind in (("run_data.star", 3), ("run_half1_class001_unfil.mrc", 10), ("run_class001.mrc", 6)):
        assert f"External/job001/{name} {kind} " in nodes
    for name in MAPS + ("run_fsc.star", "fsc.png"):
        assert (job / name).stat().st_size > 0


def _resolution(fsc_star: Path) -> float:
    for line in fsc_star.read_text().splitlines():
        if line.startswith("_rlnFinalResolution"):
            return float(line.split()[1])
    raise AssertionError(f"no _rlnFinalResolution in {fsc_star}")


def test_half_maps_resolution_close_to_true_poses(project):
    root, sim = project
    truth = sim.star
    grid = ReconstructionGrid.of(truth)
    accs = (FourierAccumulator(grid.box), FourierAccumulator(grid.box))
    subsets = truth.random_subset()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the job ran (--j 1): OpenMP threads spin on busy runners
    try:
        with ImageStackReader(root=root) as reader:
            for half, acc in zip((1, 2), accs):
                insert_particles(acc, truth, np.flatnonzero(subsets == half), reader, grid, None)
        true_res = finish_half_maps(*accs, grid).resolution_0143_angstrom
    finally:
        torch.set_num_threads(threads)
    refined_res = _resolution(root / "External" / "job001" / "run_fsc.star")
    print(f"FSC 0.143: true poses {true_res:.2f} Å, refined {refined_res:.2f} Å")
    assert refined_res <= 1.10 * true_res


def test_reference_with_another_box_and_pixel_size(project, test_map):
    """A 2.85 Å, box-100 reference (and mask) for 5.7 Å, box-64 particles: resampled, same accuracy."""
    root, sim = project
    vol, px = test_map
    write_volume(root / "map_fine.mrc", resample_volume(vol, px, px / 2, 100).numpy(), px / 2)
    write_volume(root / "mask_fine.mrc", soft_sphere_mask(100, 46, 6, ndim=3).numpy(), px / 2)
    assert _run(root, "job002", "start.star", "map_fine.mrc", "--in_mask", "mask_fine.mrc") == 0
    b = read_particle_star(root / "External" / "job002" / "run_data.star")
    ang, shift = _errors(b, sim.star)
    assert ang.median() <= 1.5 and np.median(shift) <= 0.5, (ang.median(), np.median(shift))
    assert "resampling a 100^3 map at 2.8500 A/px to 64^3 at 5.7000 A/px" in \
        (root / "External" / "job002" / "cryopares.log").read_text()


def _names_in_records(job: Path) -> list[str]:
    names: list[str] = []
    for path in sorted((job / localrefine.CHUNK_DIR).glob("chunk_*.star")):
        names += read_particle_star(path).image_names()
    return names


def _maps(job: Path) -> list[np.ndarray]:
    return [read_volume(job / name)[0] for name in MAPS]


def _assert_same_maps(job_a: Path, job_b: Path) -> None:
    for a, b in zip(_maps(job_a), _maps(job_b)):
        assert np.allclose(a, b, rtol=0, atol=1e-4 * np.abs(b).max()), np.abs(a - b).max() / np.abs(b).max()


@pytest.fixture(scope="module")
def subsets(project):
    """``p60.star`` (first 48 of 80 particles), ``p100.star`` (80) and a from-scratch run on all 80."""
    root, sim = project
    write_particle_star(root / "p60.star", sim.start.select(np.arange(48)))
    write_particle_star(root / "p100.star", sim.start.select(np.arange(80)))
    assert _run(root, "job010", "p100.star", "map.mrc", "--range", "4", "--refine_zscore_thr", "3") == 0
    return root


def test_continue_refines_only_new_particles_and_equals_a_scratch_run(subsets):
    root = subsets
    assert _run(root, "job011", "p60.star", "map.mrc", "--range", "4", "--refine_zscore_thr", "3") == 0
    assert _run(root, "job011", "p100.star", "map.mrc", "--range", "4", "--refine_zscore_thr", "3") == 0
    job = root / "External" / "job011"
    names = _names_in_records(job)
    assert len(names) == 80 and len(set(names)) == 80  # each particle refined exactly once
    assert "80 particles: 48 refined before, 32 to refine" in (job / "cryopares.log").read_text()
    _assert_same_maps(job, root / "External" / "job010")
    a = read_particle_star(job / "run_data.star")
    b = read_particle_star(root / "External" / "job010" / "run_data.star")
    assert a.image_names() == b.image_names()
    assert np.allclose(a.angles_deg(), b.angles_deg(), atol=1e-4)
    # a third run with nothing new changes nothing
    assert _run(root, "job011", "p100.star", "map.mrc", "--range", "4", "--refine_zscore_thr", "3") == 0
    assert len(_names_in_records(job)) == 80
    _assert_same_maps(job, root / "External" / "job010")


def test_abort_and_crash_lose_no_finished_work(subsets, monkeypatch):
    root = subsets
    monkeypatch.setattr(localrefine, "CHUNK_PARTICLES", 16)
    job = root / "External" / "job012"
    calls = {"refine": 0, "refined": 0, "insert": 0}
    refine_rows, insert_chunk = localrefine._refine_rows, localrefine._insert_chunk

    def refine_then_abort(*args, **kwargs):
        calls["refine"] += 1
        calls["refined"] += len(args[2])
        if calls["refine"] == 11:  # RELION's abort button, mid-way through the 2nd chunk of 16
            (job / ABORT_NOW).touch()
        return refine_rows(*args, **kwargs)

    monkeypatch.setattr(localrefine, "_refine_rows", refine_then_abort)
    args = ("p100.star", "map.mrc", "--range", "4", "--batch_size", "2", "--refine_zscore_thr", "3")
    assert _run(root, "job012", *args) == 2
    assert (job / "RELION_JOB_EXIT_ABORTED").exists()
    done = _names_in_records(job)
    assert 16 < len(done) == calls["refined"] < 32  # chunk 0 and the finished batches of chunk 1 are kept

    def insert_then_crash(*a, **k):  # killed after a chunk record, before its sums were saved
        calls["insert"] += 1
        if calls["insert"] == 3:
            raise RuntimeError("simulated crash")
        return insert_chunk(*a, **k)

    monkeypatch.setattr(localrefine, "_refine_rows", refine_rows)
    monkeypatch.setattr(localrefine, "_insert_chunk", insert_then_crash)
    assert _run(root, "job012", *args) == 1
    assert (job / "RELION_JOB_EXIT_FAILURE").exists()
    assert len(_names_in_records(job)) > len(done)

    monkeypatch.setattr(localrefine, "_insert_chunk", insert_chunk)
    assert _run(root, "job012", *args) == 0
    names = _names_in_records(job)
    assert len(names) == 80 and len(set(names)) == 80
    _assert_same_maps(job, root / "External" / "job010")


def _turned(star, rows: np.ndarray, angle_deg: float, seed: int) -> np.ndarray:
    """Euler angles of the true poses of ``rows`` turned by exactly ``angle_deg`` about random axes."""
    axis = np.random.default_rng(seed).standard_normal((len(rows), 3))
    axis *= angle_deg / np.linalg.norm(axis, axis=1, keepdims=True)
    true = euler_to_matrix(torch.from_numpy(star.angles_deg()[rows]))
    return matrix_to_euler(rotation_vector_to_matrix(torch.from_numpy(axis)) @ true).numpy()


def test_several_starting_poses_leave_a_wrong_basin(project, capsys):
    """The input pose 40° off (a wrong basin of the network), its 2nd pose within 5° of the truth (the
    other tests' start), its 3rd 60° off: one start without the global scan stays in the wrong basin;
    the global scan's starts rescue it; the default (every network pose the input carries and the
    global scan) keeps the 2nd and refines it as well as a single right start."""
    root, sim = project
    rows = np.arange(40)
    first, third = _turned(sim.star, rows, 40.0, 1), _turned(sim.star, rows, 60.0, 2)
    second = sim.start.angles_deg()[rows]
    columns = {}
    for k, angles in ((2, second), (3, third)):
        for i, axis in enumerate(("Rot", "Tilt", "Psi")):
            columns[f"rlnCryoparesTop{k}Angle{axis}"] = angles[:, i]
            columns[f"rlnAngle{axis}"] = first[:, i]
    write_particle_star(root / "ptop.star", sim.start.select(rows).with_columns(**columns))

    assert _run(root, "job030", "ptop.star", "map.mrc", "--top_k", "1", "--global_starts", "0") == 0
    one, _ = _errors(read_particle_star(root / "External" / "job030" / "run_data.star"), sim.star)
    assert _run(root, "job033", "ptop.star", "map.mrc", "--top_k", "1") == 0
    rescued, _ = _errors(read_particle_star(root / "External" / "job033" / "run_data.star"), sim.star)
    assert _run(root, "job031", "ptop.star", "map.mrc") == 0
    job = root / "External" / "job031"
    out = read_particle_star(job / "run_data.star")
    ang, shift = _errors(out, sim.star)
    kept = out.particles[localrefine.START_COLUMN].to_numpy()
    with capsys.disabled():
        print(f"40° starts: one start {one.median():.1f}°, with the global scan {rescued.median():.2f}°, "
              f"three starts {ang.median():.2f}° (kept start {np.bincount(kept)})")
    assert one.median() > 30.0
    assert rescued.median() <= 3.0
    assert ang.median() <= 1.5 and np.median(shift) <= 0.5
    assert ((kept == 2) | (kept >= 4)).mean() >= 0.9  # the right network start or a global one (4, 5, 6)
    log = (job / "cryopares.log").read_text()
    assert "around 3 starting pose(s)" in log and "best match from the network's pose 1..3:" in log

    capsys.readouterr()
    assert _run(root, "job032", "ptop.star", "map.mrc", "--top_k", "4") == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ERROR")]
    assert len(err) == 1 and "rlnCryoparesTop4AngleRot" in err[0] and "ptop.star" in err[0], err


def test_bad_inputs_fail_with_one_line(project, capsys):
    root, _ = project
    assert _run(root, "job020", "start.star", "missing.mrc") == 1
    assert (root / "External" / "job020" / "RELION_JOB_EXIT_FAILURE").exists()
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ERROR")]
    assert len(err) == 1 and "missing.mrc" in err[0], err

    with mrcfile.new(root / "flat.mrc", overwrite=True) as mrc:
        mrc.set_data(np.zeros((32, 64, 64), np.float32))
        mrc.voxel_size = 5.7
    assert _run(root, "job021", "start.star", "flat.mrc") == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ERROR")]
    assert len(err) == 1 and "not cubic" in err[0] and "flat.mrc" in err[0], err

    # a continue with other settings refuses instead of mixing results
    write_particle_star(root / "p8.star", read_particle_star(root / "start.star").select(np.arange(8)))
    assert _run(root, "job022", "p8.star", "map.mrc", "--range", "2") == 0
    capsys.readouterr()
    assert _run(root, "job022", "p8.star", "map.mrc", "--range", "3") == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ERROR")]
    assert len(err) == 1 and "settings differ" in err[0], err


def _d2_symmetrised(vol: torch.Tensor) -> torch.Tensor:
    """Average of the map over RELION's D2 (2-folds along x, y, z): exact voxel flips about n//2."""
    def turn(v, dims):  # r -> -r along dims (zyx array axes), centre at n//2
        return torch.roll(torch.flip(v, dims), shifts=[1] * len(dims), dims=dims)
    return (vol + turn(vol, (0, 1)) + turn(vol, (0, 2)) + turn(vol, (1, 2))) / 4


def test_symmetry_d2(test_map, tmp_path):
    """D2 particles: errors with symmetry within target; a canonical input stays canonical."""
    vol, px = test_map
    sym_vol = _d2_symmetrised(vol)
    root = make_project(tmp_path / "d2")
    sim = simulate((sym_vol, px), root, n=60, seed=41, volume=sym_vol)
    sym = symmetry_matrices("D2")
    start = euler_to_matrix(torch.from_numpy(sim.start.angles_deg()))
    canonical = matrix_to_euler(canonical_symmetry_mate(start, sym)).numpy()
    write_particle_star(root / "canonical.star", sim.start.with_columns(
        rlnAngleRot=canonical[:, 0], rlnAngleTilt=canonical[:, 1], rlnAnglePsi=canonical[:, 2]))
    write_volume(root / "map.mrc", sym_vol.numpy(), px)
    assert _run(root, "job001", "canonical.star", "map.mrc", "--sym", "D2", "--range", "6",
                "--refine_zscore_thr", "none") == 0
    out = read_particle_star(root / "External" / "job001" / "run_data.star")
    poses = euler_to_matrix(torch.from_numpy(out.angles_deg()))
    err = geodesic_distance_deg(poses, sim.true_poses, sym)
    assert err.median() <= 1.5, err.median()
    assert torch.allclose(canonical_symmetry_mate(poses, sym), poses, atol=1e-5)


def test_bad_images_are_rejected_with_their_reason_and_the_job_goes_on(project):
    """NaN pixels, +Inf pixels and a constant image among good particles: refined particles as
    usual, those three in rejected.star with rlnCryoparesRejectReason bad_image, never in the maps."""
    root, sim = project
    star = sim.start.select(np.arange(24))
    names = star.image_names()
    with mrcfile.open(root / parse_image_name(names[0])[1]) as src:
        data = np.array(src.data[:24], dtype=np.float32)
    data[3, 5:9, 5:9] = np.nan
    data[7, 20, 20] = np.inf
    data[11] = 0.5
    with mrcfile.new(root / "spoiled.mrcs") as dst:
        dst.set_data(data)
    star = star.with_columns(rlnImageName=np.array([f"{i + 1:06d}@spoiled.mrcs" for i in range(24)], dtype=object))
    write_particle_star(root / "spoiled.star", star)
    assert _run(root, "job040", "spoiled.star", "map.mrc", "--range", "4", "--refine_zscore_thr", "none") == 0
    job = root / "External" / "job040"
    rejected = read_particle_star(job / "rejected.star")
    assert sorted(rejected.image_names()) == [f"{i:06d}@spoiled.mrcs" for i in (4, 8, 12)]
    assert set(rejected.column("rlnCryoparesRejectReason").astype(str)) == {"bad_image"}
    assert len(read_particle_star(job / "run_data.star")) == 21
    assert "bad images: 3 rejected" in (job / "cryopares.log").read_text()
