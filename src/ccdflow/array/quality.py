"""Lazy per-frame quality steps: bleed-trail masks and interpolation over flagged pixels."""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np

from ccdflow.array.masks import MASK_DTYPE, MaskBits
from ccdflow.kernels.bleed import DEFAULT_BLEED_FRACTION, bleed_trails, grow_mask
from ccdflow.kernels.fill import interpolate_rows

__all__ = ["bleed_mask", "fill_interpolate"]

#: Planes whose pixels `fill_interpolate` replaces by default: everything that makes a value untrustworthy.
DEFAULT_FILL_BITS = (MaskBits.NONFINITE_INPUT | MaskBits.SATURATED | MaskBits.FLAT_INVALID
                     | MaskBits.NO_MASTER_DATA | MaskBits.BAD | MaskBits.BLEED | MaskBits.COSMIC_RAY)


def _trails(raw, *, saturation, fraction, axis, radius, footprint):
    found = bleed_trails(raw, saturation=saturation, fraction=fraction, axis=axis)
    return grow_mask(found, radius=radius, footprint=footprint) if radius else found


def bleed_mask(
    raw: Any,
    *,
    saturation: float,
    fraction: float = DEFAULT_BLEED_FRACTION,
    axis: int = 0,
    radius: int = 0,
    footprint: str = "square",
) -> da.Array:
    """Lazy bleed-trail mask of one raw frame (see `ccdflow.kernels.bleed.bleed_trails`).

    Parameters
    ----------
    raw : array
        2-D raw frame in ADU (trimmed to the area the mask is wanted for).
    saturation : float
        ADU.
    fraction : float
        Trails are followed down to ``fraction * saturation``.
    axis : {0, 1}
        Readout axis along which charge bleeds.
    radius : int
        Grow the trails by this many pixels (0: not grown).
    footprint : {"square", "disc"}

    Returns
    -------
    dask.array.Array of bool
        One chunk per frame (a trail may cross the whole frame).

    Raises
    ------
    ValueError
        If ``raw`` is not 2-D, ``fraction`` not in (0, 1], or ``axis`` not 0 or 1.

    Examples
    --------
    >>> raw = np.full((6, 3), 100.0); raw[1:4, 1] = [600.0, 1000.0, 700.0]
    >>> bleed_mask(raw, saturation=1000.0).compute()[:, 1].astype(int).tolist()
    [0, 1, 1, 1, 0, 0]
    """
    raw = da.asarray(raw)
    if raw.ndim != 2:
        raise ValueError(f"expected a 2-D frame, got shape {raw.shape}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if axis not in (0, 1):
        raise ValueError(f"axis must be 0 or 1, got {axis}")
    raw = raw.rechunk(raw.shape)
    return raw.map_blocks(_trails, saturation=float(saturation), fraction=float(fraction), axis=axis,
                          radius=int(radius), footprint=footprint, dtype=bool, meta=np.empty((0, 0), bool))


def _fill(image, error, mask, *, bits):
    filled, err, done = interpolate_rows(image, (mask & bits) != 0, error=error)
    out_mask = mask | (done.astype(MASK_DTYPE) * MASK_DTYPE.type(MaskBits.INTERPOLATED))
    err = np.full(image.shape, np.nan, np.float32) if err is None else err
    return np.stack([filled.astype(np.float32), err.astype(np.float32), out_mask.astype(np.float32)])


def fill_interpolate(
    image: Any, mask: Any, *, error: Any = None, bits: int = DEFAULT_FILL_BITS
) -> tuple[da.Array, da.Array | None, da.Array]:
    """Replace pixels with any of ``bits`` set by linear interpolation along rows, lazily.

    Parameters
    ----------
    image : array
        2-D image (any number of frames can be given one by one).
    mask : array of uint8
        Its `MaskBits` mask.
    error : array, optional
        Its 1-sigma errors, interpolated as `ccdflow.kernels.fill.interpolate_rows` says.
    bits : int
        Planes to replace (default `DEFAULT_FILL_BITS`: all but ``INTERPOLATED``).

    Returns
    -------
    image : dask.array.Array of float32
    error : dask.array.Array of float32 or None
    mask : dask.array.Array of uint8
        ``mask`` with `MaskBits.INTERPOLATED` added where a value was replaced; the original planes
        are kept, so the reason stays known.

    Examples
    --------
    >>> img = np.array([[1.0, 50.0, 3.0]]); m = np.array([[0, int(MaskBits.COSMIC_RAY), 0]], np.uint8)
    >>> out, _, mask = fill_interpolate(img, m)
    >>> out.compute().tolist(), mask.compute().tolist()
    ([[1.0, 2.0, 3.0]], [[0, 192, 0]])
    """
    image = da.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {image.shape}")
    # rows are interpolated whole: bands of full rows, the image's own row chunking kept
    chunks = (image.chunks[0], (image.shape[1],))
    image = image.rechunk(chunks)
    mask = da.asarray(mask).astype(MASK_DTYPE).rechunk(chunks)
    err = None if error is None else da.asarray(error).rechunk(chunks)
    out = da.map_blocks(_fill, image, err, mask, bits=int(bits), new_axis=0,
                        chunks=((3,),) + chunks, dtype=np.float32, meta=np.empty((0, 0, 0), np.float32))
    return out[0], (None if error is None else out[1]), out[2].astype(MASK_DTYPE)
