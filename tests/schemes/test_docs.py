"""The user guide: links resolve, the parameter tables cover every job parameter."""

from __future__ import annotations

import re
from pathlib import Path

from relion_cryopares.schemes._jobs import JOB_MODULES, job_spec

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_links_between_pages_resolve():
    for page in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_parameter_tables_cover_every_parameter():
    """docs/parameters.md is generated: run ``python docs/gen_parameters.py`` after changing a JobSpec."""
    text = (DOCS / "parameters.md").read_text()
    for command in JOB_MODULES:
        spec, source = job_spec(command)
        assert f"## {command}" in text and source == "module"
        missing = [p.name for p in spec.params if f"| `{p.name}` |" not in text]
        assert not missing, f"{command}: {missing} not in docs/parameters.md; run python docs/gen_parameters.py"

