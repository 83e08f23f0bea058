"""Named bit planes of the ``MASK`` extension, the header cards that document them, and mask merging.

The mask is stored as `MASK_DTYPE` (uint8): the eight planes below fill it exactly, so a ninth plane
would need a wider dtype (and `mask_header` then documents it with the same cards).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntFlag
from typing import Any

import numpy as np

__all__ = ["MASK_DTYPE", "MaskBits", "mask_header", "merge_masks", "read_mask_header"]

MASK_DTYPE = np.dtype(np.uint8)
"""Storage dtype of a mask: the eight `MaskBits` planes fit in 8 bits."""

_KEY = "MASKBIT{}"
_NAME_KEY = "MASKNAME"


class MaskBits(IntFlag):
    """Bit planes of the ``MASK`` extension; a pixel's value is the OR of the planes that apply.

    The four lowest planes are set by the calibration kernel (``ccdflow.kernels.calibrate.FLAG_*``,
    same values); the others by the data-quality steps.

    Examples
    --------
    >>> int(MaskBits.SATURATED | MaskBits.BLEED)
    34
    >>> MaskBits(34).name
    'SATURATED|BLEED'
    """

    NONFINITE_INPUT = 1
    """The raw pixel (or the overscan level under it) was NaN or infinite: not calibrated."""
    SATURATED = 2
    """The raw pixel was at or above the saturation level (ADU)."""
    FLAT_INVALID = 4
    """The flat's value is zero or negative there: not calibrated (a flat without a value there
    sets `NO_MASTER_DATA`)."""
    NO_MASTER_DATA = 8
    """A master had no value there (all inputs rejected or NaN): not calibrated."""
    BAD = 16
    """Listed in the bad-pixel mask (hot, dead/cold, bad column, or the user's own mask)."""
    BLEED = 32
    """Part of a bleed trail: the run along the readout column from a saturated pixel."""
    COSMIC_RAY = 64
    """Detected as a cosmic-ray hit on this single frame."""
    INTERPOLATED = 128
    """The value was replaced by interpolation from unflagged neighbours."""


def mask_header(*, dtype: Any = MASK_DTYPE) -> list[tuple[str, Any, str]]:
    """FITS header cards documenting each bit plane, for the ``MASK`` extension.

    One card ``MASKBITn = 'NAME'`` per plane, ``n`` the bit index (value ``2**n``), its comment a
    short meaning, plus ``MASKNAME`` naming the flag set. The cards are plain ``(key, value,
    comment)`` tuples, which ``astropy.io.fits.Header`` accepts as they are.

    Parameters
    ----------
    dtype : numpy dtype
        The integer dtype the mask is stored in; every plane must fit in it.

    Returns
    -------
    list of (str, object, str)

    Raises
    ------
    ValueError
        If ``dtype`` is not an unsigned integer type wide enough for every plane.

    Examples
    --------
    >>> mask_header()[1]
    ('MASKBIT0', 'NONFINITE_INPUT', 'value 1: non-finite raw pixel or overscan level')
    """
    dtype = np.dtype(dtype)
    top = max(bit.value for bit in MaskBits).bit_length()
    if dtype.kind != "u" or dtype.itemsize * 8 < top:
        raise ValueError(f"mask dtype {dtype} cannot hold {top} bit planes; use an unsigned integer type")
    cards: list[tuple[str, Any, str]] = [(_NAME_KEY, "MaskBits", "bit planes of this mask (ccdflow)")]
    for bit in MaskBits:
        index = bit.value.bit_length() - 1
        cards.append((_KEY.format(index), bit.name, f"value {bit.value}: {_SHORT[bit]}"))
    return cards


# FITS comments are short (the card is 80 characters); the docstrings above carry the full meaning.
_SHORT = {
    MaskBits.NONFINITE_INPUT: "non-finite raw pixel or overscan level",
    MaskBits.SATURATED: "raw pixel at or above saturation",
    MaskBits.FLAT_INVALID: "flat value <= 0",
    MaskBits.NO_MASTER_DATA: "master without a value",
    MaskBits.BAD: "bad pixel (bad-pixel mask)",
    MaskBits.BLEED: "bleed trail",
    MaskBits.COSMIC_RAY: "cosmic ray",
    MaskBits.INTERPOLATED: "replaced by interpolation",
}


def read_mask_header(header: Mapping[str, Any]) -> dict[str, int]:
    """Read back the bit planes documented by `mask_header`: plane name -> bit value.

    Parameters
    ----------
    header : Mapping
        A header (``astropy.io.fits.Header`` or a dict) holding ``MASKBITn`` cards.

    Returns
    -------
    dict of str to int
        Each documented plane's name and value (``2**n``); empty if the header documents none.
        Names unknown to this version are kept, so a mask written by a newer version still reads.

    Raises
    ------
    ValueError
        If two cards claim the same name.

    Examples
    --------
    >>> planes = read_mask_header(dict((key, value) for key, value, _ in mask_header()))
    >>> planes["COSMIC_RAY"]
    64
    """
    planes: dict[str, int] = {}
    for index in range(64):
        name = header.get(_KEY.format(index))
        if name is None:
            continue
        name = str(name).strip()
        if name in planes:
            raise ValueError(f"mask plane {name!r} documented twice ({_KEY.format(index)})")
        planes[name] = 1 << index
    return planes


def merge_masks(mask: Any, user_mask: Any, *, bit: MaskBits = MaskBits.BAD) -> Any:
    """OR a user's own mask (nonzero = bad) into a bit mask as plane ``bit``.

    Works on numpy and dask arrays alike (elementwise, lazy for dask).

    Parameters
    ----------
    mask : array of `MASK_DTYPE`
        The bit mask.
    user_mask : array
        Same shape; any nonzero (or True) value marks a bad pixel. NaN counts as bad.

    Returns
    -------
    array of `MASK_DTYPE`
        ``mask | bit`` where ``user_mask`` is nonzero, ``mask`` elsewhere.

    Raises
    ------
    ValueError
        If the shapes differ.

    Examples
    --------
    >>> merge_masks(np.array([0, 2, 0], np.uint8), np.array([0, 0, 1])).tolist()
    [0, 2, 16]
    """
    if tuple(mask.shape) != tuple(user_mask.shape):
        raise ValueError(f"user mask shape {tuple(user_mask.shape)} differs from {tuple(mask.shape)}")
    # != 0 is True for NaN, so an undefined user value counts as bad
    flagged = user_mask != 0
    return (mask | (flagged.astype(MASK_DTYPE) * MASK_DTYPE.type(bit))).astype(MASK_DTYPE)
