"""Shared helpers of the benchmark scripts: machine facts and result tables."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

import relion_cryopares

RESULTS = Path(__file__).resolve().parent / "results"


@contextlib.contextmanager
def work_directory(workdir: str | None, prefix: str) -> Iterator[Path]:
    """A benchmark's working directory: ``workdir`` emptied and kept afterwards (``--workdir``), or a
    temporary one (``prefix``) removed at the end."""
    if workdir:
        path = Path(workdir).resolve()
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def machine() -> dict:
    """What the numbers were measured on."""
    info = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
            "host": platform.node(), "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__,
            "relion_cryopares": relion_cryopares.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        out = subprocess.run(["relion_refine", "--version"], capture_output=True, text=True, timeout=10)
        info["relion"] = (out.stdout + out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        info["relion"] = None
    return info


def markdown_table(rows: list[dict]) -> str:
    """Rows of equal keys as a markdown table."""
    if not rows:
        return ""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row[k]) for k in keys) + " |")
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def write_results(name: str, title: str, rows: list[dict], notes: str = "") -> Path:
    """Write ``results/<name>.md`` and ``.json`` and print the table."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    info = machine()
    table = markdown_table(rows)
    text = (f"# {title}\n\n{table}\n\n{notes}\n\nMeasured {info['date']} on {info['cpu_count']} CPU "
            f"cores ({info['cpu']}), torch {info['torch']} ({info['torch_threads']} threads), "
            f"GPU: {info['cuda'] or 'none'}, RELION: {info['relion'] or 'not installed'}, "
            f"relion-cryopares {info['relion_cryopares']}.\n")
    (RESULTS / f"{name}.md").write_text(text)
    (RESULTS / f"{name}.json").write_text(json.dumps({"machine": info, "rows": rows}, indent=1))
    print(text)
    return RESULTS / f"{name}.md"
