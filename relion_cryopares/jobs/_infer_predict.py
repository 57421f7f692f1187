"""One half model at inference: prepared channels -> poses, probabilities, pruning scores, z-scores.

The network estimates orientations only: shifts (``rlnOriginXAngst/YAngst``) are the input's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from relion_cryopares.data import finish_channels
from relion_cryopares.geometry import canonical_symmetry_mate, matrix_to_euler
from relion_cryopares.jobs._modeldir import HalfModel
from relion_cryopares.model import predict_poses

#: Arrays of one prediction (one row per particle); ``topk_*`` hold ranks 2..top_k.
RESULT_FIELDS = ("angles_deg", "probability", "score", "zscore", "topk_angles_deg", "topk_probs")
#: Stored with every result: what is wrong with the particle's image (``""``: usable). A bad image
#: has no prediction: its fields are zeros (:meth:`HalfPredictor.predict_usable`).
IMAGE_PROBLEM = "image_problem"


@dataclass
class HalfPredictor:
    """A half model on ``device`` with its symmetry (``(G, 3, 3)`` or None) and ``top_k``."""

    half_model: HalfModel
    symmetry: torch.Tensor | None
    device: torch.device
    top_k: int = 1

    def __post_init__(self) -> None:
        self.model = self.half_model.model.to(self.device).eval()
        self._sym_device = None if self.symmetry is None else self.symmetry.to(self.device)

    @torch.inference_mode()
    def predict(self, channels: torch.Tensor) -> dict[str, np.ndarray]:
        """``channels`` ``(b, 2, box, box)`` (from :func:`prepare_channels`) -> numpy arrays
        (:data:`RESULT_FIELDS`): ``angles_deg`` ``(b, 3)`` float64 RELION Euler angles;
        ``probability``, ``score`` and ``zscore`` ``(b,)`` float32; ``topk_angles_deg``
        ``(b, top_k - 1, 3)`` and ``topk_probs`` ``(b, top_k - 1)`` for the ranks 2..top_k."""
        x = channels.to(self.device, non_blocking=True)
        x = finish_channels(x, self.half_model.preprocess)
        logits = self.model(x)
        pred = predict_poses(logits, self._sym_device, k=max(self.top_k, 1))
        matrices = pred.matrices.double().cpu()
        zscore = self.half_model.normaliser.zscore(pred.score.cpu(), matrices)
        b = matrices.shape[0]
        out = {"angles_deg": matrix_to_euler(matrices).numpy().astype(np.float64),
               "probability": pred.probability.float().cpu().numpy(),
               "score": pred.score.float().cpu().numpy(),
               "zscore": zscore.float().cpu().numpy(),
               "topk_angles_deg": np.zeros((b, self.top_k - 1, 3)),
               "topk_probs": np.zeros((b, self.top_k - 1), dtype=np.float32)}
        if self.top_k > 1:
            top = pred.topk_matrices[:, 1:self.top_k].double().cpu()
            if self.symmetry is not None and self.symmetry.shape[0] > 1:
                top = canonical_symmetry_mate(top, self.symmetry.double())
            k = top.shape[1]
            out["topk_angles_deg"][:, :k] = matrix_to_euler(top.reshape(-1, 3, 3)).reshape(b, k, 3).numpy()
            out["topk_probs"][:, :k] = pred.topk_probs[:, 1:self.top_k].float().cpu().numpy()
        return out

    def predict_usable(self, channels: torch.Tensor, problems: list[str]) -> dict[str, np.ndarray]:
        """:meth:`predict` on the particles whose ``problems[i]`` is ``""`` only; the others (bad
        images) get :func:`blank_results`. Adds :data:`IMAGE_PROBLEM` (``(b,)`` str)."""
        bad = np.array([bool(p) for p in problems], dtype=bool)
        if not bad.any():
            out = self.predict(channels)
        else:
            out = blank_results(len(bad), self.top_k)
            if not bad.all():
                good = np.flatnonzero(~bad)
                for key, values in self.predict(channels[torch.from_numpy(good)]).items():
                    out[key][good] = values
        out[IMAGE_PROBLEM] = np.asarray([str(p) for p in problems], dtype=str)
        return out


def blank_results(n: int, top_k: int) -> dict[str, np.ndarray]:
    """Zeros in the shapes and dtypes of :meth:`HalfPredictor.predict` for ``n`` particles."""
    k = max(top_k - 1, 0)
    return {"angles_deg": np.zeros((n, 3)), "probability": np.zeros(n, np.float32),
            "score": np.zeros(n, np.float32), "zscore": np.zeros(n, np.float32),
            "topk_angles_deg": np.zeros((n, k, 3)), "topk_probs": np.zeros((n, k), np.float32)}


def concat_results(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Row-wise concatenation of prediction dicts (same keys)."""
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
