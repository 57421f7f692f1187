"""Point-group symmetry operators exactly as RELION 3.1 defines them.

Each group is the closure of a few generators whose axes reproduce RELION's orientations
(checked as sets against ``relion_refine --print_symmetry_ops --sym <name>``):

- ``Cn``: n-fold axis along z. ``Dn``: ``Cn`` plus a 2-fold axis along x.
- ``Ci``: inversion. ``Cs``: mirror z -> -z. ``Cnv``: ``Cn`` plus the mirror y -> -y.
  ``Cnh``: ``Cn`` plus the mirror z -> -z. ``Dnv``: ``Dn`` plus the mirror x -> -x.
  ``Dnh``: ``Dn`` plus the mirror z -> -z.
- ``Sn`` (n even): RELION builds ``C(n/2)`` plus the inversion. For n/2 odd that is the textbook
  ``Sn``; for n/2 even (S4, S8, ...) it is ``C(n/2)h``, not the textbook ``Sn``. We reproduce RELION.
- ``T``: 3-fold axis along z, a 2-fold axis in the yz plane at 54.7356 deg from z (y > 0).
  ``Td``: ``T`` plus the mirror x -> -x. ``Th``: ``T`` plus the inversion.
- ``O``: 4-fold axes along x, y, z. ``Oh``: ``O`` plus the inversion.
- ``I1``: 2-folds along x, y, z, 5-folds along the cyclic permutations of ``(0, ±1, ±phi)``.
  ``I2`` (= ``I``): 2-folds along x, y, z, 5-folds along the cyclic permutations of ``(±1, 0, ±phi)``.
  ``I3``: 5-fold along z, 2-fold along y and one in the xz plane at 31.72 deg from x (z > 0).
  ``I4``: as ``I3`` with that 2-fold at 31.72 deg from -x (z > 0).
  ``Ih``, ``I1h``..``I4h``: the icosahedral group plus the inversion.

Operators ``L`` act on xyz column vectors of the map (``V(L @ r) == V(r)``). Improper operators
(det -1) appear in the groups with mirrors or inversion. The symmetry mates of a pose ``A`` are
``A @ L`` for proper ``L`` and ``diag(1, 1, -1) @ A @ L`` for improper ``L``: flipping z in the image
frame leaves the projection unchanged, so every mate is a rotation with the same projection.
"""

from __future__ import annotations

import functools
import math
import re

import torch

from relion_cryopares.errors import InputError

_UNKNOWN = "unknown symmetry group {!r} (RELION names: C1, C<n>, Ci, Cs, C<n>v, C<n>h, S<n>, D<n>, " \
    "D<n>v, D<n>h, T, Td, Th, O, Oh, I, I1-I4, Ih, I1h-I4h)"

_PHI = (1.0 + math.sqrt(5.0)) / 2.0


def _axis_rotation(axis, angle_deg: float) -> torch.Tensor:
    """Active right-handed rotation ``(3, 3)`` float64 about ``axis`` (3,) by ``angle_deg``."""
    k = torch.tensor(axis, dtype=torch.float64)
    k = k / torch.linalg.vector_norm(k)
    t = math.radians(angle_deg)
    cross = torch.tensor(
        [[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]], dtype=torch.float64
    )
    return torch.eye(3, dtype=torch.float64) + math.sin(t) * cross + (1 - math.cos(t)) * cross @ cross


def _diag(*d) -> torch.Tensor:
    return torch.diag(torch.tensor(d, dtype=torch.float64))


def _closure(generators: list[torch.Tensor]) -> torch.Tensor:
    """Smallest set of matrices containing the identity and closed under products (BFS order)."""
    gens = torch.stack(generators)  # (k, 3, 3)
    elements = torch.eye(3, dtype=torch.float64)[None]
    frontier = elements
    while frontier.shape[0]:
        candidates = (frontier[:, None] @ gens[None]).reshape(-1, 3, 3)
        fresh = []
        for p in candidates:
            known = torch.cat([elements] + fresh) if fresh else elements
            if (p - known).abs().amax(dim=(-2, -1)).min() > 1e-8:
                fresh.append(p[None])
        frontier = torch.cat(fresh) if fresh else candidates[:0]
        elements = torch.cat([elements, frontier])
        if elements.shape[0] > 240:
            raise RuntimeError("symmetry closure did not terminate")  # a bug, not bad input
    snapped = torch.round(elements * 2.0) / 2.0  # snap 0, +-0.5, +-1 to exact values
    return torch.where(torch.abs(elements - snapped) < 1e-12, snapped, elements)


def _icosahedral(which: int) -> list[torch.Tensor]:
    if which == 1:
        return [_diag(-1, -1, 1), _diag(1, -1, -1), _axis_rotation((0.0, 1.0, _PHI), 72.0)]
    if which == 2:
        return [_diag(-1, -1, 1), _diag(1, -1, -1), _axis_rotation((1.0, 0.0, _PHI), 72.0)]
    half = math.atan(1.0 / _PHI)  # 31.72 deg: angle of the in-plane 2-fold from the x axis
    sign = 1.0 if which == 3 else -1.0
    return [
        _axis_rotation((0.0, 0.0, 1.0), 72.0),
        _diag(-1, 1, -1),
        _axis_rotation((sign * math.cos(half), 0.0, math.sin(half)), 180.0),
    ]


def _generators(name: str) -> list[torch.Tensor]:
    key = name.strip().lower()
    z_rot = lambda n: _axis_rotation((0.0, 0.0, 1.0), 360.0 / n)  # noqa: E731
    inversion, mirror_x, mirror_y, mirror_z = _diag(-1, -1, -1), _diag(-1, 1, 1), _diag(1, -1, 1), _diag(1, 1, -1)
    two_fold_x = _diag(1, -1, -1)
    fixed = {
        "ci": [inversion],
        "cs": [mirror_z],
        "t": None, "td": None, "th": None,
        "o": [_axis_rotation((0.0, 0.0, 1.0), 90.0), _axis_rotation((1.0, 1.0, 1.0), 120.0)],
        "i": _icosahedral(2), "ih": _icosahedral(2) + [inversion],
    }
    tetra = [z_rot(3), _axis_rotation((0.0, math.sqrt(2.0), 1.0), 180.0)]
    fixed.update({"t": tetra, "td": tetra + [mirror_x], "th": tetra + [inversion]})
    fixed["oh"] = fixed["o"] + [inversion]
    if key in fixed:
        return fixed[key]
    match = re.fullmatch(r"i([1-4])(h?)", key)
    if match:
        return _icosahedral(int(match.group(1))) + ([inversion] if match.group(2) else [])
    match = re.fullmatch(r"([cds])(\d+)([vh]?)", key)
    if not match:
        raise InputError(_UNKNOWN.format(name))
    kind, n, suffix = match.group(1), int(match.group(2)), match.group(3)
    if n < 1:
        raise InputError(f"symmetry group {name!r}: the order must be at least 1")
    if kind == "s":
        if suffix or n % 2:
            raise InputError(f"symmetry group {name!r}: RELION's S<n> needs an even n and no suffix")
        return [z_rot(n // 2), inversion]
    gens = [z_rot(n)] + ([two_fold_x] if kind == "d" else [])
    if suffix == "h":
        gens.append(mirror_z)
    elif suffix == "v":
        gens.append(mirror_x if kind == "d" else mirror_y)
    return gens


@functools.lru_cache(maxsize=64)
def _group_float64(key: str) -> torch.Tensor:
    return _closure(_generators(key))


def symmetry_matrices(name: str, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The operators of a RELION point group.

    Args:
        name: RELION's symmetry name, case-insensitive (``C1``, ``C7``, ``D2``, ``O``, ``I3``, ...).
        dtype: floating dtype of the result.

    Returns:
        ``(G, 3, 3)`` operators ``L`` acting on xyz column vectors of the map, the identity first; as
        a set identical to RELION's ``--print_symmetry_ops`` matrices (``R(i)``). A new tensor on
        the CPU each call.

    Raises:
        InputError: unknown or malformed name.
    """
    if not isinstance(name, str) or not name.strip():
        raise InputError(_UNKNOWN.format(name))
    try:
        group = _group_float64(name.strip().lower())
    except InputError as err:
        raise InputError(err.problem.replace(repr(name.strip().lower()), repr(name))) from None
    return group.to(dtype=dtype, copy=True)


def symmetry_mates(matrices: torch.Tensor, symmetry: torch.Tensor) -> torch.Tensor:
    """All symmetry mates of pose matrices.

    Args:
        matrices: ``(..., 3, 3)`` pose matrices ``A`` (RELION convention).
        symmetry: ``(G, 3, 3)`` operators from :func:`symmetry_matrices`.

    Returns:
        ``(..., G, 3, 3)``: ``A @ L`` for proper ``L`` and ``diag(1, 1, -1) @ A @ L`` for improper
        ``L`` (all rotations giving the same projection as ``A`` of a map with that symmetry).
    """
    sym = symmetry.to(device=matrices.device, dtype=matrices.dtype)
    mates = matrices.unsqueeze(-3) @ sym
    det_sign = torch.sign(torch.linalg.det(sym))  # (G,)
    row_sign = torch.ones(sym.shape[0], 3, 1, dtype=sym.dtype, device=sym.device)
    row_sign[:, 2, 0] = det_sign
    return mates * row_sign


def canonical_symmetry_mate(matrices: torch.Tensor, symmetry: torch.Tensor | None) -> torch.Tensor:
    """One deterministic representative per symmetry-equivalence class.

    The representative is the mate closest to the identity (largest trace), so it lies in the
    Voronoi cell of the identity, a fundamental domain of the symmetry. Mates equally close to the
    identity (within rounding) are told apart by their closeness to a fixed generic rotation; this
    matters for groups containing the mirror ``diag(1, 1, -1)`` (``Cs``, ``C<n>h``, ``D<n>h``, ``Oh``,
    ``Ih``), where ``A`` and ``diag(1, 1, -1) @ A @ diag(1, 1, -1)`` are always equally close to the
    identity. Exact remaining ties go to the operator listed first in ``symmetry``.

    Args:
        matrices: ``(..., 3, 3)`` pose matrices ``A`` (RELION convention).
        symmetry: ``(G, 3, 3)`` operators from :func:`symmetry_matrices`, or ``None`` (C1).

    Returns:
        ``(..., 3, 3)`` the chosen mate of each pose, same dtype and device.
    """
    if symmetry is None or symmetry.shape[0] == 1:
        return matrices.clone()
    mates = symmetry_mates(matrices, symmetry)
    trace = mates.diagonal(dim1=-2, dim2=-1).sum(-1)  # (..., G)
    tol = 1e-9 if matrices.dtype == torch.float64 else 1e-5
    near_best = trace >= trace.amax(dim=-1, keepdim=True) - tol
    secondary = (mates * _tie_break_reference(matrices)).sum(dim=(-2, -1))  # trace(R0.T @ mate)
    score = torch.where(near_best, secondary, torch.full_like(secondary, -torch.inf))
    choice = torch.argmax(score, dim=-1)  # first maximum on exact ties
    index = choice[..., None, None, None].expand(*choice.shape, 1, 3, 3)
    return torch.gather(mates, -3, index).squeeze(-3)


def _tie_break_reference(like: torch.Tensor) -> torch.Tensor:
    """A fixed rotation with no symmetry of any RELION group (generic projection direction)."""
    angles = torch.tensor([23.7, 37.3, 11.9], dtype=torch.float64)
    a, b, c = torch.deg2rad(angles).tolist()
    rz = lambda t: torch.tensor(  # noqa: E731
        [[math.cos(t), -math.sin(t), 0.0], [math.sin(t), math.cos(t), 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64
    )
    ry = torch.tensor([[math.cos(b), 0.0, math.sin(b)], [0.0, 1.0, 0.0], [-math.sin(b), 0.0, math.cos(b)]], dtype=torch.float64)
    return (rz(a) @ ry @ rz(c)).to(dtype=like.dtype, device=like.device)
