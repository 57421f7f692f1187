"""Logits on the HEALPix SO(3) grid are laid out in OUR pose convention (the crucial tests)."""

from __future__ import annotations

import torch

from relion_cryopares.geometry import (
    geodesic_distance_deg,
    nearest_grid_index,
    random_rotations,
    so3_grid,
    so3_grid_resolution_deg,
)
from relion_cryopares.model import GridLogits, S2Conv
from relion_cryopares.model._cache import cache_dir
from relion_cryopares.model._so3_fourier import delta_coefficients, evaluate_so3, so3_dim, wigner_blocks


def test_fast_grid_evaluation_equals_dense_wigner_product():
    for lmax, order in ((4, 1), (6, 2)):
        x = torch.randn(3, so3_dim(lmax))
        fast = GridLogits(lmax, order)(x)
        dense = evaluate_so3(x.double(), so3_grid(order, torch.float64), lmax)
        assert fast.shape == (3, 72 * 8**order)
        assert torch.allclose(fast.double(), dense, atol=1e-4)


def test_delta_at_pose_peaks_at_nearest_grid_point():
    """A band-limited delta at rotation R (coefficients D_l(R)) evaluated on the grid: its argmax
    is the grid point nearest to R (the kernel decreases with the rotation angle)."""
    for lmax, order in ((6, 2), (8, 3)):
        r = random_rotations(100, generator=torch.Generator().manual_seed(order))
        logits = GridLogits(lmax, order)(delta_coefficients(lmax, r).float())
        assert torch.equal(logits.argmax(-1), nearest_grid_index(r, order))


def test_image_feature_seen_in_pose_a_gives_logits_peaked_at_a():
    """Physical convention: a map feature h (on directions of the map) appears in the image frame as
    f(v) = h(A.T v) (r_image = A r_map). Correlating f with the filter h (S2 convolution) and
    evaluating on the grid must peak within a grid step of the pose A."""
    lmax, order = 6, 2
    conv, grid_logits = S2Conv(1, 1, lmax, filter_order=2), GridLogits(lmax, order)
    h = torch.randn((lmax + 1) ** 2, dtype=torch.float64)
    w = torch.linalg.lstsq(conv._y.double().T, h).solution
    with torch.no_grad():
        conv.weight.copy_(w.view(1, 1, -1).float())
    a = random_rotations(100, generator=torch.Generator().manual_seed(1))
    blocks = wigner_blocks(lmax, a)
    f = torch.cat([blocks[l] @ h[l * l:(l + 1) ** 2] for l in range(lmax + 1)], dim=-1)
    with torch.no_grad():
        best = grid_logits(conv(f[:, None].float())[:, 0]).argmax(-1)
    err = geodesic_distance_deg(so3_grid(order, torch.float64)[best], a)
    assert err.max() < so3_grid_resolution_deg(order)
    # the wrong direction (A.T instead of A) is far off: the test can fail
    wrong = geodesic_distance_deg(so3_grid(order, torch.float64)[best], a.transpose(-1, -2))
    assert wrong.median() > 3 * so3_grid_resolution_deg(order)


def test_tables_are_cached_on_disk():
    GridLogits(3, 1)
    assert list(cache_dir().glob("grid_logits-*.pt"))
    again = GridLogits(3, 1)  # read back with weights_only=True
    assert again._table.shape == (so3_dim(3), 2 * 48)
