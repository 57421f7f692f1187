"""Local refinement: projection matching in a small neighbourhood of each particle's pose.

Around each pose, an isotropic grid of small rotations (rotation vectors, :mod:`._grid`) is scored by
whitened Fourier cross-correlation with CTF-modulated projections of a low-passed reference over
all shifts of a window (:mod:`._match`); the best pose is refined below the grid step and the
shift below a pixel (:mod:`._refine`); the peak's significance gives the particle a weight
(:mod:`._significance`). Extra starting poses come from a coarse scan of all of SO(3) whose slices
are shared by every particle (:mod:`._global`). Pure tensor code: reading STAR files and writing maps is the job's
business (``relion_cryopares.jobs.localrefine``).
"""

from ._band import Band, BandSlicer
from ._global import GlobalScan
from ._grid import LocalGrid, cube_offsets, local_rotation_grid, rotation_vector_to_matrix
from ._match import ShiftWindow, best_shift, build_bank, score_shifts
from ._memory import available_memory_bytes, bytes_per_particle, choose_batch_size
from ._peaks import parabolic_offset, quadratic_peak_3d
from ._reference import prepare_reference, to_particle_grid
from ._refine import (FINE_MODES, LocalRefiner, RefineConfig, RefineResult, coarse_shell, keep_canonical,
                      search_config)
from ._significance import correlation_map, null_zscore, particle_weight, peak_significance
from ._spectra import hermitian_weights, shell_index, whitening_weights

__all__ = [
    "Band", "BandSlicer", "FINE_MODES", "GlobalScan", "LocalGrid", "LocalRefiner", "RefineConfig", "RefineResult",
    "ShiftWindow", "available_memory_bytes", "best_shift", "build_bank", "bytes_per_particle",
    "choose_batch_size", "coarse_shell", "correlation_map", "cube_offsets", "hermitian_weights",
    "keep_canonical", "local_rotation_grid", "null_zscore", "parabolic_offset", "particle_weight",
    "peak_significance", "prepare_reference", "quadratic_peak_3d", "rotation_vector_to_matrix",
    "score_shifts", "search_config", "shell_index", "to_particle_grid", "whitening_weights",
]
