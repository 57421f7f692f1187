"""Which particle images cannot be used: the ``bad_image`` rejection reason of every job.

A bad image is rejected with a reason and the job goes on (one bad particle never ends a job):

- ``non-finite pixels``: any NaN or +-Inf pixel (a corrupt stack, a failed motion correction);
- ``constant image``: every pixel has the same value (an empty extraction, a zero-filled box);
- ``constant background``: the pixels outside the particle circle (or, where the circle fills the
  box, all pixels) have zero spread, so the background normalisation of the network input and the
  whitening of the local refinement are undefined.

A strip of zeros at a micrograph edge is *not* bad: the rest of the background still has a spread.
"""

from __future__ import annotations

import numpy as np
import torch

#: The reason every job writes for these particles (``rlnCryoparesRejectReason``).
BAD_IMAGE = "bad_image"


def image_problems(images: torch.Tensor | np.ndarray, radius_px: float | None = None) -> list[str | None]:
    """For each image of ``images`` ``(b, h, w)``: None when usable, else what is wrong with it.

    ``radius_px``: radius of the particle circle (pixels, centred at ``(h // 2, w // 2)``); the background is
    the pixels outside it (all pixels when fewer than 16 lie outside or when None).
    """
    x = torch.as_tensor(images)
    if x.ndim != 3:
        raise ValueError(f"images must be (b, h, w), got {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.to(torch.float32)
    if x.shape[0] == 0:
        return []
    flat = x.reshape(x.shape[0], -1)  # no float64 copy: a batch of large boxes stays cheap
    finite = torch.isfinite(flat).all(dim=1)
    spread = flat.amax(1) > flat.amin(1)  # NaN rows compare False but are reported as non-finite
    h, w = x.shape[-2:]
    outside = torch.ones((h, w), dtype=torch.bool, device=x.device)
    if radius_px is not None:
        cy = torch.arange(h, dtype=torch.float64, device=x.device) - h // 2
        cx = torch.arange(w, dtype=torch.float64, device=x.device) - w // 2
        ring = (cy[:, None] ** 2 + cx[None, :] ** 2) > float(radius_px) ** 2
        if int(ring.sum()) >= 16:
            outside = ring
    bg = x[:, outside] if not bool(outside.all()) else flat
    bg_spread = bg.amax(1) > bg.amin(1)
    problems: list[str | None] = []
    for ok, s, b in zip(finite.tolist(), spread.tolist(), bg_spread.tolist()):
        if not ok:
            problems.append("non-finite pixels")
        elif not s:
            problems.append("constant image")
        elif not b:
            problems.append("constant background")
        else:
            problems.append(None)
    return problems


def bad_image_mask(images: torch.Tensor | np.ndarray, radius_px: float | None = None) -> np.ndarray:
    """``(b,)`` bool: True where :func:`image_problems` finds a problem."""
    return np.array([p is not None for p in image_problems(images, radius_px)], dtype=bool)
