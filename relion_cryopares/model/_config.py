"""The network's hyper-parameters: one frozen dataclass, written as JSON next to the weights."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from relion_cryopares._configdict import config_from_dict, config_to_dict
from relion_cryopares.errors import InputError


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of :class:`~relion_cryopares.model.PoseModel` (Image2Sphere as in cryoPARES).

    Image and encoder
        ``box``: side in pixels of the network input (after preprocessing; paper 160 at 1.5 Å/px).
        ``in_channels``: input channels (2 images x 4 Gaussian filters = 8).
        ``unet_widths``: channels of the 5 encoder blocks (each followed by 2x max-pooling); the
        bottleneck has twice the last width; ``unet_decoder_blocks`` decoder blocks (upsample, skip
        concatenation, 2 convolutions) follow, so the feature map has side
        ``box / 2**(len(unet_widths) - unet_decoder_blocks)``.
        ``unet_kernel_size``; ``unet_norm`` "batch" or "group".

    Image to sphere
        ``sphere_channels``: feature channels sampled on the hemisphere (1x1 convolution first).
        ``sphere_order``: HEALPix order of the fixed hemisphere points (upper half of 12*4**order).
        ``sphere_coverage``: the equator maps to this fraction of the feature map's half-width.
        ``sphere_taper_deg``: point weights fall linearly from 1 at this polar angle to 0 at 90°.
        ``sphere_blur_px``: sigma of a fixed Gaussian blur of the feature map before bilinear
        sampling (0: none), in feature-map pixels.
        ``s2_channels``: channels of the S2 signal after a per-degree linear mix.
        ``lmax``: maximum degree of spherical harmonics and Wigner-D coefficients.

    Group convolutions
        ``s2_filter_order`` / ``s2_filter_max_beta_deg``: the S2 filter lives on the HEALPix pixels of
        that order within that angle of the north pole (+z, the viewing axis); 180 = global support
        (Image2Sphere's and cryoPARES's choice).
        ``so3_channels``: channels of the hidden SO(3) signal.
        ``activation_resolution``: SO(3) grid of the pointwise ReLU (e3nn's ``SO3Activation``
        resolution: 2r betas x 4r alphas x 4r gammas).
        ``so3_filter_max_deg`` / ``so3_filter_steps``: the SO(3) filter lives on rotations
        ``exp(v)``, ``v`` on a cubic grid of ``steps**3`` axis-angle vectors, kept within that angle.

    Output
        ``grid_order``: HEALPix SO(3) grid of the logits (``72 * 8**order`` rotations).
    """

    box: int = 160
    in_channels: int = 8
    unet_widths: tuple[int, ...] = (16, 32, 64, 128, 256)
    unet_decoder_blocks: int = 4
    unet_kernel_size: int = 5
    unet_norm: str = "batch"
    sphere_channels: int = 128
    sphere_order: int = 3
    sphere_coverage: float = 0.9
    sphere_taper_deg: float = 75.0
    sphere_blur_px: float = 2.0
    s2_channels: int = 128
    lmax: int = 12
    s2_filter_order: int = 3
    s2_filter_max_beta_deg: float = 180.0
    so3_channels: int = 16
    activation_resolution: int = 10
    so3_filter_max_deg: float = 15.0
    so3_filter_steps: int = 7
    grid_order: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "unet_widths", tuple(int(w) for w in self.unet_widths))
        problems = []
        if self.box < 2 ** len(self.unet_widths):
            problems.append(f"box {self.box} is too small for {len(self.unet_widths)} poolings")
        if not 0 <= self.unet_decoder_blocks <= len(self.unet_widths):
            problems.append("unet_decoder_blocks must be in [0, len(unet_widths)]")
        if self.unet_norm not in ("batch", "group"):
            problems.append(f"unet_norm must be 'batch' or 'group', got {self.unet_norm!r}")
        if self.lmax < 1:
            problems.append("lmax must be >= 1")
        if self.grid_order < 0 or self.sphere_order < 1 or self.s2_filter_order < 0:
            problems.append("HEALPix orders must be >= 0 (sphere_order >= 1)")
        if not 0 < self.sphere_taper_deg <= 90 or not 0 < self.sphere_coverage <= 1:
            problems.append("sphere_taper_deg must be in (0, 90], sphere_coverage in (0, 1]")
        if self.activation_resolution < 1 or self.so3_filter_steps < 1:
            problems.append("activation_resolution and so3_filter_steps must be >= 1")
        if problems:
            raise InputError("invalid model configuration: " + "; ".join(problems))

    @property
    def n_rotations(self) -> int:
        """Number of output rotations, ``72 * 8**grid_order``."""
        return 72 * 8 ** self.grid_order

    @property
    def feature_map_size(self) -> int:
        """Side of the encoder's feature map in pixels."""
        size = self.box
        for _ in self.unet_widths:
            size //= 2
        for _ in range(self.unet_decoder_blocks):
            size *= 2
        return size

    @staticmethod
    def preset(name: str, **overrides) -> "ModelConfig":
        """A named configuration: ``"paper"`` (cryoPARES sizes) or ``"tiny"`` (tests, CPU demos)."""
        if name not in _PRESETS:
            raise InputError(f"unknown model preset {name!r}; known: {sorted(_PRESETS)}")
        return dataclasses.replace(_PRESETS[name], **overrides)

    def to_dict(self) -> dict:
        """A JSON-ready dict (tuples become lists)."""
        return config_to_dict(self)

    @staticmethod
    def from_dict(d: dict) -> "ModelConfig":
        return config_from_dict(ModelConfig, d, "model")

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @staticmethod
    def from_json(path: str | Path) -> "ModelConfig":
        try:
            return ModelConfig.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read model configuration: {exc}", path) from exc


_PRESETS = {
    "paper": ModelConfig(),
    "tiny": ModelConfig(
        box=64,
        unet_widths=(4, 8, 16, 32, 64),
        unet_decoder_blocks=3,
        unet_kernel_size=3,
        sphere_channels=16,
        sphere_order=2,
        sphere_blur_px=0.5,
        s2_channels=16,
        lmax=6,
        s2_filter_order=1,
        so3_channels=8,
        activation_resolution=6,
        so3_filter_max_deg=20.0,
        so3_filter_steps=5,
        grid_order=2,
    ),
}
