"""Sub-sample peak fits."""

from __future__ import annotations

import torch

from relion_cryopares.refine import cube_offsets, parabolic_offset, quadratic_peak_3d


def test_parabolic_offset_is_exact_for_parabolas():
    x0 = torch.tensor([0.3, -0.45, 0.0, 0.1])
    f = lambda x: 5.0 - 2.0 * (x - x0) ** 2  # noqa: E731
    assert torch.allclose(parabolic_offset(f(-1.0), f(0.0), f(1.0)), x0, atol=1e-6)
    assert parabolic_offset(torch.tensor(1.0), torch.tensor(0.0), torch.tensor(1.0)) == 0  # a minimum


def test_quadratic_peak_is_exact_for_concave_quadratics():
    g = torch.Generator().manual_seed(0)
    u = cube_offsets().to(torch.float64)
    for _ in range(20):
        m = torch.randn(3, 3, generator=g, dtype=torch.float64)
        h = -(m @ m.T + 0.5 * torch.eye(3, dtype=torch.float64))
        peak = (torch.rand(3, generator=g, dtype=torch.float64) - 0.5) * 1.2
        d = u - peak
        values = 1.0 + 0.5 * ((d @ h) * d).sum(-1)
        got, ok = quadratic_peak_3d(values[None], max_offset=1.0)
        assert ok.item() and torch.allclose(got[0], peak, atol=1e-8)


def test_quadratic_peak_rejects_saddles():
    u = cube_offsets().to(torch.float64)
    values = u[:, 0] ** 2 - u[:, 1] ** 2 - u[:, 2] ** 2
    got, ok = quadratic_peak_3d(values[None])
    assert not ok.item() and torch.equal(got[0], torch.zeros(3, dtype=torch.float64))
