"""How many particles to refine at once: bytes per particle x rotation, and the budget.

Working memory of one particle is dominated by its candidate projections: for each of the ``R``
coarse rotations, ``m_c`` sampled Fourier points, each costing about 12 floats in flight
(coordinates, interpolation, real and imaginary parts, scores' operands), plus ``S`` shift scores;
then 27 fine and one final pose over the full band of ``m`` points, and the particle's shift bank
(``2 S m`` floats) and images. On a GPU the batch fills a fraction of free memory; on a CPU smaller
batches are faster (the working set stays in cache), so the budget there is capped.
"""

from __future__ import annotations

import os

import torch

#: float32 values in flight per sampled Fourier point and candidate pose (measured from the peak resident
#: memory of batches at ±6°/2° and ±10°/2°, box 64: ~11 per coarse point; the estimate stays above it).
FLOATS_PER_POINT = 12
#: CPU working-set target per batch (bytes): larger batches only spill the caches.
CPU_BUDGET_BYTES = 96 * 2 ** 20
#: fraction of free GPU memory a batch may use.
GPU_FRACTION = 0.4


def bytes_per_particle(n_rotations: int, coarse_points: int, band_points: int, n_shifts: int,
                       box: int, n_fine: int = 27) -> int:
    """Estimated peak working memory (bytes) of refining one particle."""
    per_candidate_coarse = 4 * (FLOATS_PER_POINT * coarse_points + 3 * n_shifts)
    per_candidate_full = 4 * (FLOATS_PER_POINT * band_points + 3 * n_shifts)
    bank = 4 * 2 * n_shifts * band_points
    images = 4 * box * box * 12
    return n_rotations * per_candidate_coarse + (n_fine + 1) * per_candidate_full + bank + images


def available_memory_bytes(device: torch.device) -> int:
    """Free memory of the device (GPU) or ``MemAvailable`` (CPU, Linux; 2 GiB if unknown)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 2 * 2 ** 30 if os.name != "nt" else 2 * 2 ** 30


def choose_batch_size(per_particle_bytes: int, device: torch.device, maximum: int = 4096) -> int:
    """Particles per batch: the device's budget divided by the per-particle bytes, in ``[1, maximum]``."""
    if device.type == "cuda":
        budget = GPU_FRACTION * available_memory_bytes(device)
    else:
        budget = min(CPU_BUDGET_BYTES, 0.25 * available_memory_bytes(device))
    return int(max(1, min(maximum, budget // max(per_particle_bytes, 1))))
