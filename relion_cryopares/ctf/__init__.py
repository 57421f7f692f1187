"""CTF: RELION parameters -> CTF images (torch-ctf), phase flipping."""

from ._ctf import compute_ctf, phase_flip
from ._params import CtfParameters

__all__ = ["CtfParameters", "compute_ctf", "phase_flip"]
