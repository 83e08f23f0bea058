"""FITS pixel scaling (``BSCALE``, ``BZERO``, ``BLANK``) of stored values into float32, rounded once."""

from __future__ import annotations

import numpy as np

__all__ = ["scale_into"]

#: Elements converted per step on the float64 path: a few MB of temporary, never a whole frame.
_STEP = 1 << 18
#: Integers up to this magnitude are exact in float32 (24-bit significand).
_F32_EXACT = 1 << 24


def _float32_is_exact(dtype: np.dtype, bscale: float, bzero: float) -> bool:
    """Whether every stored value, cast to float32 and shifted by ``bzero``, stays exact."""
    if dtype.kind == "f":
        return bscale == 1.0 and bzero == 0.0
    if dtype.itemsize > 2 or bscale != 1.0 or bzero != int(bzero):
        return False
    largest = 1 << (8 * dtype.itemsize)  # 8- and 16-bit values: |v| < 2**16
    return abs(bzero) + largest < _F32_EXACT


def _rows_per_step(raw: np.ndarray) -> int:
    width = int(np.prod(raw.shape[1:], dtype=np.int64)) if raw.ndim > 1 else 1
    return max(1, _STEP // max(width, 1))


def _scale_exact_integers(raw: np.ndarray, out: np.ndarray, bzero: float) -> None:
    """64-bit integers with ``BSCALE = 1`` and ``BZERO`` 0 or 2**63: integer arithmetic, one cast.

    float64 holds only 53 bits, so going through it would round twice.
    """
    if bzero == 0.0:
        np.copyto(out, raw, casting="unsafe")
        return
    unsigned = raw.view(raw.dtype.str.replace("i", "u"))  # same bytes, same byte order
    step = _rows_per_step(raw)
    flip = np.uint64(1 << 63)  # adding 2**63 to a signed value is flipping its top bit
    for r in range(0, raw.shape[0], step):
        np.copyto(out[r:r + step], np.bitwise_xor(unsigned[r:r + step], flip), casting="unsafe")


def _scale_float64(raw: np.ndarray, out: np.ndarray, bscale: float, bzero: float) -> None:
    """``raw * bscale + bzero`` in float64, step by step, each step rounded once into ``out``."""
    step = _rows_per_step(raw)
    for r in range(0, raw.shape[0], step):
        wide = raw[r:r + step].astype(np.float64)
        if bscale != 1.0:
            wide *= bscale
        if bzero != 0.0:
            wide += bzero
        np.copyto(out[r:r + step], wide, casting="same_kind")


def scale_into(raw: np.ndarray, out: np.ndarray, *, bscale: float = 1.0, bzero: float = 0.0,
               blank: int | None = None) -> None:
    """Write the physical values ``raw * bscale + bzero`` of stored FITS pixels into float32 ``out``.

    Parameters
    ----------
    raw : numpy.ndarray
        Stored pixel values (at least 1-D), any byte order: integers (BITPIX 8, 16, 32, 64) or
        floats.
    out : numpy.ndarray
        float32 array of ``raw``'s shape, filled in place.

    Raises
    ------
    ValueError
        If ``out`` is not float32 of ``raw``'s shape.
    bscale, bzero : float
        The HDU's ``BSCALE`` and ``BZERO``.
    blank : int, optional
        The HDU's ``BLANK``: integer pixels equal to it become NaN.

    Notes
    -----
    Each value is rounded to float32 once, from its exact value or from its float64 value:

    - 8- and 16-bit integers with ``BSCALE = 1`` and an integer ``BZERO`` (``uint16`` raw frames)
      are exact in float32 at every step, so they are cast and shifted in float32 in place;
    - 64-bit integers with ``BSCALE = 1`` and ``BZERO`` 0 or ``2**63`` are shifted as integers and
      cast once, since float64 cannot hold them;
    - everything else (32-bit integers such as ``uint32`` with ``BZERO = 2**31``, any other
      ``BSCALE``/``BZERO``) is scaled in float64 a few rows at a time, then rounded. Scaling in
      float32 instead would lose up to 128 ADU near ``2**32``.

    astropy scales 32- and 64-bit data in float64 as well, so its values cast to float32 equal
    these; for 8- and 16-bit data with a non-unit ``BSCALE`` astropy computes in float32 and may
    differ by one unit in the last place.

    Examples
    --------
    >>> stored = np.array([[-2**31, -1, 2**31 - 1]], dtype=">i4")  # uint32 frame: BZERO = 2**31
    >>> out = np.empty(stored.shape, np.float32)
    >>> scale_into(stored, out, bzero=2.0**31)
    >>> out.tolist()
    [[0.0, 2147483648.0, 4294967296.0]]
    """
    if raw.ndim == 0 or raw.shape != out.shape or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape {raw.shape}, not {out.dtype} {out.shape}")
    if _float32_is_exact(raw.dtype, bscale, bzero):
        np.copyto(out, raw, casting="unsafe")
        if bzero != 0.0:
            out += np.float32(bzero)
    elif raw.dtype.kind in "iu" and raw.dtype.itemsize == 8 and bscale == 1.0 and (
            bzero == 0.0 or (bzero == 2.0**63 and raw.dtype.kind == "i")):
        _scale_exact_integers(raw, out, bzero)
    else:
        _scale_float64(raw, out, bscale, bzero)
    if blank is not None and raw.dtype.kind in "iu":
        out[raw == blank] = np.nan  # undefined pixels, as astropy reads them
