"""The image encoder: a U-Net (5 encoder blocks, a bottleneck, up to 5 decoder blocks)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


class ConvBlock(nn.Sequential):
    """Two ``conv (no bias) -> norm -> ReLU`` layers, "same" padding."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, norm: str) -> None:
        layers = []
        for c in (c_in, c_out):
            layers += [nn.Conv2d(c, c_out, kernel_size, padding=kernel_size // 2, bias=False),
                       _norm(norm, c_out), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class UNet(nn.Module):
    """``(B, in_channels, h, w)`` -> ``(B, out_channels, h', w')``.

    Encoder block ``i`` (width ``widths[i]``) is followed by 2x max-pooling; the bottleneck has
    ``2 * widths[-1]`` channels; decoder block ``j`` upsamples bilinearly to the size of skip
    connection ``-1 - j`` (any image size works), concatenates it and applies a :class:`ConvBlock`
    of that skip's width. With ``d`` decoder blocks, ``h' = h / 2**(len(widths) - d)``.
    """

    def __init__(self, in_channels: int, widths: tuple[int, ...], decoder_blocks: int,
                 kernel_size: int = 3, norm: str = "batch") -> None:
        super().__init__()
        self.encoders = nn.ModuleList()
        c = in_channels
        for w in widths:
            self.encoders.append(ConvBlock(c, w, kernel_size, norm))
            c = w
        self.bottleneck = ConvBlock(c, 2 * c, kernel_size, norm)
        c = 2 * c
        self.decoders = nn.ModuleList()
        for w in list(reversed(widths))[:decoder_blocks]:
            self.decoders.append(ConvBlock(c + w, w, kernel_size, norm))
            c = w
        self.out_channels = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.encoders:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        for block, skip in zip(self.decoders, reversed(skips)):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([skip, x], dim=1))
        return x
