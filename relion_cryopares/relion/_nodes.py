"""Output nodes: ``RELION_OUTPUT_NODES.star`` (shared/RELION_CONTRACT.md §2).

RELION 3.1 reads only ``_rlnPipeLineNodeType`` (an int), RELION 4.0 and 5.x only
``_rlnPipeLineNodeTypeLabel``; the file always carries all three columns. The label set (4.0 or
5.x) follows the project's ``default_pipeline.star``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ._atomic import write_text_atomic

OUTPUT_NODES_FILE = "RELION_OUTPUT_NODES.star"

#: kind -> (RELION 3.1 int type, RELION 4.0 label, RELION 5.x label)
NODE_TYPES: dict[str, tuple[int, str, str]] = {
    "particles": (3, "ParticlesData.star.relion", "ParticleGroupMetadata.star.relion"),
    "map": (6, "DensityMap.mrc", "DensityMap.mrc"),
    "mask": (7, "Mask3D.mrc", "Mask3D.mrc"),
    "halfmap": (10, "DensityMap.mrc.halfmap", "DensityMap.mrc.halfmap"),
    "postprocess": (14, "ProcessData.star.relion.postprocess", "ProcessData.star.relion.postprocess"),
    "logpdf": (13, "LogFile.pdf.relion", "LogFile.pdf.relion"),
}

_KEYWORD = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")


@dataclass(frozen=True)
class OutputNode:
    """One output the pipeline should know: a file, its kind (:data:`NODE_TYPES`), an extra keyword.

    ``path`` is project-relative or absolute inside the project; a ``keyword`` such as
    ``"cryopares"`` is appended to the 4.0/5.x label (``ParticleGroupMetadata.star.relion.cryopares``).
    """

    path: str | os.PathLike
    kind: str
    keyword: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in NODE_TYPES:
            raise ValueError(f"node kind must be one of {sorted(NODE_TYPES)}, not {self.kind!r}")
        if self.keyword is not None and not _KEYWORD.match(self.keyword):
            raise ValueError(f"node keyword {self.keyword!r}: use letters, digits, '_' and dots")

    def type_int(self) -> int:
        """The RELION 3.1 ``_rlnPipeLineNodeType``."""
        return NODE_TYPES[self.kind][0]

    def label(self, pipeline_version: str) -> str:
        """The ``_rlnPipeLineNodeTypeLabel`` for a pipeline version (``"3.1"``, ``"4.0"``, ``"5"``)."""
        _, label4, label5 = NODE_TYPES[self.kind]
        label = label5 if pipeline_version == "5" else label4
        return f"{label}.{self.keyword}" if self.keyword else label


def detect_pipeline_version(*candidates: str | os.PathLike) -> str:
    """Which RELION wrote the first readable pipeline file: ``"5"``, ``"4.0"``, ``"3.1"`` or ``"unknown"``.

    ``# version 50001`` -> 5.x; a ``_rlnPipeLineProcessTypeLabel`` column -> 4.0; an int
    ``_rlnPipeLineProcessType`` column -> 3.1. Defaults to ``./default_pipeline.star``.
    """
    for candidate in candidates or ("default_pipeline.star",):
        try:
            with open(candidate, encoding="utf-8", errors="replace") as handle:
                text = handle.read(65536)
        except OSError:
            continue
        if re.search(r"^#\s*version\s+5\d{4}", text, re.MULTILINE):
            return "5"
        if "_rlnPipeLineProcessTypeLabel" in text:
            return "4.0"
        if re.search(r"_rlnPipeLineProcessType\s", text) or "data_pipeline_general" in text:
            return "3.1"
    return "unknown"


def format_output_nodes(rows: Sequence[tuple[str, OutputNode]], pipeline_version: str) -> str:
    """The text of ``RELION_OUTPUT_NODES.star`` for ``(project-relative name, node)`` rows."""
    version = "50001" if pipeline_version == "5" else "30001"
    lines = [f"# version {version}", "", "data_output_nodes", "", "loop_",
             "_rlnPipeLineNodeName #1", "_rlnPipeLineNodeType #2", "_rlnPipeLineNodeTypeLabel #3"]
    for name, node in rows:
        if not name or any(c.isspace() for c in name) or '"' in name:
            raise ValueError(f"output node name {name!r}: RELION cannot read names with spaces or quotes")
        lines.append(f"{name} {node.type_int()} {node.label(pipeline_version)}")
    return "\n".join(lines) + "\n\n"


def write_output_nodes(
    output_dir: str | os.PathLike, rows: Sequence[tuple[str, OutputNode]], pipeline_version: str
) -> Path:
    """Write ``<output_dir>/RELION_OUTPUT_NODES.star`` atomically and return its path."""
    return write_text_atomic(Path(output_dir) / OUTPUT_NODES_FILE, format_output_nodes(rows, pipeline_version))
