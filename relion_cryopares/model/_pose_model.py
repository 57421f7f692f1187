"""The pose network: U-Net -> hemisphere -> S2 conv -> SO(3) ReLU -> SO(3) conv -> grid logits."""

from __future__ import annotations

import torch
from torch import nn

from ._activation import SO3Activation
from ._config import ModelConfig
from ._convs import S2Conv, SO3Conv
from ._encoder import UNet
from ._grid_logits import GridLogits
from ._image_to_sphere import ImageToSphere


class PoseModel(nn.Module):
    """Image2Sphere as in cryoPARES: ``(B, in_channels, box, box)`` images -> ``(B, N)`` logits over
    the HEALPix SO(3) grid of ``config.grid_order`` (index ``pix * n_psi + k``, the rotations of
    :func:`relion_cryopares.geometry.so3_grid`, RELION pose convention).

    The ``state_dict`` holds only learned parameters and normalisation statistics; every fixed
    table is a non-persistent buffer rebuilt from ``config`` (or read from the on-disk cache).
    ``build_tables=False`` skips the two slow tables (SO(3) activation grid, output grid): such a
    skeleton has the full ``state_dict`` but cannot run ``forward``.
    """

    def __init__(self, config: ModelConfig, build_tables: bool = True) -> None:
        super().__init__()
        self.config = config
        c = config
        self.encoder = UNet(c.in_channels, c.unet_widths, c.unet_decoder_blocks,
                            c.unet_kernel_size, c.unet_norm)
        self.image_to_sphere = ImageToSphere(
            self.encoder.out_channels, c.sphere_channels, c.s2_channels, c.lmax, c.sphere_order,
            c.sphere_coverage, c.sphere_taper_deg, c.sphere_blur_px)
        self.s2_conv = S2Conv(c.s2_channels, c.so3_channels, c.lmax, c.s2_filter_order,
                              c.s2_filter_max_beta_deg)
        self.so3_conv = SO3Conv(c.so3_channels, 1, c.lmax, c.so3_filter_max_deg, c.so3_filter_steps)
        self.activation = SO3Activation(c.lmax, c.activation_resolution) if build_tables else None
        self.grid_logits = GridLogits(c.lmax, c.grid_order) if build_tables else None

    @property
    def n_rotations(self) -> int:
        return self.config.n_rotations

    def wigner_coefficients(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, box, box)`` -> ``(B, dim)`` Wigner coefficients of the output signal
        (flat layout of :mod:`relion_cryopares.model._so3_fourier`)."""
        if self.activation is None:
            raise RuntimeError("this PoseModel was built with build_tables=False")
        x = self.encoder(images)
        x = self.image_to_sphere(x)
        x = self.s2_conv(x)
        x = self.activation(x)
        x = self.so3_conv(x)
        return x[:, 0]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, box, box)`` -> ``(B, N)`` logits on the SO(3) grid."""
        if self.grid_logits is None:
            raise RuntimeError("this PoseModel was built with build_tables=False")
        return self.grid_logits(self.wigner_coefficients(images))


def state_dict_bytes(model: nn.Module) -> int:
    """Bytes of the tensors of ``model.state_dict()`` (what :func:`save_model` writes)."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())
