"""Write docs/parameters.md from the jobs' JobSpecs (the parsers RELION's command lines go through).

    python docs/gen_parameters.py            # rewrite docs/parameters.md
    python docs/gen_parameters.py --check    # exit 1 if it is out of date

A job module that cannot be imported yet is documented from its documented command line
(``relion_cryopares.schemes._jobs``) and marked so.
"""

from __future__ import annotations

import sys
from pathlib import Path

from relion_cryopares.schemes._jobs import JOB_MODULES, job_spec

OUT = Path(__file__).with_name("parameters.md")

_INPUT_SLOTS = {"in_parts": "Input particles (`in_part`)", "in_3dref": "Input 3D reference (`in_3dref`)",
                "in_mask": "Input 3D mask (`in_mask`)", "in_mics": "Input micrographs (`in_mic`)",
                "in_movies": "Input movies (`in_mov`)", "in_coords": "Input coordinates (`in_coords`)"}


def _cell(text: object) -> str:
    return str(text).replace("%%", "%").replace("|", "\\|").replace("\n", " ")


def _default(param) -> str:
    if param.required:
        return "**required**"
    if param.type == "bool":
        return "off (empty value switches it on)"
    return "—" if param.default is None else f"`{param.default}`"


def render() -> str:
    lines = ["# Job parameters", "",
             "Generated from the jobs' argument parsers by `python docs/gen_parameters.py`; do not edit by hand.",
             "In the RELION GUI each parameter is one label/value pair on the External job's *Params* tab",
             "(label without dashes); inputs go into the *Input* tab slots; *Number of threads* becomes `--j`.",
             "A bool parameter is switched on by its label with an empty value (or `yes`).", ""]
    for command in JOB_MODULES:
        spec, source = job_spec(command)
        if spec is None:
            continue
        lines += [f"## {command}", ""]
        if spec.description:
            lines += [spec.description, ""]
        if source != "module":
            lines += ["*(documented command line; the job module is not part of this installation yet)*", ""]
        lines += ["| input slot | flag | required | what |", "|---|---|---|---|"]
        lines += [f"| {_INPUT_SLOTS[i.flag]} | `--{i.flag}` | {'yes' if i.required else 'no'} | {_cell(i.help)} |"
                  for i in spec.inputs]
        lines += ["", "| label | type | default | what |", "|---|---|---|---|"]
        for p in spec.params:
            kind = "|".join(p.choices) if p.type == "choice" else p.type
            bounds = []
            if p.minimum is not None:
                bounds.append(f"≥ {p.minimum:g}")
            if p.maximum is not None:
                bounds.append(f"≤ {p.maximum:g}")
            kind += f" ({', '.join(bounds)})" if bounds else ""
            lines.append(f"| `{p.name}` | {_cell(kind)} | {_default(p)} | {_cell(p.help)} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = OUT.read_text() if OUT.exists() else ""
        if current != text:
            print(f"{OUT} is out of date: run python docs/gen_parameters.py")
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
