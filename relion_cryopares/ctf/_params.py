"""CTF parameters as tensors with units, one row per particle."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass(frozen=True)
class CtfParameters:
    """Per-particle CTF parameters, each a ``(n,)`` float tensor, RELION's meaning and units.

    ``defocus_u_angstrom``/``defocus_v_angstrom`` > 0 is under focus; ``defocus_angle_deg`` is
    RELION's ``rlnDefocusAngle``; ``phase_shift_deg`` is ``rlnPhaseShift``; ``bfactor_angstrom2`` and
    ``scale`` are ``rlnCtfBfactor`` and ``rlnCtfScalefactor``; ``pixel_size_angstrom`` is the image
    pixel size of each particle's optics group.
    """

    defocus_u_angstrom: torch.Tensor
    defocus_v_angstrom: torch.Tensor
    defocus_angle_deg: torch.Tensor
    voltage_kv: torch.Tensor
    spherical_aberration_mm: torch.Tensor
    amplitude_contrast: torch.Tensor
    phase_shift_deg: torch.Tensor
    bfactor_angstrom2: torch.Tensor
    scale: torch.Tensor
    pixel_size_angstrom: torch.Tensor

    def __len__(self) -> int:
        return int(self.defocus_u_angstrom.shape[0])

    def select(self, index: torch.Tensor | slice) -> "CtfParameters":
        """The parameters of a subset of particles."""
        return CtfParameters(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def to(self, device: torch.device | str) -> "CtfParameters":
        return CtfParameters(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    @staticmethod
    def constant(n: int, **values: float) -> "CtfParameters":
        """``n`` identical rows; unspecified fields take RELION's defaults (no phase shift, B 0, scale 1)."""
        defaults = dict(defocus_angle_deg=0.0, phase_shift_deg=0.0, bfactor_angstrom2=0.0, scale=1.0,
                        voltage_kv=300.0, spherical_aberration_mm=2.7, amplitude_contrast=0.1)
        defaults.update(values)
        if "defocus_v_angstrom" not in defaults:
            defaults["defocus_v_angstrom"] = defaults["defocus_u_angstrom"]
        return CtfParameters(**{f.name: torch.full((n,), float(defaults[f.name]), dtype=torch.float64)
                                for f in fields(CtfParameters)})
