"""On-disk cache of fixed tables (plain tensors, loaded with ``weights_only=True``).

Fixed tables are never part of a model's ``state_dict``: they are rebuilt from the configuration,
and the slow ones are kept here, keyed by the function and its parameters. The cache directory is
``$RELION_CRYOPARES_CACHE`` or ``~/.cache/relion_cryopares``; ``RELION_CRYOPARES_CACHE=off``
disables it. A cache that cannot be written is skipped silently (logged), never an error.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Callable

import torch

log = logging.getLogger(__name__)

#: Bump when the meaning of a cached table changes.
CACHE_VERSION = 1


def cache_dir() -> Path | None:
    """The cache directory, or ``None`` when caching is off."""
    value = os.environ.get("RELION_CRYOPARES_CACHE")
    if value is not None and value.strip().lower() in ("off", "0", "none", ""):
        return None
    return Path(value) if value else Path.home() / ".cache" / "relion_cryopares"


def cached_tensors(name: str, key: dict, build: Callable[[], dict[str, torch.Tensor]]
                   ) -> dict[str, torch.Tensor]:
    """``build()`` (a dict of CPU tensors), stored under ``name`` and ``key`` and reused later."""
    folder = cache_dir()
    if folder is None:
        return build()
    text = repr(sorted(key.items())) + f"|v{CACHE_VERSION}|torch{torch.__version__.split('+')[0]}"
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = folder / f"{name}-{digest}.pt"
    if path.exists():
        try:
            tables = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(tables, dict) and all(isinstance(v, torch.Tensor) for v in tables.values()):
                return tables
        except Exception as exc:  # a damaged file is rebuilt
            log.warning("ignoring unreadable cache file %s (%s)", path, exc)
    tables = build()
    tmp_name = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".tmp", delete=False) as tmp:
            tmp_name = tmp.name
            torch.save({k: v.detach().cpu().contiguous() for k, v in tables.items()}, tmp)
        os.replace(tmp_name, path)  # atomic: concurrent builders are harmless
    except OSError as exc:
        log.info("could not write cache file %s (%s)", path, exc)
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)
    return tables
