"""Pruning: directional normalisation of the network's confidence and automatic thresholds.

:class:`DirectionalNormaliser` turns pruning scores (``PosePrediction.score``) into robust z-scores
per viewing-direction cone, fitted on the validation particles of a trained model; a particle with
``z < threshold`` is junk. :func:`threshold_from_junk` (known junk particles) or
:func:`threshold_from_validation` (none given) choose the threshold, :func:`auroc` measures the
separation. :func:`refinement_threshold` is the second stage's: a threshold on the local refinement's
z-score, fitted on the refined particles.
"""

from relion_cryopares.pruning._normaliser import MAD_SCALE, DirectionalNormaliser
from relion_cryopares.pruning._refinement import RefineThreshold, modal_zscore, noise_floor, refinement_threshold
from relion_cryopares.pruning._thresholds import auroc, network_threshold, parse_threshold_choice, threshold_from_junk, threshold_from_validation

__all__ = ["MAD_SCALE", "DirectionalNormaliser", "RefineThreshold", "modal_zscore", "noise_floor", "refinement_threshold", "auroc", "network_threshold", "parse_threshold_choice", "threshold_from_junk", "threshold_from_validation"]
