"""Image stacks: names, every MRC mode, extended headers, bounded open files, errors, writing."""

from __future__ import annotations

import os
import pickle

import mrcfile
import numpy as np
import pytest

from relion_cryopares.data import ImageStackReader, parse_image_name, stack_shape, write_stack
from relion_cryopares.errors import InputError


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _new(path, data, **kwargs):
    with mrcfile.new(str(path), overwrite=True) as mrc:
        mrc.set_data(data)
        if data.ndim == 3:
            mrc.set_image_stack()
        for key, value in kwargs.items():
            setattr(mrc, key, value)


@pytest.mark.parametrize("name, expected", [
    ("000012@Extract/job007/x.mrcs", (11, "Extract/job007/x.mrcs")),
    ("1@/abs/path/stack.mrcs", (0, "/abs/path/stack.mrcs")),
    ("  3@a.mrc ", (2, "a.mrc")),
    ("single.mrc", (0, "single.mrc")),
    ("2@Extract/job007/x.mrc:mrcs", (1, "Extract/job007/x.mrc")),  # RELION's type suffix
])
def test_parse_image_name(name, expected):
    assert parse_image_name(name) == expected


@pytest.mark.parametrize("name", ["0@x.mrcs", "abc@x.mrcs", "5@"])
def test_parse_bad_image_name(name):
    with pytest.raises(InputError, match="bad image name"):
        parse_image_name(name)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int8, np.int16, np.uint16])
def test_every_mode(tmp_path, dtype):
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(6, 8, 10)) * 20).astype(dtype) if dtype != np.uint16 else \
        rng.integers(0, 60000, size=(6, 8, 10)).astype(dtype)
    _new(tmp_path / "s.mrcs", data)
    with ImageStackReader(root=tmp_path) as reader:
        images = reader.read([f"{i}@s.mrcs" for i in (6, 1, 3, 3)])
    assert images.dtype == np.float32 and images.shape == (4, 8, 10)
    np.testing.assert_array_equal(images, data[[5, 0, 2, 2]].astype(np.float32))


def test_extended_header_respected(tmp_path):
    data = np.arange(3 * 4 * 4, dtype=np.float32).reshape(3, 4, 4)
    with mrcfile.new(str(tmp_path / "ext.mrcs")) as mrc:
        mrc.set_extended_header(np.arange(256, dtype=np.int32))  # 1024 bytes of FEI-like junk
        mrc.set_data(data)
        mrc.set_image_stack()
    with mrcfile.open(str(tmp_path / "ext.mrcs"), header_only=True) as mrc:
        assert int(mrc.header.nsymbt) == 1024
    with ImageStackReader(root=tmp_path) as reader:
        np.testing.assert_array_equal(reader.read(["2@ext.mrcs", "3@ext.mrcs"]), data[1:])


def test_single_images_and_mrc_stacks(tmp_path, shared_data):
    single = np.random.default_rng(1).normal(size=(12, 12)).astype(np.float32)
    _new(tmp_path / "one.mrc", single)
    with ImageStackReader(root=tmp_path) as reader:
        np.testing.assert_array_equal(reader.read(["one.mrc"])[0], single)
        np.testing.assert_array_equal(reader.read(["1@one.mrc"])[0], single)
    stack = shared_data / "cryodrgn_empiar10076" / "empiar_10076_7.mrc"  # a stack named .mrc
    assert stack_shape(stack) == (7, 320, 320)
    with ImageStackReader() as reader, mrcfile.open(str(stack)) as mrc:
        np.testing.assert_array_equal(reader.read([f"7@{stack}"])[0], mrc.data[6])


def test_open_files_stay_bounded(tmp_path):
    n_stacks = 3000
    for i in range(n_stacks):
        _new(tmp_path / f"s{i:04d}.mrcs", np.full((2, 4, 4), i, dtype=np.float32))
    names = [f"{1 + i % 2}@s{i:04d}.mrcs" for i in range(n_stacks)]
    before = _fds()
    peak = before
    with ImageStackReader(max_open_files=16, root=tmp_path) as reader:
        for start in range(0, n_stacks, 100):
            images = reader.read(names[start:start + 100])
            np.testing.assert_array_equal(images[:, 0, 0], np.arange(start, start + 100))
            peak = max(peak, _fds())
            assert reader.n_open <= 16
    assert peak - before <= 2 * 16 + 4  # a file and its memory map per open stack
    assert _fds() <= before + 1


def test_errors_name_the_file_and_row(tmp_path):
    _new(tmp_path / "x.mrcs", np.zeros((50, 4, 4), dtype=np.float32))
    _new(tmp_path / "y.mrcs", np.zeros((5, 6, 6), dtype=np.float32))
    reader = ImageStackReader(root=tmp_path)
    with pytest.raises(InputError) as info:
        reader.read(["1@x.mrcs", "3@Extract/job007/gone.mrcs"], source="particles.star",
                    row_numbers=[11, 12])
    assert str(info.value) == "Extract/job007/gone.mrcs: stack not found (referenced by particles.star row 12)"
    with pytest.raises(InputError) as info:
        reader.read(["51@x.mrcs"])
    assert str(info.value) == "x.mrcs: image 51 requested but the stack has 50 images"
    with pytest.raises(InputError, match="6 x 6 px but other images read with them are 4 x 4 px"):
        reader.read(["1@x.mrcs", "1@y.mrcs"])
    (tmp_path / "junk.mrcs").write_bytes(b"not an mrc file")
    with pytest.raises(InputError, match="junk.mrcs: cannot read MRC"):
        reader.read(["1@junk.mrcs"])
    reader.close()


def test_truncated_stack(tmp_path):
    _new(tmp_path / "t.mrcs", np.zeros((10, 16, 16), dtype=np.float32))
    full = (tmp_path / "t.mrcs").read_bytes()
    (tmp_path / "t.mrcs").write_bytes(full[: len(full) - 5000])
    with pytest.raises(InputError, match="t.mrcs: "):
        ImageStackReader(root=tmp_path).read(["1@t.mrcs"])


def test_write_stack_and_pickle(tmp_path):
    images = np.random.default_rng(2).normal(size=(4, 10, 10))
    write_stack(tmp_path / "w.mrcs", images, pixel_size_angstrom=1.5)
    with mrcfile.open(str(tmp_path / "w.mrcs")) as mrc:
        assert mrc.is_image_stack() and mrc.voxel_size.x == pytest.approx(1.5)
        assert mrc.data.dtype == np.float32
    reader = pickle.loads(pickle.dumps(ImageStackReader(max_open_files=3, root=tmp_path)))
    np.testing.assert_allclose(reader.read(["4@w.mrcs"])[0], images[3], rtol=1e-6)
    assert reader.max_open_files == 3
    assert [p.name for p in tmp_path.iterdir()] == ["w.mrcs"]


def _child_read(reader, queue):
    inherited = reader.n_open  # the parent's handle came along with the fork (no pickling)
    total = float(reader.read(["2@f.mrcs"]).sum())
    queue.put((inherited, total, reader.n_open))


def test_forked_worker_opens_its_own_handles(tmp_path):
    import multiprocessing

    _new(tmp_path / "f.mrcs", np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4))
    reader = ImageStackReader(root=tmp_path)
    expected = float(reader.read(["2@f.mrcs"]).sum())
    assert reader.n_open == 1
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_read, args=(reader, queue))
    child.start()
    assert queue.get(timeout=30) == (1, expected, 1)
    child.join(timeout=30)
    assert child.exitcode == 0
    assert reader.n_open == 1 and float(reader.read(["2@f.mrcs"]).sum()) == expected
    reader.close()
    assert reader.n_open == 0
