"""``cryopares_install_scheme``: put one of our schemes into a RELION project, or check scheme files.

::

    cryopares_install_scheme --list                              # the schemes and their settings
    cryopares_install_scheme cryopares_screen --project . \\
        --set particles=Extract/job007/particles.star --set model=External/job020/ \\
        --set ref_map=Refine3D/job010/run_class001.mrc --set mask=MaskCreate/job012/mask.mrc --set sym=D2
    cryopares_install_scheme cryopares_screen --project . --as screen_lig2 --set ...   # one per dataset
    cryopares_install_scheme cryopares_screen --project . --relion31 ...              # Schedules/ for 3.1
    cryopares_install_scheme --check Schemes/cryopares_screen    # validate files (any number of paths)

Exit status 0 on success, 1 on a problem (printed one per line).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Mapping, Sequence

from ._jobs import EXTERNAL, command_name
from ._model import Scheme
from ._render import render, scheme_dir
from ._shipped import EXTRA, SHIPPED, build_scheme
from ._validate import validate_scheme_dir, validate_tree

#: Settings that name files in the project (checked, with a warning, at install time).
PATH_SETTINGS = ("particles", "model", "ref_map", "mask")


def with_exe_dir(scheme: Scheme, exe_dir: str) -> Scheme:
    """Point the External jobs' ``fn_exe`` at ``exe_dir`` (``"auto"``: only commands that are not on
    ``PATH`` but next to this Python; ``"none"``: leave the plain command names)."""
    if exe_dir == "none":
        return scheme
    jobs = []
    for job in scheme.jobs:
        command = command_name(job.options.get("fn_exe", "")) if job.process == EXTERNAL else ""
        if not command:
            jobs.append(job)
            continue
        if exe_dir == "auto":
            local = Path(sys.executable).parent / command
            path = str(local) if shutil.which(command) is None and local.exists() else command
        else:
            path = f"{exe_dir.rstrip('/')}/{command}"
        jobs.append(replace(job, options={**job.options, "fn_exe": path}))
    return replace(scheme, jobs=tuple(jobs))


def install_scheme(template: str, project: str | os.PathLike, *, name: str | None = None,
                   values: Mapping[str, object] | None = None, form: str = "4", exe_dir: str = "auto",
                   overwrite: bool = False) -> Path:
    """Render ``template`` into ``project`` with ``values`` set; return the scheme dir.

    Raises ``KeyError`` (unknown scheme/variable), ``ValueError`` (bad value, or the installed files
    fail validation) or ``FileExistsError`` (already installed and not ``overwrite``).
    """
    project = Path(project)
    if not project.is_dir():
        raise FileNotFoundError(f"project directory {project} does not exist")
    scheme = with_exe_dir(build_scheme(template, name).with_values(dict(values or {})), exe_dir)
    target = render(scheme, project, form, overwrite=overwrite)
    problems = validate_scheme_dir(target)
    if problems:
        raise ValueError("the installed scheme has problems:\n" + "\n".join(problems))
    return target


def write_shipped(root: str | os.PathLike) -> list[Path]:
    """Render every shipped scheme with its defaults, both forms, under ``root`` (the repository's
    ``schemes/`` folder); returns the scheme dirs. Existing files are replaced."""
    dirs = []
    for template in SHIPPED:
        for form in ("4", "3.1"):
            target = scheme_dir(root, template, form)
            if target.exists():
                shutil.rmtree(target)
            dirs.append(render(build_scheme(template), root, form))
    return dirs


def parse_settings(items: Sequence[str]) -> dict[str, str]:
    """``["sym=D2", "wait_s=30"]`` -> ``{"sym": "D2", "wait_s": "30"}``."""
    values = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"--set expects NAME=VALUE, got {item!r}")
        values[key.strip()] = value
    return values


def missing_files(scheme: Scheme, project: Path) -> list[str]:
    """Warnings for path settings that do not exist in the project (yet)."""
    notes = []
    for variable in scheme.variables:
        if variable.name in PATH_SETTINGS and variable.value and not (project / str(variable.value)).exists():
            notes.append(f"WARNING: {variable.name}={variable.value} does not exist in {project} (yet)")
    return notes


def run_instructions(name: str, form: str) -> str:
    """How to start and stop an installed scheme."""
    if form == "3.1":
        return (f"Start it in the project directory (RELION 3.1):\n"
                f"  relion_scheduler --schedule {name} --reset\n"
                f"  relion_scheduler --schedule {name} --run --pipeline_control Schedules/{name}/ "
                f">> Schedules/{name}/run.out 2>> Schedules/{name}/run.err &\n"
                f"(relion --schedule {name} opens it in the RELION 3.1 GUI)")
    return (f"Start it in the project directory (RELION 4.0/5.x):\n"
            f"  relion_schemer --scheme {name} --reset\n"
            f"  relion_schemer --scheme {name} --run --pipeline_control Schemes/{name}/ "
            f">> Schemes/{name}/run.out 2>> Schemes/{name}/run.err &\n"
            f"or start, stop and edit it with: relion_schemegui.py {name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryopares_install_scheme",
        description="Install a relion-cryopares RELION Scheme (4.0/5.x) or Schedule (3.1) into a project, "
                    "or check scheme files.")
    parser.add_argument("scheme", nargs="?", help=f"scheme to install: {', '.join([*SHIPPED, *EXTRA])}")
    parser.add_argument("--project", default=".", help="RELION project directory (default: .)")
    parser.add_argument("--as", dest="name", help="install under this name (one scheme per dataset)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="NAME=VALUE",
                        help="set a scheme variable (repeat); see --list")
    parser.add_argument("--relion31", action="store_true", help="write Schedules/ for RELION 3.1")
    parser.add_argument("--exe-dir", default="auto",
                        help="directory of the cryopares_* commands for fn_exe: auto (default: full path only "
                             "when not on PATH), none (plain names) or a directory")
    parser.add_argument("--force", action="store_true", help="replace an installed scheme (resets its state)")
    parser.add_argument("--list", action="store_true", help="list the schemes, or one scheme's settings")
    parser.add_argument("--check", nargs="+", metavar="PATH", help="validate scheme dirs (or trees holding them)")
    parser.add_argument("--render-shipped", metavar="DIR", help=argparse.SUPPRESS)  # developers: refresh schemes/
    return parser


def _list(template: str | None) -> int:
    names = [template] if template else [*SHIPPED, *EXTRA]
    for name in names:
        scheme = build_scheme(name)
        print(f"{name}: {scheme.description}")
        for variable in scheme.settings():
            value = variable.value if variable.kind != "float" else f"{variable.value:g}"
            print(f"  {variable.name} ({variable.kind}, default {value!r}): {variable.help}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.check:
            problems = [p for path in args.check for p in validate_tree(path)]
            for problem in problems:
                print(problem)
            if not problems:
                print(f"OK: {', '.join(args.check)}")
            return 1 if problems else 0
        if args.list:
            return _list(args.scheme)
        if args.render_shipped:
            for path in write_shipped(args.render_shipped):
                print(f"wrote {path}")
            return 0
        if not args.scheme:
            build_parser().print_usage(sys.stderr)
            print("cryopares_install_scheme: give a scheme name, --list or --check", file=sys.stderr)
            return 1
        form = "3.1" if args.relion31 else "4"
        values = parse_settings(args.settings)
        target = install_scheme(args.scheme, args.project, name=args.name, values=values, form=form,
                                exe_dir=args.exe_dir, overwrite=args.force)
        name = target.name
        scheme = build_scheme(args.scheme, name).with_values(values)
        print(f"installed {args.scheme} as {target}")
        for note in missing_files(scheme, Path(args.project)):
            print(note)
        print(run_instructions(name, form))
        return 0
    except (KeyError, ValueError, FileExistsError, FileNotFoundError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"ERROR: {message}", file=sys.stderr)
        return 1


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
