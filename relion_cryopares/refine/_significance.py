"""How significant a particle's correlation peak is: the weight's second factor.

Model (documented choice, measured in tests/refine/test_significance.py). Under the hypothesis
"no particle here", each score of the search (a pose and a shift) is normal with the mean and
standard deviation that the same correlation map has **far from the searched shifts** (an
empirical null, measured per particle on the final pose's full correlation map, outside a disc of
``shift range + 3`` px). With ``z = (max - mean_null) / std_null`` and ``N`` hypotheses searched
(grid poses x allowed shifts), the chance that noise alone stays below the observed maximum is

    significance = Phi(z) ** N

close to 1 for a real peak and close to 0 for the maximum of pure noise (simulations, box 64,
SNR 0.1: particles z 10-20, significance 1.000; pure-noise images z ~2.6, 2 % above 0.5). The null
needs a stationary correlation map: the z-score is therefore measured on the unmasked image even
where the search masks it (a circular mask made 34 % of noise images "significant"); its peak is
then the highest score of the unmasked map within the shift range. The scores of the rotation
grid itself are no reference: for a real particle they form one smooth bump over the ±range ball,
whose ``(max - mean) / std`` is about 2 whatever the SNR (simulations: 1.9 for particles at SNR 0.1
and 2.3 for pure noise), so ``Phi(z) ** N`` over the grid alone cannot tell particles from junk.

A particle's weight is its significance. DESIGN.md (after the paper) combined it with the network's
probability; measured on the realistic simulated extraction, after both pruning stages that factor
only down-weighted good particles (the tiny network's probability is poorly calibrated, and for a
particle refined from a global-scan start it is the probability of a wrong pose): FSC 0.143 21.24 Å
with it, 20.85 Å without (the same particles at their true poses: 20.95 Å).
"""

from __future__ import annotations

import torch

from relion_cryopares.fourier import irfft2_centred


def correlation_map(band, bank, proj_re: torch.Tensor, proj_im: torch.Tensor) -> torch.Tensor:
    """``(b, n, n)`` scores of one pose per particle (projections ``(b, m)``) at every shift of the
    box, the shift ``d`` at pixel ``(n//2 + d_y, n//2 + d_x)``: the scores of
    :func:`~._match.score_shifts` extended to the whole box by one inverse FFT."""
    n = band.size
    template = torch.complex(proj_re, proj_im)
    norm = ((proj_re ** 2 + proj_im ** 2) * bank.ctf2w).sum(-1).clamp(min=1e-30).sqrt()
    # bank.base carries the multiplicity (1 or 2) of each rfft point: undo it for the inverse rfft
    cross = torch.conj(template) * bank.base / band.multiplicity
    return irfft2_centred(band.dense(cross), n) * (n * n) / norm[:, None, None]


def null_zscore(band, bank, proj_re: torch.Tensor, proj_im: torch.Tensor, peak: torch.Tensor | None,
                radius_px: float, min_pixels: int = 64) -> torch.Tensor:
    """``(b,)`` ``(peak - mean) / std`` with mean and std of the correlation map of one pose per
    particle (projections ``(b, m)``) over the shifts farther than ``radius_px + 3`` from the centre.
    ``peak`` None: the map's maximum over the shifts within ``radius_px + 0.5``.

    Where fewer than ``min_pixels`` shifts are that far, the analytic null is used (mean 0 and std
    ``1 / sqrt(number of real Fourier coefficients)``, exact for whitened noise)."""
    n = band.size
    cc = correlation_map(band, bank, proj_re, proj_im)
    c = n // 2
    r = torch.arange(n, device=cc.device) - c
    d2 = r[:, None] ** 2 + r[None, :] ** 2
    far = d2 > (radius_px + 3.0) ** 2
    if peak is None:
        peak = cc[:, d2 <= (radius_px + 0.5) ** 2].amax(-1)
    if int(far.sum()) >= min_pixels:
        vals = cc[:, far]
        mean, std = vals.mean(-1), vals.std(-1)
    else:
        mean = torch.zeros_like(peak)
        std = torch.full_like(peak, float(band.multiplicity.sum()) ** -0.5)
    return (peak - mean) / std.clamp(min=1e-12)


def peak_significance(z: torch.Tensor, n_hypotheses: int) -> torch.Tensor:
    """``Phi(z) ** n_hypotheses`` computed in log space (float64, no underflow), ``(b,)``."""
    log_phi = torch.special.log_ndtr(z.to(torch.float64))
    return torch.exp(max(int(n_hypotheses), 1) * log_phi).to(z.dtype)


def particle_weight(significance: torch.Tensor) -> torch.Tensor:
    """Reconstruction weight ``(b,)``: the significance, clamped to ``[0, 1]`` (module docstring)."""
    return significance.clamp(0, 1)
