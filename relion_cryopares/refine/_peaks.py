"""Sub-sample peaks: parabolic sub-pixel shifts and a quadratic fit over the rotation lattice."""

from __future__ import annotations

import torch

from ._grid import cube_offsets


def parabolic_offset(left: torch.Tensor, centre: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Vertex of the parabola through ``(-1, left), (0, centre), (1, right)``, clamped to ``[-0.5, 0.5]``
    (0 where the three points are not a maximum). Shapes broadcast."""
    denom = left - 2 * centre + right
    off = torch.where(denom < 0, 0.5 * (left - right) / torch.where(denom < 0, denom, -torch.ones_like(denom)),
                      torch.zeros_like(denom))
    return off.clamp(-0.5, 0.5)


def _quadratic_design() -> torch.Tensor:
    """``(27, 10)`` design matrix of ``c + g.u + 1/2 u^T H u`` at the 27 cube offsets ``u``:
    columns ``1, u_x, u_y, u_z, u_x², u_y², u_z², u_x u_y, u_x u_z, u_y u_z``."""
    u = cube_offsets().to(torch.float64)
    x, y, z = u.unbind(-1)
    return torch.stack([torch.ones_like(x), x, y, z, x * x, y * y, z * z, x * y, x * z, y * z], -1)


_SOLVER: dict[str, torch.Tensor] = {}


def quadratic_peak_3d(values: torch.Tensor, max_offset: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stationary point of the least-squares quadratic through values on the cube ``{-1, 0, 1}³``.

    Parameters
    ----------
    values: ``(b, 27)`` values at :func:`~._grid.cube_offsets` (centre = the sampled maximum).
    max_offset: largest allowed component of the result (in lattice units).

    Returns
    -------
    offsets: ``(b, 3)`` the maximum of the fitted quadratic in lattice units, or 0 where the fit is
        not concave (then the sampled centre is kept); components clamped to ``±max_offset``.
    ok: ``(b,)`` True where the fit was concave and used.
    """
    key = str(values.device)
    if key not in _SOLVER:
        _SOLVER[key] = torch.linalg.pinv(_quadratic_design()).to(values.device)
    coef = values.to(torch.float64) @ _SOLVER[key].T  # (b, 10)
    g = coef[:, 1:4]
    hxx, hyy, hzz, hxy, hxz, hyz = coef[:, 4:].unbind(-1)
    h = torch.stack([torch.stack([2 * hxx, hxy, hxz], -1), torch.stack([hxy, 2 * hyy, hyz], -1),
                     torch.stack([hxz, hyz, 2 * hzz], -1)], -2)
    eig = torch.linalg.eigvalsh(h)
    ok = eig.amax(-1) < 0
    safe = torch.where(ok[:, None, None], h, -torch.eye(3, dtype=h.dtype, device=h.device))
    u = -torch.linalg.solve(safe, g)
    u = torch.where(ok[:, None], u, torch.zeros_like(u))
    return u.clamp(-max_offset, max_offset).to(values.dtype), ok
