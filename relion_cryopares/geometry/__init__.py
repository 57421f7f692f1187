"""Geometry: RELION Euler angles, pose matrices, point groups, HEALPix SO(3) grids, distances.

All matrices are pose matrices in the convention of :mod:`relion_cryopares.conventions`
(``A == RELION's Euler_angles2matrix(rot, tilt, psi)``, xyz column vectors, map -> image frame).
Functions are pure tensor functions; device and dtype follow the inputs.
"""

from relion_cryopares.geometry._distances import geodesic_distance_deg, rotation_angle_deg
from relion_cryopares.geometry._euler import euler_to_matrix, matrix_to_euler, to_fourier_slice
from relion_cryopares.geometry._healpix import (
    cone_neighbours,
    n_cones,
    nearest_grid_index,
    so3_grid,
    so3_grid_angles,
    so3_grid_neighbours,
    so3_grid_resolution_deg,
    so3_grid_size,
    viewing_direction_cone,
)
from relion_cryopares.geometry._rotations import axis_angle_to_matrix, random_rotations
from relion_cryopares.geometry._symmetry import (
    canonical_symmetry_mate,
    symmetry_mates,
    symmetry_matrices,
)

__all__ = [
    "axis_angle_to_matrix",
    "canonical_symmetry_mate",
    "cone_neighbours",
    "euler_to_matrix",
    "geodesic_distance_deg",
    "matrix_to_euler",
    "n_cones",
    "nearest_grid_index",
    "random_rotations",
    "rotation_angle_deg",
    "so3_grid",
    "so3_grid_angles",
    "so3_grid_neighbours",
    "so3_grid_resolution_deg",
    "so3_grid_size",
    "symmetry_mates",
    "symmetry_matrices",
    "to_fourier_slice",
    "viewing_direction_cone",
]
