"""Learning curves of both half models as a PNG (loss and validation median error per epoch)."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path


def write_learning_curves(path: str | os.PathLike, curves: dict[int, dict]) -> None:
    """Plot ``curves[half]`` (lists keyed by :data:`CURVE_KEYS`) for the halves present: left the
    training and validation loss, right the validation median geodesic error; pre-training epochs
    are shaded. Written atomically (temporary file + rename)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    colours = {1: "tab:blue", 2: "tab:orange"}
    for half, c in sorted(curves.items()):
        epochs = c.get("epoch", [])
        if not epochs:
            continue
        col = colours.get(half, "k")
        ax_loss.plot(epochs, c["train_loss"], "-", color=col, label=f"half {half} train")
        ax_loss.plot(epochs, c["val_loss"], "--", color=col, label=f"half {half} validation")
        ax_err.plot(epochs, c["val_median_error_deg"], "-o", ms=3, color=col, label=f"half {half}")
        n_pre = sum(1 for p in c.get("phase", []) if p == "pretrain")
        if n_pre:
            for ax in (ax_loss, ax_err):
                ax.axvspan(0.5, n_pre + 0.5, color="0.9", zorder=0)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.set_title("loss (shaded: pre-training on simulated particles)", fontsize=9)
    ax_err.set_xlabel("epoch")
    ax_err.set_ylabel("validation median error (deg)")
    ax_err.set_title("median geodesic error to RELION's poses (with symmetry)", fontsize=9)
    for ax in (ax_loss, ax_err):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}-{uuid.uuid4().hex[:8]}.png")
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
