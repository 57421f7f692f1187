"""RELION Schemes (4.0/5.x) and Schedules (3.1) for our jobs: model, rendering, validation, install.

::

    from relion_cryopares.schemes import build_scheme, render

    scheme = build_scheme("cryopares_screen").with_values({"particles": "Extract/job007/particles.star"})
    render(scheme, project_dir)                 # Schemes/cryopares_screen/ for RELION 4.0/5.x
    render(scheme, project_dir, form="3.1")     # Schedules/cryopares_screen/ for RELION 3.1

``validate_scheme_dir(path)`` lists the problems of a rendered scheme; the command
``cryopares_install_scheme`` installs one into a project (see docs/schemes.md).
"""

from ._jobs import JOB_MODULES, external_job, job_spec, postprocess_job
from ._model import Edge, Job, Operator, Scheme, Variable, scheme_ref
from ._render import render, render_job_star, render_texts, scheme_dir
from ._shipped import EXTRA, SHIPPED, build_scheme, reconstruct_loop_scheme, screen_scheme, train_scheme

__all__ = [
    "EXTRA", "Edge", "JOB_MODULES", "Job", "Operator", "SHIPPED", "Scheme", "Variable", "build_scheme",
    "external_job", "job_spec", "postprocess_job", "reconstruct_loop_scheme", "render", "render_job_star",
    "render_texts", "scheme_dir", "scheme_ref", "screen_scheme", "train_scheme",
]
