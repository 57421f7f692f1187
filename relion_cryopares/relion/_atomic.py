"""Atomic file outputs: a reader never sees a half-written file.

Every writer in a job directory goes through :func:`atomic_write` (file objects) or
:func:`atomic_path` (libraries that want a file name: ``mrcfile``, ``starfile``, ``torch.save``).
The data go to a hidden temporary file in the destination's directory, which replaces the
destination with :func:`os.replace` only when writing finished; on an exception the temporary
file is removed and the destination is left as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path
from typing import IO, Any, Iterator

#: Files RELION owns in a job directory; a job must never rewrite them.
RELION_OWNED_FILES = frozenset({"job.star", "note.txt", "job_pipeline.star", "default_pipeline.star"})


def _temporary_sibling(path: Path) -> Path:
    """A unique hidden name next to ``path`` that keeps its suffix (``.x.tmp1a2b.star``)."""
    tag = uuid.uuid4().hex[:8]
    return path.with_name(f".{path.stem}.tmp{os.getpid()}-{tag}{path.suffix}")


def _check_not_owned(path: Path) -> None:
    if path.name in RELION_OWNED_FILES:
        raise ValueError(f"{path}: RELION owns {path.name}; a job must not rewrite it")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically.

    Use it for writers that take a file name::

        with atomic_path(ctx.path("run_class001.mrc")) as tmp:
            mrcfile.write(tmp, volume)
    """
    path = Path(path)
    _check_not_owned(path)
    tmp = _temporary_sibling(path)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{path}: nothing was written to the temporary file {tmp.name}")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8", fsync: bool = True
) -> Iterator[IO[Any]]:
    """Open a temporary file for writing; on success it replaces ``path`` atomically.

    ``mode`` is ``"w"`` (text, ``encoding``) or ``"wb"`` (bytes). On an exception inside the
    ``with`` block nothing is left behind and ``path`` keeps its old content (if any).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', not {mode!r}")
    with atomic_path(path) as tmp:
        kwargs = {"encoding": encoding} if mode == "w" else {}
        with open(tmp, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically and return ``Path(path)``."""
    with atomic_write(path, "w", encoding=encoding) as handle:
        handle.write(text)
    return Path(path)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return ``Path(path)``."""
    with atomic_write(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (non-JSON values as ``str``) atomically."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    """Read a JSON file, or return ``default`` when it does not exist."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return default
