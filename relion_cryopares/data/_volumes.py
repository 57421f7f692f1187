"""3D maps: read (cubic, float32, with voxel size) and write atomically."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import mrcfile
import numpy as np

from relion_cryopares.errors import InputError
from relion_cryopares.data._stacks import _open_mrc

log = logging.getLogger(__name__)


def _zyx_order(header) -> tuple[int, int, int] | None:
    """The permutation that brings stored data (sections, rows, columns) to ``(z, y, x)``."""
    axes = (int(header.maps), int(header.mapr), int(header.mapc))  # stored axis -> 1=x, 2=y, 3=z
    if sorted(axes) != [1, 2, 3]:
        return None
    if axes == (3, 2, 1):
        return (0, 1, 2)
    # stored axis i holds real axis axes[i]; we want position z(3), y(2), x(1)
    return tuple(axes.index(a) for a in (3, 2, 1))


def read_volume(path: str | Path) -> tuple[np.ndarray, float]:
    """A cubic map as ``(d, h, w)`` = ``(z, y, x)`` float32 and its voxel size in Å.

    Non-standard axis orders (MAPC/MAPR/MAPS) are brought to ``(z, y, x)``. A voxel size of 0 in the
    header is returned as ``0.0`` with a warning: the caller decides (e.g. a user-given pixel size).
    Raises :class:`InputError` when the file is missing, not 3D, not cubic, or has unequal voxel sizes.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("map not found", path)
    with _open_mrc(path, mmap=False) as mrc:
        data = np.asarray(mrc.data)
        if data.ndim != 3 or min(data.shape) < 2:
            shape = " x ".join(str(s) for s in data.shape)
            raise InputError(f"not a 3D map (data is {shape})", path)
        order = _zyx_order(mrc.header)
        if order is None:
            log.warning("%s: invalid axis order in header (MAPC/MAPR/MAPS); assuming x, y, z", path)
        elif order != (0, 1, 2):
            data = np.transpose(data, order)
        voxel = mrc.voxel_size
        sizes = (float(voxel.x), float(voxel.y), float(voxel.z))
    if len(set(data.shape)) != 1:
        d, h, w = data.shape
        raise InputError(f"volume is not cubic ({w} x {h} x {d})", path)
    if sizes[0] <= 0:
        log.warning("%s: voxel size is %g in the header; the caller must supply one", path, sizes[0])
        return np.ascontiguousarray(data, dtype=np.float32), 0.0
    if max(sizes) - min(sizes) > 1e-3 * max(sizes):
        raise InputError("voxel size differs between axes (%.4g, %.4g, %.4g Å)" % sizes, path)
    return np.ascontiguousarray(data, dtype=np.float32), sizes[0]


def write_volume(path: str | Path, volume, voxel_size_angstrom: float) -> None:
    """Write a ``(d, h, w)`` map as float32 MRC with its voxel size (atomic: temporary file + rename).

    ``volume`` may be a numpy array or a torch tensor (any device).
    """
    path = Path(path)
    if hasattr(volume, "detach"):
        volume = volume.detach().cpu().numpy()
    volume = np.ascontiguousarray(volume, dtype=np.float32)
    if volume.ndim != 3:
        raise ValueError(f"volume must be (d, h, w), got shape {volume.shape}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with mrcfile.new(str(tmp), overwrite=True) as mrc:
            mrc.set_data(volume)
            mrc.set_volume()
            mrc.voxel_size = float(voxel_size_angstrom)
            mrc.update_header_stats()
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
