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
    """For each image of ``images`` ``(b, n, n)``: None when usable, else what is wrong with it.

    ``radius_px``: radius of the particle circle (pixels, centred at ``n // 2``); the background is
    the pixels outside it (all pixels when fewer than 16 lie outside or when None).
    """
    x = torch.as_tensor(images)
    if x.ndim != 3:
        raise ValueError(f"images must be (b, n, n), got {tuple(x.shape)}")
    x = x.to(torch.float64)
    finite = torch.isfinite(x).flatten(1).all(dim=1)
    clean = torch.where(torch.isfinite(x), x, torch.zeros_like(x))
    spread = clean.flatten(1).amax(1) - clean.flatten(1).amin(1)
    n = x.shape[-1]
    outside = torch.ones((n, n), dtype=torch.bool)
    if radius_px is not None:
        c = torch.arange(n, dtype=torch.float64) - n // 2
        ring = (c[:, None] ** 2 + c[None, :] ** 2) > float(radius_px) ** 2
        if int(ring.sum()) >= 16:
            outside = ring
    bg = clean[:, outside]
    bg_spread = bg.amax(1) - bg.amin(1)
    problems: list[str | None] = []
    for ok, s, b in zip(finite.tolist(), spread.tolist(), bg_spread.tolist()):
        if not ok:
            problems.append("non-finite pixels")
        elif not s > 0:
            problems.append("constant image")
        elif not b > 0:
            problems.append("constant background")
        else:
            problems.append(None)
    return problems


def bad_image_mask(images: torch.Tensor | np.ndarray, radius_px: float | None = None) -> np.ndarray:
    """``(b,)`` bool: True where :func:`image_problems` finds a problem."""
    return np.array([p is not None for p in image_problems(images, radius_px)], dtype=bool)
