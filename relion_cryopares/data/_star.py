"""Particle STAR files in normalised form (:class:`ParticleStar`); reading RELION 3.0/3.1+/5 files and
writing RELION 3.1 ones is in :mod:`relion_cryopares.data._star_io`.

This is the I/O edge: ``rln*`` names and DataFrames live here; :class:`ParticleStar` hands the rest of
the library numpy arrays and torch tensors with units in their names.

Normalised form (whatever the input version):

- ``optics``: one row per optics group with ``rlnOpticsGroup`` (int), ``rlnOpticsGroupName``,
  ``rlnImagePixelSize`` (Å), ``rlnImageDimensionality`` and, where known, ``rlnImageSize`` (px),
  ``rlnVoltage``, ``rlnSphericalAberration``, ``rlnAmplitudeContrast``, ... (every input column kept).
- ``particles``: every input column, plus ``rlnOpticsGroup``; origins in Å (``rlnOriginXAngst/YAngst``).
  From RELION 3.0 files (no optics table) the optics columns (voltage, Cs, amplitude contrast,
  magnification / detector pixel size) move into optics groups made of their unique combinations,
  and pixel origins ``rlnOriginX/Y`` become ``rlnOriginXAngst/YAngst``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from relion_cryopares.errors import InputError
from relion_cryopares.data._stacks import parse_image_name, stack_shape

log = logging.getLogger(__name__)

_CORE_OPTICS = ["rlnImagePixelSize", "rlnImageSize", "rlnVoltage", "rlnSphericalAberration",
                "rlnAmplitudeContrast"]


@dataclass(frozen=True)
class OpticsGroup:
    """One optics group, RELION's meaning, units in the names (NaN where the STAR file has no value)."""

    number: int
    name: str
    pixel_size_angstrom: float
    image_size_px: int
    voltage_kv: float
    spherical_aberration_mm: float
    amplitude_contrast: float
    ctf_phase_flipped: bool = False
    ctf_premultiplied: bool = False


def _as_index(rows, n: int) -> np.ndarray:
    """Row selection (bool mask, integer indices, slice, torch tensor, None) -> integer positions."""
    if rows is None:
        return np.arange(n)
    if isinstance(rows, slice):
        return np.arange(n)[rows]
    if hasattr(rows, "detach"):
        rows = rows.detach().cpu().numpy()
    rows = np.asarray(rows)
    if rows.dtype == bool:
        if rows.shape != (n,):
            raise ValueError(f"boolean mask has shape {rows.shape}, expected ({n},)")
        return np.flatnonzero(rows)
    return rows.astype(np.int64).reshape(-1)


def _to_numpy(values, n: int) -> np.ndarray | list:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    if np.isscalar(values) or isinstance(values, str):
        return [values] * n
    values = np.asarray(values)
    if values.shape[0] != n:
        raise ValueError(f"{values.shape[0]} values for {n} particles")
    return values


@dataclass(repr=False)
class ParticleStar:
    """A normalised particle STAR file (see the module docstring); other data blocks pass through."""

    optics: pd.DataFrame
    particles: pd.DataFrame
    path: Path | None = None
    other_blocks: dict = field(default_factory=dict)

    # ---------------------------------------------------------------- basics
    def __len__(self) -> int:
        return len(self.particles)

    def __repr__(self) -> str:
        return (f"ParticleStar({self._name!r}, {len(self)} particles, "
                f"optics groups {self.optics['rlnOpticsGroup'].tolist()}, "
                f"{len(self.particles.columns)} columns)")

    @property
    def _name(self) -> str:
        return str(self.path) if self.path is not None else "particles"

    def _error(self, problem: str) -> InputError:
        return InputError(problem, self._name)

    def _group_rows(self) -> np.ndarray:
        """Row of the optics table for each particle, ``(n,)`` int."""
        idx = pd.Index(self.optics["rlnOpticsGroup"].to_numpy()).get_indexer(
            self.particles["rlnOpticsGroup"].to_numpy())
        if (idx < 0).any():
            bad = int(np.flatnonzero(idx < 0)[0])
            raise self._error(f"particle row {bad + 1} refers to optics group "
                              f"{self.particles['rlnOpticsGroup'].iloc[bad]}, which is not in data_optics")
        return idx

    def column(self, name: str, default=None) -> np.ndarray:
        """Values ``(n,)`` of a particle column (or an optics column broadcast to particles).

        Missing: ``default`` broadcast, or :class:`InputError` when ``default`` is None.
        """
        if name in self.particles.columns:
            return self.particles[name].to_numpy()
        if name in self.optics.columns:
            return self.optics[name].to_numpy()[self._group_rows()]
        if default is None:
            raise self._error(f"missing column {name}")
        return np.full(len(self), default)

    def _float_column(self, name: str, why: str) -> np.ndarray:
        if name not in self.particles.columns and name not in self.optics.columns:
            raise self._error(f"missing column {name} (needed for {why})")
        values = np.asarray(self.column(name), dtype=np.float64)
        if np.isnan(values).any():
            row = int(np.flatnonzero(np.isnan(values))[0]) + 1
            raise self._error(f"column {name} has no value in particle row {row} (needed for {why})")
        return values

    # ---------------------------------------------------------------- optics
    def _image_sizes(self) -> np.ndarray:
        """``rlnImageSize`` per optics row, read from a stack header where the STAR file lacks it."""
        _fill_image_sizes(self, required=True)
        return self.optics["rlnImageSize"].to_numpy().astype(np.int64)

    def optics_groups(self) -> dict[int, OpticsGroup]:
        """The optics groups by number."""
        sizes = self._image_sizes()
        opt = self.optics

        def val(col, i, default=np.nan):
            return float(opt[col].iloc[i]) if col in opt.columns else default

        groups = {}
        for i in range(len(opt)):
            number = int(opt["rlnOpticsGroup"].iloc[i])
            groups[number] = OpticsGroup(
                number=number, name=str(opt["rlnOpticsGroupName"].iloc[i]),
                pixel_size_angstrom=val("rlnImagePixelSize", i), image_size_px=int(sizes[i]),
                voltage_kv=val("rlnVoltage", i), spherical_aberration_mm=val("rlnSphericalAberration", i),
                amplitude_contrast=val("rlnAmplitudeContrast", i, 0.0),
                ctf_phase_flipped=bool(val("rlnCtfDataArePhaseFlipped", i, 0.0)),
                ctf_premultiplied=bool(val("rlnCtfDataAreCtfPremultiplied", i, 0.0)))
        return groups

    def optics_group_numbers(self) -> np.ndarray:
        """``rlnOpticsGroup`` per particle, ``(n,)`` int64."""
        return self.particles["rlnOpticsGroup"].to_numpy().astype(np.int64)

    def pixel_size_angstrom(self) -> np.ndarray:
        """Image pixel size per particle, ``(n,)`` float64 in Å."""
        return self.optics["rlnImagePixelSize"].to_numpy(dtype=np.float64)[self._group_rows()]

    def image_size_px(self) -> np.ndarray:
        """Image box size per particle, ``(n,)`` int64 in pixels."""
        return self._image_sizes()[self._group_rows()]

    # ---------------------------------------------------------------- per particle
    def image_names(self) -> list[str]:
        """``rlnImageName`` per particle (``"000012@Extract/job007/x.mrcs"``)."""
        return [str(s) for s in self.particles["rlnImageName"].tolist()]

    def has_poses(self) -> bool:
        """Whether every particle has ``rlnAngleRot/Tilt/Psi``."""
        cols = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
        return all(c in self.particles.columns for c in cols) and not self.particles[cols].isna().any().any()

    def angles_deg(self) -> np.ndarray:
        """RELION Euler angles ``(n, 3)`` float64 in degrees: rot, tilt, psi."""
        return np.stack([self._float_column(c, "poses")
                         for c in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")], axis=1)

    def origins_angstrom(self) -> np.ndarray:
        """Origins ``(n, 2)`` float64 in Å, ``(x, y)`` (zeros where the file has none)."""
        return np.stack([np.asarray(self.column(c, 0.0), dtype=np.float64)
                         for c in ("rlnOriginXAngst", "rlnOriginYAngst")], axis=1)

    def ctf_parameters(self, rows=None):
        """:class:`~relion_cryopares.ctf.CtfParameters` (float64 tensors) of all particles or ``rows``.

        Missing ``rlnPhaseShift``/``rlnCtfBfactor``/``rlnCtfScalefactor`` default to 0/0/1, missing
        ``rlnDefocusV`` to ``rlnDefocusU``, ``rlnDefocusAngle`` and ``rlnAmplitudeContrast`` to 0
        (RELION's defaults); missing defocus, voltage or Cs raise :class:`InputError`.
        """
        import torch

        from relion_cryopares.ctf import CtfParameters

        sub = self if rows is None else self.select(rows)
        why = "CTF"
        defocus_u = sub._float_column("rlnDefocusU", why)
        has_v = "rlnDefocusV" in sub.particles.columns
        values = dict(
            defocus_u_angstrom=defocus_u,
            defocus_v_angstrom=sub._float_column("rlnDefocusV", why) if has_v else defocus_u,
            defocus_angle_deg=np.asarray(sub.column("rlnDefocusAngle", 0.0), dtype=np.float64),
            voltage_kv=sub._float_column("rlnVoltage", why),
            spherical_aberration_mm=sub._float_column("rlnSphericalAberration", why),
            amplitude_contrast=np.asarray(sub.column("rlnAmplitudeContrast", 0.0), dtype=np.float64),
            phase_shift_deg=np.asarray(sub.column("rlnPhaseShift", 0.0), dtype=np.float64),
            bfactor_angstrom2=np.asarray(sub.column("rlnCtfBfactor", 0.0), dtype=np.float64),
            scale=np.asarray(sub.column("rlnCtfScalefactor", 1.0), dtype=np.float64),
            pixel_size_angstrom=sub.pixel_size_angstrom(),
        )
        return CtfParameters(**{k: torch.tensor(np.array(v, dtype=np.float64), dtype=torch.float64)
                                for k, v in values.items()})

    def random_subset(self) -> np.ndarray | None:
        """``rlnRandomSubset`` ``(n,)`` int64 in {1, 2}, or None unless every particle has 1 or 2."""
        if "rlnRandomSubset" not in self.particles.columns:
            return None
        values = self.particles["rlnRandomSubset"].to_numpy(dtype=np.float64, na_value=np.nan)
        if not np.isin(values, (1, 2)).all():
            return None
        return values.astype(np.int64)

    # ---------------------------------------------------------------- derived sets
    def select(self, mask_or_indices) -> "ParticleStar":
        """The particles at the given rows (bool mask ``(n,)``, indices or slice), same optics."""
        idx = _as_index(mask_or_indices, len(self))
        particles = self.particles.iloc[idx].reset_index(drop=True)
        return ParticleStar(self.optics, particles, self.path, self.other_blocks)

    def with_columns(self, **columns) -> "ParticleStar":
        """A copy with particle columns set or added, e.g. ``with_columns(rlnAngleRot=rot_deg)``."""
        particles = self.particles.copy()
        for name, values in columns.items():
            particles[name] = _to_numpy(values, len(particles))
        star = ParticleStar(self.optics, particles, self.path, self.other_blocks)
        if "rlnOpticsGroup" in columns:
            star._group_rows()
        return star

    @staticmethod
    def concat(stars) -> "ParticleStar":
        """Particles of several sets one after another; optics groups must agree where numbers match."""
        stars = list(stars)
        if not stars:
            raise ValueError("nothing to concatenate")
        optics = stars[0].optics.copy()
        for other in stars[1:]:
            for _, row in other.optics.iterrows():
                mine = optics.index[optics["rlnOpticsGroup"] == row["rlnOpticsGroup"]]
                if len(mine) == 0:
                    optics = pd.concat([optics, row.to_frame().T], ignore_index=True)
                    continue
                for col in _CORE_OPTICS:
                    a = optics.at[mine[0], col] if col in optics.columns else np.nan
                    b = row[col] if col in row.index else np.nan
                    if pd.notna(a) and pd.notna(b) and not np.isclose(float(a), float(b), rtol=1e-6):
                        raise InputError(f"cannot join particle sets: optics group {row['rlnOpticsGroup']} "
                                         f"has {col} {a} and {b}", other._name)
        optics = optics.infer_objects()
        particles = pd.concat([s.particles for s in stars], ignore_index=True)
        return ParticleStar(optics, particles, stars[0].path, stars[0].other_blocks)

    def read_images(self, reader, rows=None) -> np.ndarray:
        """Images ``(k, h, w)`` float32 of all particles or ``rows``, through an ImageStackReader."""
        idx = _as_index(rows, len(self))
        names = self.particles["rlnImageName"].to_numpy()[idx]
        source = self.path.name if self.path is not None else None
        return reader.read([str(s) for s in names], source=source, row_numbers=(idx + 1).tolist())


def _fill_image_sizes(star: ParticleStar, required: bool) -> None:
    """Fill ``rlnImageSize`` of optics groups that lack it from the first stack of each group."""
    opt = star.optics
    if "rlnImageSize" not in opt.columns:
        opt["rlnImageSize"] = pd.array([pd.NA] * len(opt), dtype="Int64")
    missing = np.flatnonzero(opt["rlnImageSize"].isna().to_numpy())
    if missing.size == 0:
        opt["rlnImageSize"] = opt["rlnImageSize"].astype(np.int64)
        return
    groups = star.particles["rlnOpticsGroup"].to_numpy()
    for row in missing:
        number = opt["rlnOpticsGroup"].iloc[row]
        members = np.flatnonzero(groups == number)
        if members.size == 0:
            if required:
                raise InputError(f"optics group {number} has no rlnImageSize and no particles", star._name)
            continue
        _, stack = parse_image_name(star.particles["rlnImageName"].iloc[members[0]])
        try:
            _, h, w = stack_shape(stack)
        except InputError as exc:
            if required:
                raise InputError(f"{exc.problem} (referenced by {Path(star._name).name} row "
                                 f"{members[0] + 1}; needed for the image size)", stack) from None
            log.debug("%s: image size of optics group %s unknown for now (%s)", star._name, number, exc)
            continue
        if h != w:
            raise InputError(f"images are not square ({w} x {h} px)", stack)
        opt.loc[opt.index[row], "rlnImageSize"] = h
    if not opt["rlnImageSize"].isna().any():
        opt["rlnImageSize"] = opt["rlnImageSize"].astype(np.int64)
