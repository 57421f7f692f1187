"""Data layer: STAR/MRC I/O, particle stacks, optics groups, half sets (see DESIGN.md).

``rln*`` names and DataFrames stay inside :class:`ParticleStar`; its methods return arrays and
tensors with units in their names.
"""

from relion_cryopares.data._star import OpticsGroup, ParticleStar
from relion_cryopares.data._star_io import read_particle_star, write_particle_star
from relion_cryopares.data._stacks import ImageStackReader, parse_image_name, stack_shape, write_stack
from relion_cryopares.data._volumes import read_volume, write_volume
from relion_cryopares.data._halfsets import assign_random_subsets, ensure_random_subsets

__all__ = [
    "OpticsGroup", "ParticleStar", "read_particle_star", "write_particle_star",
    "ImageStackReader", "parse_image_name", "stack_shape", "write_stack",
    "read_volume", "write_volume",
    "assign_random_subsets", "ensure_random_subsets",
]

from relion_cryopares.data._simulate import (SimulationConfig, gaussian_blob_map, optics_table,
                                             random_blob_map, simulate_junk, simulate_junk_variety,
                                             simulate_particles, uniform_random_angles, with_ligand)

__all__ += ["SimulationConfig", "gaussian_blob_map", "optics_table", "random_blob_map",
            "simulate_junk", "simulate_junk_variety", "simulate_particles", "uniform_random_angles",
            "with_ligand"]

from relion_cryopares.data._preprocess import (PreprocessConfig, circular_mask, finish_channels,
                                               prepare_channels, preprocess_particles)

__all__ += ["PreprocessConfig", "circular_mask", "finish_channels", "prepare_channels",
            "preprocess_particles"]

from relion_cryopares.data._datasets import (BatchIndexSampler, ParticleDataset, SimulatedParticleDataset,
                                             particle_weights, pose_matrices)

__all__ += ["BatchIndexSampler", "ParticleDataset", "SimulatedParticleDataset", "particle_weights",
            "pose_matrices"]

from relion_cryopares.data._quality import BAD_IMAGE, bad_image_mask, image_problems

__all__ += ["BAD_IMAGE", "bad_image_mask", "image_problems"]

from relion_cryopares.data._stack_check import check_image_indices

__all__ += ["check_image_indices"]

from relion_cryopares.data._extraction import (JUNK_KINDS, ExtractionConfig, detector_filters,
                                               particle_diameter_angstrom, simulate_extraction)

__all__ += ["JUNK_KINDS", "ExtractionConfig", "detector_filters", "particle_diameter_angstrom",
            "simulate_extraction"]
