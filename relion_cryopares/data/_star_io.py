"""Reading and writing particle STAR files (the normalised form: :mod:`relion_cryopares.data._star`).

:func:`read_particle_star` reads RELION 3.0, 3.1+ and 5 files and normalises them once (3.0 per-particle
optics columns become optics groups, pixel origins become Å); :func:`write_particle_star` writes RELION
3.1+ files that keep every column.
"""

from __future__ import annotations

import linecache
import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from relion_cryopares.data._star import ParticleStar, _fill_image_sizes
from relion_cryopares.data._star_check import check_tables, parse_error
from relion_cryopares.data._starfmt import write_star_blocks
from relion_cryopares.errors import InputError

log = logging.getLogger(__name__)

#: Labels that must stay text even when they look like numbers.
STRING_LABELS = ["rlnImageName", "rlnMicrographName", "rlnOpticsGroupName", "rlnImageOriginalName",
                 "rlnGroupName", "rlnMicrographMovieName", "rlnOriginalParticleName", "rlnCtfImage",
                 "rlnReconstructImageName", "rlnMtfFileName", "rlnTomoName", "rlnTomoParticleName",
                 "rlnCryoparesRejectReason"]

#: Per-particle columns of RELION 3.0 files that belong to the optics table in 3.1+.
_OPTICS_VALUE_LABELS = ["rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast",
                        "rlnCtfDataArePhaseFlipped", "rlnCtfDataAreCtfPremultiplied"]
_PIXEL_LABELS_30 = ["rlnImagePixelSize", "rlnPixelSize", "rlnMagnification", "rlnDetectorPixelSize"]


def _pick_particle_block(blocks: dict, path: Path) -> str:
    for key in ("particles", "images", ""):
        if key in blocks and isinstance(blocks[key], pd.DataFrame):
            return key
    with_names = [k for k, v in blocks.items()
                  if isinstance(v, pd.DataFrame) and "rlnImageName" in v.columns]
    if len(with_names) == 1:
        return with_names[0]
    raise InputError("no particle table (data_particles with rlnImageName)", path)


def _optics_from_particles(particles: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """RELION 3.0: build optics groups from per-particle columns; returns ``(optics, particles)``."""
    p = particles
    if "rlnImagePixelSize" in p.columns:
        pixel = p["rlnImagePixelSize"].to_numpy(dtype=np.float64)
    elif "rlnPixelSize" in p.columns:
        pixel = p["rlnPixelSize"].to_numpy(dtype=np.float64)
    elif "rlnDetectorPixelSize" in p.columns and "rlnMagnification" in p.columns:
        pixel = (p["rlnDetectorPixelSize"].to_numpy(dtype=np.float64) * 1e4
                 / p["rlnMagnification"].to_numpy(dtype=np.float64))
    else:
        raise InputError("no pixel size (needs data_optics with rlnImagePixelSize, or columns "
                         "rlnDetectorPixelSize and rlnMagnification)", path)
    if not np.isfinite(pixel).all() or (pixel <= 0).any():
        raise InputError("pixel size is not positive in some rows", path)
    keys = pd.DataFrame({"rlnImagePixelSize": np.round(pixel, 6)})
    for col in _OPTICS_VALUE_LABELS:
        if col in p.columns:
            keys[col] = np.round(p[col].to_numpy(dtype=np.float64), 6)
    group = keys.groupby(list(keys.columns), sort=False, dropna=False).ngroup().to_numpy() + 1
    first = keys.groupby(group, sort=True).head(1).index.to_numpy()
    optics = pd.DataFrame({"rlnOpticsGroup": np.arange(1, len(first) + 1),
                           "rlnOpticsGroupName": [f"opticsGroup{i}" for i in range(1, len(first) + 1)],
                           "rlnImagePixelSize": pixel[first]})
    for col in _OPTICS_VALUE_LABELS:
        if col in p.columns:
            optics[col] = p[col].to_numpy()[first]
    drop = [c for c in _OPTICS_VALUE_LABELS + _PIXEL_LABELS_30 + ["rlnOpticsGroup"] if c in p.columns]
    particles = p.drop(columns=drop)
    particles["rlnOpticsGroup"] = group.astype(np.int64)
    log.info("%s: RELION 3.0 format; made %d optics group(s) from per-particle columns", path, len(optics))
    return optics, particles


def _normalise(optics: pd.DataFrame, particles: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    name = path.name
    if "rlnImageName" not in particles.columns:
        raise InputError("missing column rlnImageName in data_particles", path)
    if "rlnOpticsGroup" not in optics.columns:
        raise InputError("missing column rlnOpticsGroup in data_optics", path)
    if "rlnImagePixelSize" not in optics.columns:
        raise InputError("missing column rlnImagePixelSize in data_optics", path)
    optics = optics.copy()
    optics["rlnOpticsGroup"] = optics["rlnOpticsGroup"].astype(np.int64)
    pixel_sizes = pd.to_numeric(optics["rlnImagePixelSize"], errors="coerce").to_numpy(dtype=np.float64)
    if not (pixel_sizes > 0).all():
        raise InputError("rlnImagePixelSize in data_optics must be a positive number", path)
    if optics["rlnOpticsGroup"].duplicated().any():
        raise InputError("optics group numbers repeat in data_optics", path)
    if "rlnOpticsGroupName" not in optics.columns:
        optics["rlnOpticsGroupName"] = [f"opticsGroup{g}" for g in optics["rlnOpticsGroup"]]
    if "rlnImageDimensionality" not in optics.columns:
        optics["rlnImageDimensionality"] = 2
    if "rlnOpticsGroup" not in particles.columns:
        if len(optics) != 1:
            raise InputError("missing column rlnOpticsGroup in data_particles (several optics groups)", path)
        particles["rlnOpticsGroup"] = int(optics["rlnOpticsGroup"].iloc[0])
    particles["rlnOpticsGroup"] = particles["rlnOpticsGroup"].astype(np.int64)
    rows = pd.Index(optics["rlnOpticsGroup"]).get_indexer(particles["rlnOpticsGroup"])
    if (rows < 0).any():
        bad = int(np.flatnonzero(rows < 0)[0])
        raise InputError(f"particle row {bad + 1} refers to optics group "
                         f"{particles['rlnOpticsGroup'].iloc[bad]}, which is not in data_optics", path)
    pixel = optics["rlnImagePixelSize"].to_numpy(dtype=np.float64)[rows]
    for axis in ("X", "Y", "Z"):
        px, angst = f"rlnOrigin{axis}", f"rlnOrigin{axis}Angst"
        if px in particles.columns:
            if angst not in particles.columns:
                particles[angst] = particles[px].to_numpy(dtype=np.float64) * pixel
                log.info("%s: converted %s (px) to %s (Å)", name, px, angst)
            particles = particles.drop(columns=[px])
    return optics, particles


def read_particle_star(path: str | Path) -> ParticleStar:
    """Read a RELION particle STAR file (3.0, 3.1+, 5) into the normalised :class:`ParticleStar`.

    Stack paths in ``rlnImageName`` are relative to the current directory (the RELION project).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path)
    linecache.clearcache()  # starfile reads lines through linecache and leaves it stale when it fails
    try:
        with warnings.catch_warnings():  # mixed types are reported by check_tables, with the line
            warnings.simplefilter("ignore", pd.errors.DtypeWarning)
            blocks = dict(starfile.read(path, always_dict=True, parse_as_string=STRING_LABELS))
    except Exception as exc:  # starfile/pandas raise many kinds on malformed text
        raise parse_error(path, exc) from None
    finally:
        linecache.clearcache()
    check_tables(path, blocks, STRING_LABELS)  # a malformed row: InputError naming its line
    if isinstance(blocks.get("optics"), pd.DataFrame):
        if not isinstance(blocks.get("particles"), pd.DataFrame):
            raise InputError("no data_particles block (has data_optics)", path)
        optics, particles = blocks.pop("optics"), blocks.pop("particles").copy()
    else:
        particles = blocks.pop(_pick_particle_block(blocks, path)).copy()
        if "rlnImageName" not in particles.columns:
            raise InputError("missing column rlnImageName in the particle table", path)
        optics, particles = _optics_from_particles(particles, path)
    optics, particles = _normalise(optics, particles, path)
    star = ParticleStar(optics=optics, particles=particles.reset_index(drop=True), path=path,
                        other_blocks=blocks)
    _fill_image_sizes(star, required=False)
    return star


def write_particle_star(path: str | Path, star: ParticleStar) -> None:
    """Write ``star`` as a RELION 3.1 particle STAR file (``# version 30001``; atomic)."""
    _fill_image_sizes(star, required=False)
    optics = star.optics
    if "rlnImageSize" in optics.columns and optics["rlnImageSize"].isna().any():
        log.warning("%s: image size of some optics groups unknown; writing without rlnImageSize", path)
        optics = optics.drop(columns=["rlnImageSize"])
    particles = star.particles.drop(columns=[c for c in ("rlnOriginX", "rlnOriginY", "rlnOriginZ")
                                             if c in star.particles.columns])
    blocks = {"optics": optics, "particles": particles}
    blocks.update({k: v for k, v in star.other_blocks.items() if k not in blocks})
    write_star_blocks(path, blocks)
