"""Small lookup tables over the SO(3) grid: grid matrices per device, symmetry classes."""

from __future__ import annotations

import functools
import hashlib

import torch

from relion_cryopares.errors import InputError
from relion_cryopares.geometry import canonical_symmetry_mate, nearest_grid_index, so3_grid

from ._cache import cached_tensors


def grid_order_of(n_rotations: int) -> int:
    """The order ``o`` with ``72 * 8**o == n_rotations``."""
    for order in range(8):
        if 72 * 8 ** order == n_rotations:
            return order
    raise InputError(f"{n_rotations} is not the size of a HEALPix SO(3) grid (72 * 8**order)")


@functools.lru_cache(maxsize=8)
def grid_matrices(order: int, device: str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(N, 3, 3)`` grid pose matrices, cached per order, device and dtype (do not modify)."""
    return so3_grid(order, dtype=dtype).to(device)


def is_trivial(symmetry: torch.Tensor | None) -> bool:
    return symmetry is None or symmetry.shape[0] == 1


def _symmetry_key(symmetry: torch.Tensor) -> str:
    data = torch.round(symmetry.detach().cpu().double() * 1e6).to(torch.int64).numpy().tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


def _build_classes(order: int, symmetry: torch.Tensor, chunk: int = 8192) -> dict[str, torch.Tensor]:
    grid = so3_grid(order, dtype=torch.float64)
    sym = symmetry.detach().cpu().double()
    nearest = torch.empty(grid.shape[0], dtype=torch.int64)
    for start in range(0, grid.shape[0], chunk):
        canon = canonical_symmetry_mate(grid[start:start + chunk], sym)
        nearest[start:start + chunk] = nearest_grid_index(canon, order)
    representatives, class_of = torch.unique(nearest, return_inverse=True)
    return {"representatives": representatives, "class_of": class_of}


@functools.lru_cache(maxsize=16)
def _classes_cached(order: int, key: str, symmetry_bytes: bytes, g: int) -> tuple[torch.Tensor, torch.Tensor]:
    symmetry = torch.frombuffer(bytearray(symmetry_bytes), dtype=torch.float64).view(g, 3, 3)
    tables = cached_tensors("symmetry_classes", {"order": order, "symmetry": key},
                            lambda: _build_classes(order, symmetry))
    return tables["representatives"], tables["class_of"]


def symmetry_classes(order: int, symmetry: torch.Tensor, device: torch.device | str = "cpu"
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Partition of the grid into symmetry classes.

    Each grid pose is mapped to its canonical symmetry mate
    (:func:`relion_cryopares.geometry.canonical_symmetry_mate`) and then to the nearest grid point;
    the distinct results are the class representatives.

    Args:
        order: grid order.
        symmetry: ``(G, 3, 3)`` operators from :func:`relion_cryopares.geometry.symmetry_matrices`.

    Returns:
        ``representatives`` ``(R,)`` grid indices (ascending) and ``class_of`` ``(N,)`` the class
        (position in ``representatives``) of every grid point; int64 on ``device``. Cached in memory
        (per device) and on disk.
    """
    sym = symmetry.detach().cpu().double().contiguous()
    return _classes_on(order, _symmetry_key(sym), sym.numpy().tobytes(), sym.shape[0], str(device))


@functools.lru_cache(maxsize=16)
def _classes_on(order: int, key: str, symmetry_bytes: bytes, g: int, device: str
                ) -> tuple[torch.Tensor, torch.Tensor]:
    reps, class_of = _classes_cached(order, key, symmetry_bytes, g)
    return reps.to(device), class_of.to(device)
