"""Point groups: closure, mates, and equality as sets with RELION 3.1's own operators."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import torch

from relion_cryopares.errors import InputError
from relion_cryopares.geometry import (
    canonical_symmetry_mate,
    euler_to_matrix,
    geodesic_distance_deg,
    random_rotations,
    symmetry_mates,
    symmetry_matrices,
)

ORDERS = {
    "C1": 1, "C4": 4, "c7": 7, "Ci": 2, "Cs": 2, "C3v": 6, "C4h": 8, "S2": 2, "S4": 4, "S6": 6,
    "D1": 2, "D2": 4, "D7": 14, "D3v": 12, "D4h": 16, "T": 12, "Td": 24, "Th": 24, "O": 24,
    "Oh": 48, "C100": 100, "D50h": 200, "S10": 10, "I": 60, "I1": 60, "i2": 60, "I3": 60, "I4": 60, "Ih": 120, "I3h": 120,
}
PROPER = ["C1", "C4", "C5", "D2", "D7", "T", "O", "I", "I1", "I2", "I3", "I4"]


def _set_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest distance from an element of one set to the nearest element of the other."""
    d = torch.cdist(a.reshape(-1, 9), b.reshape(-1, 9), compute_mode="donot_use_mm_for_euclid_dist")
    return max(float(d.min(dim=1).values.max()), float(d.min(dim=0).values.max()))


@pytest.mark.parametrize("name,order", sorted(ORDERS.items()))
def test_group_order_closure_identity(name, order):
    g = symmetry_matrices(name)
    assert g.shape == (order, 3, 3) and g.dtype == torch.float64
    assert torch.equal(g[0], torch.eye(3, dtype=torch.float64))
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(g @ g.transpose(-1, -2), eye.expand_as(g), atol=1e-12)
    products = (g[:, None] @ g[None]).reshape(-1, 3, 3)
    assert _set_distance(products, g) < 1e-9  # closed under products
    assert _set_distance(g.transpose(-1, -2), g) < 1e-9  # closed under inverses
    assert torch.cdist(g.reshape(-1, 9), g.reshape(-1, 9)).add(torch.eye(order) * 9).min() > 1e-3


@pytest.mark.parametrize("name", PROPER)
def test_proper_groups_are_rotations(name):
    assert torch.allclose(torch.linalg.det(symmetry_matrices(name)), torch.tensor(1.0, dtype=torch.float64))


def test_known_axes():
    assert torch.allclose(symmetry_matrices("C4")[1:].diagonal(dim1=-2, dim2=-1)[:, 2], torch.ones(3, dtype=torch.float64))
    d2 = symmetry_matrices("D2")
    assert _set_distance(d2, torch.stack([torch.diag(torch.tensor(v, dtype=torch.float64)) for v in
                                          ([1, 1, 1], [-1, -1, 1], [1, -1, -1], [-1, 1, -1])])) < 1e-12
    assert symmetry_matrices("d7", dtype=torch.float32).dtype == torch.float32


@pytest.mark.parametrize("bad", ["X", "C0", "C", "S3", "I5", "In", "D2x", "", "Q7"])
def test_unknown_names_raise(bad):
    with pytest.raises(InputError):
        symmetry_matrices(bad)


def test_unknown_message():
    with pytest.raises(InputError, match=r"unknown symmetry group 'X' \(RELION names: C1, C<n>"):
        symmetry_matrices("X")


@pytest.mark.parametrize("name", ["C4", "D7", "O", "I3", "D3h", "Ci", "S4", "Td"])
def test_mates_give_identical_projections_of_symmetric_point_cloud(name):
    """Projection = drop z of A @ r. For a point cloud closed under the group, every mate (incl.
    diag(1,1,-1) @ A @ L for improper L) projects to the same set of xy points."""
    g = symmetry_matrices(name)
    seeds = torch.tensor([[0.3, -0.5, 0.7], [1.1, 0.2, -0.4]], dtype=torch.float64)
    cloud = (g[:, None] @ seeds[None, :, :, None]).squeeze(-1).reshape(-1, 3)  # (G * 2, 3)
    a = random_rotations(3, torch.Generator().manual_seed(0))
    mates = symmetry_mates(a, g)  # (3, G, 3, 3)
    assert mates.shape == (3, g.shape[0], 3, 3)
    assert torch.allclose(torch.linalg.det(mates), torch.ones((), dtype=torch.float64))
    ref = (a[:, None, None] @ cloud[None, None, :, :, None]).squeeze(-1)[..., :2]  # (3, 1, P, 2)
    proj = (mates[:, :, None] @ cloud[None, None, :, :, None]).squeeze(-1)[..., :2]  # (3, G, P, 2)
    d = torch.cdist(proj, ref.expand_as(proj), compute_mode="donot_use_mm_for_euclid_dist")
    assert d.amin(dim=-1).max() < 1e-9 and d.amin(dim=-2).max() < 1e-9


@pytest.mark.parametrize("name", ["C4", "D7", "I", "D3h", "Oh"])
def test_mates_at_distance_zero(name):
    g = symmetry_matrices(name)
    a = random_rotations(50, torch.Generator().manual_seed(1))
    mates = symmetry_mates(a, g)
    d = geodesic_distance_deg(a[:, None], mates, g)
    assert d.max() < 1e-5
    # Without symmetry the proper mates are at the angles of the operators (not zero).
    assert geodesic_distance_deg(a[:, None], mates)[:, 1:].min() > 1.0


@pytest.mark.parametrize("name", ["C1", "C4", "D7", "T", "O", "I2", "D3h"])
def test_canonical_mate_is_a_class_function(name):
    g = symmetry_matrices(name)
    a = random_rotations(200, torch.Generator().manual_seed(2))
    canon = canonical_symmetry_mate(a, g)
    assert canon.shape == a.shape
    assert geodesic_distance_deg(canon, a, g).max() < 1e-5  # same class
    canon_of_mates = canonical_symmetry_mate(symmetry_mates(a, g), g)  # (200, G, 3, 3)
    assert (canon_of_mates - canon[:, None]).abs().max() < 1e-9  # same representative
    # The representative is the mate closest to the identity.
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(geodesic_distance_deg(canon, eye), geodesic_distance_deg(eye.expand_as(a), a, g))


def test_canonical_mate_ties_are_deterministic():
    # Rotation by 90 deg about z in C2: both mates are 90 deg from the identity.
    g = symmetry_matrices("C2")
    a = euler_to_matrix(torch.tensor([0.0, 0.0, 90.0], dtype=torch.float64))
    mate = symmetry_mates(a, g)[1]
    assert torch.allclose(canonical_symmetry_mate(a, g), canonical_symmetry_mate(mate, g))
    # Groups with the mirror diag(1, 1, -1): A and D A D are always equally close to the identity.
    a = random_rotations(20, torch.Generator().manual_seed(3))
    d = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    for name in ("Cs", "C4h", "D2h", "Oh"):
        g = symmetry_matrices(name)
        assert torch.allclose(canonical_symmetry_mate(a, g), canonical_symmetry_mate(d @ a @ d, g))
    assert torch.allclose(canonical_symmetry_mate(a, None), a)


# ---- RELION as the peer -------------------------------------------------------------------------

_MATRIX_HEAD = re.compile(r"^\s*R\((\d+)\)=\s*$")


def relion_symmetry_ops(name: str) -> tuple[torch.Tensor, list]:
    """Parse ``relion_refine --print_symmetry_ops --sym NAME``: the ``R(i)=`` 3x3 blocks and the
    ``Euler angles: rot tilt psi`` line that follows each (absent for the identity)."""
    out = subprocess.run(
        ["relion_refine", "--print_symmetry_ops", "--sym", name],
        capture_output=True, text=True, timeout=60, check=False,
    ).stdout.splitlines()
    mats, angles = [], []
    for i, line in enumerate(out):
        if _MATRIX_HEAD.match(line):
            mats.append([[float(v) for v in out[i + k].split()] for k in (1, 2, 3)])
            nxt = out[i + 4] if i + 4 < len(out) else ""
            angles.append([float(v) for v in nxt.split(":")[1].split()] if "Euler angles" in nxt else None)
    return torch.tensor(mats, dtype=torch.float64), angles


relion = pytest.mark.skipif(shutil.which("relion_refine") is None, reason="relion_refine not on PATH")


@pytest.mark.relion
@relion
@pytest.mark.parametrize(
    "name",
    ["C1", "C4", "D2", "D7", "T", "O", "I", "I1", "I2", "I3", "I4",
     "C5", "Ci", "Cs", "C3v", "C4v", "C3h", "S4", "S6", "D3v", "D4v", "D3h", "D4h", "Td", "Th", "Oh",
     "Ih", "I1h", "I3h", "I4h"],
)
def test_equal_as_sets_to_relion(name):
    ref, _ = relion_symmetry_ops(name)
    ours = symmetry_matrices(name)
    assert ref.shape == ours.shape, f"{name}: RELION has {ref.shape[0]} operators, we have {ours.shape[0]}"
    assert _set_distance(ref, ours) < 1e-4  # RELION prints about 5 significant digits


@pytest.mark.relion
@relion
@pytest.mark.parametrize("name", ["D7", "O", "I3"])
def test_relion_euler_angles_of_its_operators(name):
    """RELION prints Euler_matrix2angles(R) for each proper operator: our euler_to_matrix must map
    those angles back to R (checks our Euler convention against the binary itself)."""
    mats, angles = relion_symmetry_ops(name)
    checked = 0
    for m, a in zip(mats, angles):
        if a is not None:
            assert (euler_to_matrix(torch.tensor(a, dtype=torch.float64)) - m).abs().max() < 1e-4
            checked += 1
    assert checked == mats.shape[0] - 1
