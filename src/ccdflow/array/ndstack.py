"""A list of astropy `~astropy.nddata.NDData` frames as one lazy stack: masks as NaN, one unit."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import astropy.units as u
import dask.array as da
import numpy as np
from astropy.nddata import NDData

from ccdflow.errors import CcdflowWarning, ConfigError

__all__ = ["NDStack", "UncertaintyIgnoredWarning", "is_nddata_list", "stack_nddata"]


class UncertaintyIgnoredWarning(CcdflowWarning):
    """Input frames carried uncertainties that a combine does not use."""


@dataclass(frozen=True)
class NDStack:
    """Frames stacked for `ccdflow.array.combination.combine`.

    Attributes
    ----------
    data : dask.array.Array
        (N, rows, columns) float32; masked pixels are NaN.
    unit : astropy.units.UnitBase or None
        The frames' common unit; ``None`` when no frame has one.
    """

    data: da.Array
    unit: u.UnitBase | None


def is_nddata_list(frames: object) -> bool:
    """Whether ``frames`` is a list or tuple of `~astropy.nddata.NDData` (CCDData included)."""
    return isinstance(frames, list | tuple) and bool(frames) and all(isinstance(f, NDData) for f in frames)


def _common_unit(frames: Sequence[NDData]) -> u.UnitBase | None:
    units = [None if f.unit is None else u.Unit(f.unit) for f in frames]
    distinct = list(dict.fromkeys(units))
    if len(distinct) > 1:
        # an equivalent spelling (adu vs ADU) is the same unit; anything else is a mix
        if None in distinct or any(unit != distinct[0] for unit in distinct):
            named = ", ".join(f"frame {i}: {'no unit' if unit is None else unit.to_string()}"
                              for i, unit in enumerate(units))
            raise ConfigError("stack", f"frames have mixed units ({named}); convert them to one unit")
    return distinct[0]


def stack_nddata(frames: Sequence[NDData]) -> NDStack:
    """Stack NDData frames lazily; masked pixels become NaN so that no combine uses them.

    Parameters
    ----------
    frames : sequence of astropy.nddata.NDData
        2-D frames of one shape and one unit (`~astropy.nddata.CCDData` included). A boolean
        ``mask`` marks pixels to leave out.

    Returns
    -------
    NDStack
        The float32 stack and the common unit.

    Raises
    ------
    ConfigError
        If the frames are not 2-D, differ in shape, or have mixed units (each frame's unit named).

    Warns
    -----
    UncertaintyIgnoredWarning
        If a frame has an uncertainty: the combined error comes from the survivors' scatter, as
        in ccdproc's ``combine``, so input uncertainties are not propagated.

    Examples
    --------
    >>> from astropy.nddata import CCDData
    >>> frames = [CCDData(np.full((2, 2), v), unit="adu") for v in (1.0, 2.0)]
    >>> frames[1].mask = np.array([[True, False], [False, False]])
    >>> result = stack_nddata(frames)
    >>> result.unit, float(result.data[1, 0, 0].compute())
    (Unit("adu"), nan)
    """
    if not frames:
        raise ConfigError("stack", "no frames to combine")
    unit = _common_unit(frames)
    shape = np.shape(frames[0].data)
    layers = []
    for i, frame in enumerate(frames):
        data = np.asarray(frame.data)
        if data.ndim != 2 or data.shape != shape:
            raise ConfigError("stack", f"frame {i} has shape {data.shape}; expected 2-D {shape}")
        layer = da.from_array(data.astype(np.float32, copy=False), chunks=-1)
        if frame.mask is not None and np.any(frame.mask):
            layer = da.where(da.from_array(np.asarray(frame.mask, dtype=bool), chunks=-1),
                             np.float32(np.nan), layer)
        layers.append(layer)
    if any(f.uncertainty is not None for f in frames):
        warnings.warn("input uncertainties are not propagated: the combined error is the standard "
                      "error of the surviving values", UncertaintyIgnoredWarning, stacklevel=3)
    return NDStack(data=da.stack(layers), unit=unit)
