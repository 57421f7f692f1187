"""Particle image stacks: lazy memory-mapped reads with a bounded number of open files.

RELION names an image ``"000012@Extract/job007/x.mrcs"``: the 1-based index of the image in a stack,
``@``, and the stack's path relative to the project directory (absolute paths are allowed too).
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import mrcfile
import numpy as np

from relion_cryopares.errors import InputError

log = logging.getLogger(__name__)


def parse_image_name(name: str) -> tuple[int, str]:
    """``"000012@Extract/job007/x.mrcs"`` -> ``(11, "Extract/job007/x.mrcs")`` (0-based index).

    A name without ``@`` is a single image (index 0). RELION's type suffix (``x.mrc:mrcs``) is dropped.
    """
    text = str(name).strip()
    if "@" not in text:
        return 0, _strip_type(text)
    number, _, path = text.partition("@")
    try:
        index1 = int(number)
    except ValueError:
        raise InputError(f"bad image name {text!r} (expected NUMBER@PATH)") from None
    if index1 < 1 or not path:
        raise InputError(f"bad image name {text!r} (image numbers start at 1)")
    return index1 - 1, _strip_type(path)


def _strip_type(path: str) -> str:
    """RELION's file-type suffix (``x.mrc:mrcs`` = read x.mrc as a stack) is not part of the path."""
    stem, colon, kind = path.rpartition(":")
    return stem if colon and kind in ("mrc", "mrcs") else path


def _open_mrc(path: Path, mmap: bool):
    """Open an MRC file read-only, tolerating harmless header defects but not missing data."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            opener = mrcfile.mmap if mmap else mrcfile.open
            handle = opener(str(path), mode="r", permissive=True)
        except (ValueError, OSError, EOFError) as exc:
            raise InputError(f"cannot read MRC file ({exc})", path) from None
    for w in caught:
        log.debug("%s: %s", path, w.message)
    if handle.data is None:
        handle.close()
        raise InputError("cannot read MRC data (unsupported mode or truncated file)", path)
    return handle


def _as_stack(data: np.ndarray) -> np.ndarray:
    """View MRC data as a stack ``(n, h, w)``: a 2D image is a 1-image stack."""
    if data.ndim == 2:
        return data[np.newaxis]
    if data.ndim == 3:
        return data
    raise ValueError(f"{data.ndim}D data")


def stack_shape(path: str | Path) -> tuple[int, int, int]:
    """``(n_images, height_px, width_px)`` of an image stack, from its header only."""
    path = Path(path)
    if not path.is_file():
        raise InputError("stack not found", path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with mrcfile.open(str(path), mode="r", permissive=True, header_only=True) as mrc:
                h = mrc.header
                nx, ny, nz = int(h.nx), int(h.ny), int(h.nz)
        except (ValueError, OSError, EOFError) as exc:
            raise InputError(f"cannot read MRC header ({exc})", path) from None
    return max(nz, 1), ny, nx


class ImageStackReader:
    """Reads particle images by RELION image name, keeping at most ``max_open_files`` stacks open.

    Stacks are memory-mapped (``mrcfile.mmap``) and kept in a least-recently-used cache, so reading
    millions of particles from 100,000 stacks never hits "too many open files" (each open stack costs
    two file descriptors: the file and its memory map). Relative paths are resolved against ``root``
    (the RELION project directory). After a ``fork`` (DataLoader workers) a child drops the handles it
    inherited and opens its own.
    """

    def __init__(self, max_open_files: int = 64, root: Path | str = "."):
        if max_open_files < 1:
            raise ValueError("max_open_files must be >= 1")
        self.max_open_files = int(max_open_files)
        self.root = Path(root)
        self._open: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def resolve(self, path: str) -> Path:
        """The file a (project-relative or absolute) stack path names."""
        p = Path(path)
        return p if p.is_absolute() else self.root / p

    def _stack(self, path: str) -> np.ndarray:
        """The memory-mapped ``(n, h, w)`` data of one stack, opening it (and evicting) if needed."""
        if os.getpid() != self._pid:  # forked: the inherited maps belong to the parent
            self._close_all()
            self._pid = os.getpid()
        handle = self._open.get(path)
        if handle is not None:
            self._open.move_to_end(path)
        else:
            file = self.resolve(path)
            if not file.is_file():
                raise FileNotFoundError(path)
            while len(self._open) >= self.max_open_files:
                _, old = self._open.popitem(last=False)
                old.close()
            handle = _open_mrc(file, mmap=True)
            self._open[path] = handle
        try:
            return _as_stack(handle.data)
        except ValueError as exc:
            raise InputError(f"not an image stack ({exc})", self.resolve(path)) from None

    def read(self, image_names: Sequence[str], *, source: str | None = None,
             row_numbers: Sequence[int] | None = None) -> np.ndarray:
        """Images ``(n, h, w)`` float32 in the order of ``image_names`` (any MRC mode is converted).

        ``source`` (e.g. the STAR file's name) and ``row_numbers`` (1-based STAR rows, aligned with
        ``image_names``) only improve error messages.
        """
        n = len(image_names)
        by_path: dict[str, tuple[list[int], list[int]]] = {}
        for position, name in enumerate(image_names):
            index, path = parse_image_name(name)
            slots, indices = by_path.setdefault(path, ([], []))
            slots.append(position)
            indices.append(index)
        out: np.ndarray | None = None

        def where(slot: int) -> str:
            if source is None:
                return ""
            row = row_numbers[slot] if row_numbers is not None else slot + 1
            return f" (referenced by {source} row {row})"

        with self._lock:
            for path, (slots, indices) in by_path.items():
                try:
                    data = self._stack(path)
                except FileNotFoundError:
                    raise InputError("stack not found" + where(slots[0]), path) from None
                idx = np.asarray(indices, dtype=np.int64)
                bad = np.flatnonzero(idx >= data.shape[0])
                if bad.size:
                    raise InputError(f"image {idx[bad[0]] + 1} requested but the stack has "
                                     f"{data.shape[0]} images" + where(slots[bad[0]]), path)
                if out is None:
                    out = np.empty((n,) + data.shape[1:], dtype=np.float32)
                elif data.shape[1:] != out.shape[1:]:
                    raise InputError(
                        f"images are {data.shape[1]} x {data.shape[2]} px but other images read with "
                        f"them are {out.shape[1]} x {out.shape[2]} px" + where(slots[0]), path)
                order = np.argsort(idx, kind="stable")  # sequential access through the map
                out[np.asarray(slots)[order]] = data[idx[order]]
        if out is None:
            return np.empty((0, 0, 0), dtype=np.float32)
        return out

    def _close_all(self) -> None:
        while self._open:
            _, handle = self._open.popitem(last=False)
            try:
                handle.close()
            except Exception:  # pragma: no cover - closing must never mask the real error
                log.debug("error closing a stack", exc_info=True)

    def close(self) -> None:
        """Close every open stack."""
        with self._lock:
            self._close_all()

    @property
    def n_open(self) -> int:
        """How many stacks are open now."""
        return len(self._open)

    def __enter__(self) -> "ImageStackReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._close_all()
        except Exception:
            pass

    def __getstate__(self):  # picklable for DataLoader workers (spawn): handles are not sent
        return {"max_open_files": self.max_open_files, "root": self.root}

    def __setstate__(self, state) -> None:
        self.__init__(state["max_open_files"], state["root"])


def write_stack(path: str | Path, images: np.ndarray, pixel_size_angstrom: float) -> None:
    """Write images ``(n, h, w)`` as a float32 MRC stack (atomic: temporary file + rename)."""
    path = Path(path)
    images = np.asarray(images)
    if images.ndim == 2:
        images = images[np.newaxis]
    if images.ndim != 3:
        raise ValueError(f"images must be (n, h, w), got shape {images.shape}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with mrcfile.new(str(tmp), overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(images, dtype=np.float32))
            mrc.set_image_stack()
            mrc.voxel_size = float(pixel_size_angstrom)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
