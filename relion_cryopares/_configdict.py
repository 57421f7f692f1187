"""JSON round trips of the frozen dataclass configurations (model, preprocessing, training)."""

from __future__ import annotations

import dataclasses

from relion_cryopares.errors import InputError


def _json_ready(value):
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def config_to_dict(config) -> dict:
    """A JSON-ready dict of a dataclass (nested dataclasses become dicts, tuples lists)."""
    return _json_ready(dataclasses.asdict(config))


def config_from_dict(cls, d: dict, what: str):
    """``cls(**d)``, refusing keys ``cls`` does not have (one line naming them and ``what``)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise InputError(f"unknown {what} configuration keys: {unknown}")
    return cls(**d)
