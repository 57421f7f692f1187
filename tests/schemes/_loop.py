"""Drive an installed RELION 3.1 Schedule loop for tests: grow the input STAR between passes, then stop it.

:func:`run_growing_loop` starts ``relion_scheduler --schedule NAME --run`` in the project, writes the
first chunk of particles, and each time the schedule's ``loops`` counter (a float variable RELION writes
into ``schedule.star`` at every step) reaches the number of chunks written so far, appends the next
chunk (atomically, as a finished Extract job would); after the last chunk's pass it creates the stop
file and waits for the scheduler to reach its exit.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from relion_cryopares.data import write_particle_star
from relion_cryopares.schemes._star import StarSyntaxError, read_star
from tests.relion_project import clear_locks


@dataclass
class LoopRun:
    returncode: int
    output: str
    passes: int
    seconds: float


def schedule_floats(project: Path, name: str) -> dict[str, float] | None:
    """The float variables of a running Schedule (None while RELION is rewriting the file)."""
    try:
        rows = read_star(project / "Schedules" / name / "schedule.star")["schedule_floats"].rows
        return {r["_rlnScheduleFloatVariableName"]: float(r["_rlnScheduleFloatVariableValue"]) for r in rows}
    except (OSError, KeyError, ValueError, StarSyntaxError):
        return None


def write_atomic_star(path: Path, star) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write_particle_star(tmp, star)
    os.replace(tmp, path)


def run_growing_loop(project: Path, name: str, star_path: Path, chunks: Sequence, stop_file: str,
                     timeout: float = 300.0) -> LoopRun:
    """Run the schedule while ``star_path`` grows through ``chunks`` (cumulative ParticleStars)."""
    clear_locks(project)
    write_atomic_star(star_path, chunks[0])
    env = dict(os.environ)
    start = time.monotonic()
    log = project / f"{name}.scheduler.out"
    with open(log, "w") as out:
        proc = subprocess.Popen(["relion_scheduler", "--schedule", name, "--run", "--verb", "2",
                                 "--pipeline_control", f"Schedules/{name}/"],
                                cwd=project, stdout=out, stderr=subprocess.STDOUT, env=env)
        written, passes = 1, 0
        try:
            while proc.poll() is None:
                if time.monotonic() - start > timeout:
                    raise TimeoutError(f"{name} still running after {timeout:.0f} s:\n{log.read_text()[-3000:]}")
                floats = schedule_floats(project, name)
                passes = int(floats["loops"]) if floats else passes
                if passes >= written and written < len(chunks):
                    write_atomic_star(star_path, chunks[written])
                    written += 1
                if passes >= len(chunks):
                    (project / stop_file).touch()
                time.sleep(0.2)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return LoopRun(proc.returncode, log.read_text(), passes, time.monotonic() - start)
