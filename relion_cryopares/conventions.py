"""The conventions of relion-cryopares, on one page.

Every module follows these; tests check them against RELION 3.1.3 itself.

Euler angles
    RELION's ZYZ angles ``(rot, tilt, psi)`` in **degrees** (``rlnAngleRot``, ``rlnAngleTilt``,
    ``rlnAnglePsi``). Tensors of angles have shape ``(..., 3)`` in that order.

Rotation matrices
    A "pose matrix" ``A`` is exactly RELION's ``Euler_angles2matrix(rot, tilt, psi)``: it acts on
    **xyz column vectors** and maps coordinates of the reference map into the frame of the particle
    image::

        r_image = A @ r_map,    projection(x, y) = integral over z of V(A.T @ (x, y, z))

    ``A == eulerangles.euler2matrix(angles, axes="zyz", intrinsic=True,
    right_handed_rotation=True).T``. torch-fourier-slice samples the map at ``R @ (x, y, 0)``, so the
    matrix passed to it is ``A.T`` (see :func:`relion_cryopares.geometry.to_fourier_slice`).
    Composition: a rotation ``Q`` applied to the map before projecting gives the pose ``A @ Q``.

Symmetry
    A symmetry operator ``L`` (RELION's ``--print_symmetry_ops`` matrices) maps the map onto itself;
    the poses ``A @ L`` for all ``L`` in the group give identical projections, and are the
    "symmetry mates" of ``A``. Geodesic distances with symmetry are ``min over L`` of
    ``angle(A1.T @ A2 @ L)``.

Shifts
    ``rlnOriginXAngst/YAngst`` in Å (RELION 3.1+). The particle centre sits at image centre **minus**
    the origin (RELION re-centres an extraction at ``rlnCoordinateX - rlnOriginX``;
    ``relion_project`` shifts projections by ``-origin``, checked in the tests): a simulated
    particle is the projection shifted by ``-origin``; reconstruction and refinement shift the image
    by ``+origin`` to centre it. Internally shifts are ``(..., 2)`` tensors ordered ``(x, y)`` and
    named ``*_angstrom`` or ``*_px``.

Arrays and Fourier layout
    Images are ``(..., h, w)`` = ``(..., y, x)``; volumes ``(d, h, w)`` = ``(z, y, x)`` as mrcfile
    reads them. The image centre is pixel ``(h // 2, w // 2)`` (RELION's and torch-fourier-slice's).
    Fourier transforms are ``torch.fft.rfftn`` over the last 2/3 axes, after ``ifftshift`` of real
    space so the centre pixel is the origin; "fftshifted rfft" means ``fftshift`` over all but the
    last (half) axis, as torch-fourier-slice uses. Frequencies are in cycles/pixel (``fftfreq``,
    Nyquist = 0.5) unless named ``*_per_angstrom``.

CTF
    RELION's sign: ``CTF = -sin(chi)`` with the amplitude-contrast phase, positive at low frequency
    for ``rlnDefocusU/V`` > 0 (under focus). Defocus in Å at the I/O edge; torch-ctf takes µm.

Units
    Physical quantities carry their unit in their name: ``pixel_size_angstrom``,
    ``defocus_u_angstrom``, ``voltage_kv``, ``spherical_aberration_mm``, ``phase_shift_deg``,
    ``bfactor_angstrom2``, ``diameter_angstrom``.
"""

#: RELION's ``rlnRandomSubset`` values for the two gold-standard half sets.
HALF_SETS = (1, 2)

#: Fixed seed for assigning half sets where a STAR file has none.
HALF_SET_SEED = 20250304
