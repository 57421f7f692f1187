"""Our jobs as CCP-EM pipeliner jobs (this module needs ``ccpem-pipeliner``).

Each class derives its options from the job's :class:`~relion_cryopares.relion.JobSpec` (the same
parser the RELION External job uses), so the pipeliner and RELION GUIs offer the same parameters:
input slots become input-node options, parameters become typed options, ``--j`` comes from the
pipeliner's thread option. :meth:`get_commands` returns our ordinary command line, for example::

    cryopares_reconstruct --o External/job003/ --in_parts Import/job001/particles.star --sym D2 --j 4

The pipeliner judges success by the exit code (ours is 0, 1 failure, 2 aborted); the output nodes
are declared up front by :meth:`create_output_nodes`.
"""

from __future__ import annotations

import os
from typing import List, Sequence

from pipeliner.data_structure import (NODE_DENSITYMAP, NODE_MASK3D, NODE_MLMODEL,
                                      NODE_PARTICLEGROUPMETADATA)
from pipeliner.job_options import (BooleanJobOption, FileDescription, FloatJobOption, InputNodeJobOption,
                                   IntJobOption, JobOption, MultipleChoiceJobOption, StringJobOption)
from pipeliner.pipeliner_job import ExternalProgram, PipelinerCommand, PipelinerJob, Ref

from relion_cryopares import __version__
from relion_cryopares.relion import JobSpec, Param
from relion_cryopares.schemes._jobs import job_spec

#: Input flags -> (node type, file kinds, label).
_INPUTS = {
    "in_parts": (NODE_PARTICLEGROUPMETADATA, FileDescription("Particles STAR file", [".star"]), "Input particles:"),
    "in_3dref": (NODE_DENSITYMAP, FileDescription("MRC map", [".mrc", ".map"]), "Reference map:"),
    "in_mask": (NODE_MASK3D, FileDescription("MRC mask", [".mrc", ".map"]), "Mask:"),
}

#: Parameters naming a file or a model directory: (node type, True if the command takes the directory).
_FILE_PARAMS = {
    "model": (NODE_MLMODEL, True),
    "init_model": (NODE_MLMODEL, True),
    "junk_parts": (NODE_PARTICLEGROUPMETADATA, False),
}

#: The file of a cryopares_train job directory that stands for the model in the pipeline.
MODEL_FILE = "cryopares_model.json"

_REFERENCE = Ref(authors=["cryoPARES authors"], title="cryoPARES: supervised pose assignment for related "
                 "cryo-EM experiments", journal="bioRxiv", year="2025", doi="10.1101/2025.03.04.641536")


def _label(param: Param) -> str:
    text = param.help or param.name.replace("_", " ")
    return f"{param.name}: {text[0].upper()}{text[1:]}"


def _option(param: Param) -> JobOption:
    """The pipeliner option for one of our parameters."""
    common = dict(label=_label(param), help_text=param.help, in_continue=True)
    if param.name in _FILE_PARAMS:
        node_type, is_dir = _FILE_PARAMS[param.name]
        pattern = FileDescription("cryopares_train model", [MODEL_FILE]) if is_dir else \
            FileDescription("STAR file", [".star"])
        return InputNodeJobOption(node_type=node_type, pattern=pattern, default_value=param.default or "",
                                  is_required=param.required, **common)
    if param.type == "bool":
        return BooleanJobOption(default_value=bool(param.default), **common)
    if param.type == "choice":
        return MultipleChoiceJobOption(choices=list(param.choices), default_value=param.default or param.choices[0],
                                       **common)
    if param.type in ("int", "float"):
        cls = IntJobOption if param.type == "int" else FloatJobOption
        return cls(default_value=param.default, hard_min=param.minimum, hard_max=param.maximum,
                   is_required=param.required, **common)
    return StringJobOption(default_value="" if param.default is None else str(param.default),
                           is_required=param.required, **common)


class CryoparesJob(PipelinerJob):
    """Base class: one of our External jobs run by the pipeliner."""

    OUT_DIR = "External"
    CATEGORY_LABEL = "cryoPARES"
    COMMAND = ""
    DISPLAY_NAME = ""
    SHORT_DESC = ""
    LONG_DESC = ""

    def __init__(self) -> None:
        super().__init__()
        info = self.jobinfo
        info.display_name = self.DISPLAY_NAME
        info.short_desc = self.SHORT_DESC
        info.long_desc = self.LONG_DESC
        info.version = __version__
        info.job_author = "relion-cryopares"
        info.documentation = "docs/index.md of relion-cryopares"
        info.programs = [ExternalProgram(command=self.COMMAND)]
        info.references = [_REFERENCE]
        self.can_continue = True
        spec, _ = job_spec(self.COMMAND)
        if spec is None:  # pragma: no cover - every command has a spec or a documented one
            raise RuntimeError(f"no command-line spec for {self.COMMAND}")
        self.spec: JobSpec = spec
        for item in spec.inputs:
            node_type, pattern, label = _INPUTS[item.flag]
            self.joboptions[item.flag] = InputNodeJobOption(
                label=label, node_type=node_type, pattern=pattern, help_text=item.help, is_required=item.required)
        for param in spec.params:
            self.joboptions[param.name] = _option(param)
        self.get_runtab_options(threads=True)

    # command line ---------------------------------------------------------------------------
    def _value(self, name: str) -> str | None:
        option = self.joboptions[name]
        if option.is_blank:
            return None
        text = option.get_string()
        if name in _FILE_PARAMS and _FILE_PARAMS[name][1] and os.path.basename(text) == MODEL_FILE:
            text = os.path.dirname(text) + "/"
        return text

    def get_commands(self) -> List[PipelinerCommand]:
        command: list[str] = [self.COMMAND, "--o", self.output_dir]
        for item in self.spec.inputs:
            value = self._value(item.flag)
            if value is not None:
                command += [f"--{item.flag}", value]
        for param in self.spec.params:
            if param.type == "bool":
                if self.joboptions[param.name].get_boolean():
                    command.append(f"--{param.name}")
                continue
            value = self._value(param.name)
            if value is not None:
                command += [f"--{param.name}", value]
        command += ["--j", str(self.joboptions["nr_threads"].get_number())]
        return [PipelinerCommand(command)]

    # outputs ----------------------------------------------------------------------------------
    def outputs(self) -> Sequence[tuple[str, str, list[str]]]:
        """``(file in the job dir, node type, keywords)`` this job writes."""
        return ()

    def create_output_nodes(self) -> None:
        for file, node_type, keywords in self.outputs():
            self.add_output_node(file, node_type, keywords)


_HALF_MAPS = [("run_half1_class001_unfil.mrc", NODE_DENSITYMAP, ["cryopares", "halfmap"]),
              ("run_class001.mrc", NODE_DENSITYMAP, ["cryopares"])]


class CryoparesTrain(CryoparesJob):
    PROCESS_NAME = "cryopares.train"
    COMMAND = "cryopares_train"
    DISPLAY_NAME = "cryoPARES: train pose networks"
    SHORT_DESC = "Train the cryoPARES pose networks on aligned particles"
    LONG_DESC = ("Trains two independent Image2Sphere pose networks, one per half set, on particles with "
                 "known poses (a Refine3D run_data.star of the apo protein), fits the pruning normaliser and "
                 "threshold, and writes the model directory used by cryoPARES inference.")

    def outputs(self) -> Sequence[tuple[str, str, list[str]]]:
        return [(MODEL_FILE, NODE_MLMODEL, ["cryopares"]), *_HALF_MAPS]


class CryoparesInfer(CryoparesJob):
    PROCESS_NAME = "cryopares.infer"
    COMMAND = "cryopares_infer"
    DISPLAY_NAME = "cryoPARES: predict poses and prune"
    SHORT_DESC = "Poses for new particles in one pass, with directional z-score pruning"
    LONG_DESC = ("Predicts each particle's orientation with a trained cryoPARES model and rejects junk by "
                 "its directional robust z-score. Writes particles.star (kept) and rejected.star.")

    def outputs(self) -> Sequence[tuple[str, str, list[str]]]:
        nodes = [("particles.star", NODE_PARTICLEGROUPMETADATA, ["cryopares"]),
                 ("rejected.star", NODE_PARTICLEGROUPMETADATA, ["cryopares", "rejected"])]
        if "reconstruct" in self.joboptions and self.joboptions["reconstruct"].get_boolean():
            nodes += _HALF_MAPS
        return nodes


class CryoparesLocalRefine(CryoparesJob):
    PROCESS_NAME = "cryopares.localrefine"
    COMMAND = "cryopares_localrefine"
    DISPLAY_NAME = "cryoPARES: local refinement"
    SHORT_DESC = "Local projection matching around predicted poses, gold-standard half maps"
    LONG_DESC = ("Refines poses and shifts locally against a low-pass reference map (particle images masked "
                 "at the particle diameter), rejects particles whose refinement z-score says they do not "
                 "match it (second pruning stage: rejected.star) and reconstructs gold-standard half maps "
                 "with RELION Refine3D file names.")

    def outputs(self) -> Sequence[tuple[str, str, list[str]]]:
        return [("run_data.star", NODE_PARTICLEGROUPMETADATA, ["cryopares"]),
                ("rejected.star", NODE_PARTICLEGROUPMETADATA, ["cryopares", "rejected"]), *_HALF_MAPS]


class CryoparesReconstruct(CryoparesJob):
    PROCESS_NAME = "cryopares.reconstruct"
    COMMAND = "cryopares_reconstruct"
    DISPLAY_NAME = "cryoPARES: reconstruct half maps"
    SHORT_DESC = "Gold-standard half maps from particles with poses"
    LONG_DESC = ("Direct Fourier inversion with CTF of each half set (rlnRandomSubset), FSC and a Wiener-"
                 "filtered map; a continue inserts only new particles.")

    def outputs(self) -> Sequence[tuple[str, str, list[str]]]:
        return list(_HALF_MAPS)
