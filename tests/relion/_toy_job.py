"""A toy External job built on the contract, for tests (run in-process or by RELION).

``--mode ok`` writes ``toy_map.mrc`` and declares it as a map node; ``--mode fail`` raises an
InputError; ``--mode crash`` raises a ZeroDivisionError; ``--mode abort`` touches
RELION_JOB_ABORT_NOW and calls ``check_abort``; ``--mode sleep`` waits up to ``--count`` tenths of a
second, checking for an abort request (for signal and external-abort tests).
"""

from __future__ import annotations

import sys
import time

from relion_cryopares.errors import InputError
from relion_cryopares.relion import (ABORT_NOW, Input, JobContext, JobSpec, OutputNode, Param, run_job,
                                     write_text_atomic)

SPEC = JobSpec(
    name="cryopares_toy",
    description="a toy job for the contract tests",
    params=(
        Param("mode", "choice", "ok", "what to do", choices=("ok", "fail", "crash", "abort", "sleep")),
        Param("sym", "str", "C1", "symmetry"),
        Param("count", "int", 10, "items", minimum=1),
        Param("scale", "float", 1.0, "a float"),
        Param("fast", "bool", False, "a switch"),
    ),
    inputs=(Input("in_parts", help="particles"), Input("in_3dref", help="reference map")),
)


def _body(ctx: JobContext) -> list[OutputNode]:
    mode = ctx.params["mode"]
    if mode == "fail":
        raise InputError("toy failure on purpose", "toy.star")
    if mode == "crash":
        return [OutputNode(str(1 / 0), "map")]
    if mode == "sleep":
        ctx.log.info("sleeping")
        for _ in range(ctx.params["count"]):
            time.sleep(0.1)
            ctx.check_abort()
    progress = ctx.progress(ctx.params["count"], interval_s=0.0)
    for _ in range(ctx.params["count"]):
        if mode == "abort":
            ctx.path(ABORT_NOW).touch()
        ctx.check_abort()
        progress.update(1)
    out = write_text_atomic(ctx.path("toy_map.mrc"), f"sym {ctx.params['sym']}\n")
    return [OutputNode(out, "map"), OutputNode(write_text_atomic(ctx.path("toy_data.star"), "data_\n"),
                                               "particles", keyword="cryopares")]


def main(argv: list[str] | None = None) -> int:
    return run_job(SPEC, _body, argv)


if __name__ == "__main__":
    sys.exit(main())
