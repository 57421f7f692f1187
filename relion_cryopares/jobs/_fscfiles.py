"""``run_fsc.star`` and ``fsc.png``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from relion_cryopares.fourier import shell_resolution_angstrom
from relion_cryopares.relion import atomic_write


def write_fsc_star(path: Path, result, grid) -> None:
    """FSC curve (``data_fsc``) and resolutions (``data_general``), RELION labels."""
    res = shell_resolution_angstrom(grid.box, grid.pixel_size_angstrom)
    lines = ["", "# version 30001", "", "data_general", "",
             f"_rlnFinalResolution {result.resolution_0143_angstrom:.4f}",
             f"_rlnCryoparesResolutionFsc05 {result.resolution_05_angstrom:.4f}",
             f"_rlnCryoparesParticlesHalf1 {result.n_particles[0]:.1f}",
             f"_rlnCryoparesParticlesHalf2 {result.n_particles[1]:.1f}",
             "", "", "# version 30001", "", "data_fsc", "", "loop_",
             "_rlnSpectralIndex #1", "_rlnResolution #2", "_rlnAngstromResolution #3",
             "_rlnFourierShellCorrelation #4"]
    for k, (r, f) in enumerate(zip(res, result.fsc)):
        inv = 0.0 if k == 0 else 1.0 / r
        ang = 999.0 if k == 0 else r
        lines.append(f"{k:6d} {inv:12.6f} {ang:12.4f} {f:12.6f}")
    with atomic_write(path) as fh:
        fh.write("\n".join(lines) + "\n\n")


def write_fsc_plot(path: Path, result, grid) -> None:
    """FSC against resolution with the 0.143 and 0.5 thresholds marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = np.arange(len(result.fsc)) / (grid.box * grid.pixel_size_angstrom)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(k, result.fsc, lw=2, label="half-map FSC")
    ax.axhline(0.143, color="r", ls="--", lw=1, label="0.143")
    ax.axhline(0.5, color="gray", ls=":", lw=1, label="0.5")
    ax.set_xlabel("resolution (1/Å)")
    ax.set_ylabel("FSC")
    ax.set_ylim(-0.1, 1.05)
    ax.set_title(f"FSC 0.143: {result.resolution_0143_angstrom:.2f} Å   "
                 f"0.5: {result.resolution_05_angstrom:.2f} Å")
    ax.legend(loc="upper right")
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png")
    plt.close(fig)
