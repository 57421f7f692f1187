"""Finished inference results, one file per processed chunk: what makes the job incremental.

::

    <job>/cryopares_infer_results/key.json          what the results depend on (model, symmetry, top_k)
    <job>/cryopares_infer_results/chunk_000000.npz   names, half sets, predictions, image problems
    ...

A chunk file is written atomically (hidden temporary file + rename), so it exists complete or not
at all: a run killed mid-way loses only the chunk it was working on, and a re-run (continue, or a
grown input STAR) processes only particles (``rlnImageName``) that no chunk holds. Results made
with another model, symmetry or ``top_k`` (another ``key.json``) are discarded, with a warning.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from relion_cryopares.relion import atomic_path, read_json, write_json_atomic

log = logging.getLogger(__name__)

RESULTS_DIR = "cryopares_infer_results"
#: Fields of chunks from earlier versions that lack them: ``image_problem`` ("" = a usable image).
FIELD_DEFAULTS = {"image_problem": ""}
_CHUNK = re.compile(r"^chunk_(\d{6})\.npz$")


def file_digest(path: Path, block: int = 1 << 22) -> str:
    """SHA-256 of a file's bytes (hex, first 16 characters)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while data := fh.read(block):
            h.update(data)
    return h.hexdigest()[:16]


class ChunkStore:
    """The chunk files of one job directory (see the module docstring)."""

    def __init__(self, job_dir: Path, key: dict) -> None:
        self.folder = Path(job_dir) / RESULTS_DIR
        self.key = key
        self.folder.mkdir(parents=True, exist_ok=True)
        for tmp in self.folder.glob(".chunk_*"):  # left by a killed run: never complete
            tmp.unlink(missing_ok=True)
        old = read_json(self.folder / "key.json")
        if old is not None and old != key:
            n = len(self.chunk_files())
            log.warning("discarding %d result chunk(s) made with other settings (%s; now %s)",
                        n, _diff(old, key), _diff(key, old))
            shutil.rmtree(self.folder)
            self.folder.mkdir(parents=True)
        if old != key:
            write_json_atomic(self.folder / "key.json", key)
        self._next: int | None = None

    def chunk_files(self) -> list[Path]:
        """Complete chunk files, in order."""
        return sorted(p for p in self.folder.iterdir() if _CHUNK.match(p.name))

    def next_index(self) -> int:
        if self._next is None:
            files = self.chunk_files()
            self._next = int(_CHUNK.match(files[-1].name).group(1)) + 1 if files else 0
        return self._next

    def write(self, names: np.ndarray, halves: np.ndarray, results: dict[str, np.ndarray]) -> Path:
        """Store one chunk atomically (``results`` includes ``image_problem``, so that a bad image
        is never read again either); returns its path."""
        path = self.folder / f"chunk_{self.next_index():06d}.npz"
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, names=np.asarray(names, dtype=str), halves=np.asarray(halves, np.int8),
                         **results)
        self._next = self.next_index() + 1
        return path

    def load(self) -> dict[str, np.ndarray] | None:
        """All stored results concatenated (``names``, ``halves`` and the prediction fields), the
        last result kept where a name appears twice; None when there are none."""
        parts = []
        for path in self.chunk_files():
            with np.load(path, allow_pickle=False) as data:
                parts.append({k: data[k] for k in data.files})
        if not parts:
            return None
        for part in parts:  # chunks written before a field existed get its default
            for key, default in FIELD_DEFAULTS.items():
                if key not in part:
                    part[key] = np.full(len(part["names"]), default)
        out = {k: np.concatenate([p[k].astype(object) if k == "names" else p[k] for p in parts])
               for k in parts[0]}
        repeated = pd.Index(out["names"]).duplicated(keep="last")
        if repeated.any():
            out = {k: v[~repeated] for k, v in out.items()}
        return out

    def done_names(self) -> set[str]:
        """Image names with a stored result."""
        done: set[str] = set()
        for path in self.chunk_files():
            with np.load(path, allow_pickle=False) as data:
                done.update(data["names"].tolist())
        return done


def _diff(a: dict, b: dict) -> str:
    return ", ".join(f"{k}={a.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
