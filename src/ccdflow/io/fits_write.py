"""A calibrated light's HDUs written without building astropy HDU objects for them.

`astropy.io.fits.HDUList.writeto` copies a header into each new HDU's own, then formats every
card: for a 512^2 light about 2 ms of a 6 ms product, once per light of a night. Here the
primary header's cards are formatted once (`astropy.io.fits.Header.tostring`); the mandatory
cards and the extensions' headers, which depend only on the shapes, types and a few fixed
cards, are made by astropy once per process and kept as text; the arrays are written big-endian
from their own memory. The file is byte for byte the one ``writeto`` makes (tested); a header
holding a card astropy would place itself is left to ``writeto``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, BinaryIO

import numpy as np
from astropy.io import fits

__all__ = ["ExtensionSpec", "plain_header", "write_image_hdus"]

BLOCK = 2880
#: Cards astropy places or removes itself when it builds an image HDU from a header.
_PLACED = frozenset({"SIMPLE", "XTENSION", "BITPIX", "NAXIS", "EXTEND", "PCOUNT", "GCOUNT",
                     "GROUPS", "BSCALE", "BZERO", "TFIELDS", "END", "EXTNAME", "BLANK"})

#: An extension: its array, name and extra cards ((key, value, comment), ...).
ExtensionSpec = tuple[np.ndarray, str, tuple[tuple[str, Any, str], ...]]


def plain_header(header: fits.Header) -> bool:
    """Whether ``header`` has no card astropy would place itself (``BITPIX``, ``NAXISn``...).

    Examples
    --------
    >>> plain_header(fits.Header([("EXPTIME", 30.0)])), plain_header(fits.Header([("NAXIS1", 4)]))
    (True, False)
    """
    return not any(key in _PLACED or key.startswith("NAXIS") for key in header.keys())


def write_image_hdus(out: BinaryIO, header: fits.Header, image: np.ndarray,
                     extensions: Sequence[ExtensionSpec]) -> None:
    """Write a primary image with ``header`` and image extensions to ``out``, as ``writeto`` would.

    Parameters
    ----------
    out : binary stream
        Where the file's bytes go, in order.
    header : astropy.io.fits.Header
        The primary header's own cards; `plain_header` must hold.
    image : numpy.ndarray
        The primary 2-D image.
    extensions : sequence of (array, name, cards)
        Each extension's 2-D array, ``EXTNAME`` and further cards.

    Raises
    ------
    ValueError
        If ``header`` holds a card astropy places itself.
    """
    if not plain_header(header):
        raise ValueError("the header holds cards astropy places itself: write it with writeto")
    text = _primary_cards(image.shape, image.dtype.str) + header.tostring(padding=False)
    out.write(_padded(text.encode("ascii"), b" "))
    _write_array(out, image)
    for array, name, cards in extensions:
        out.write(_extension_header(array.shape, array.dtype.str, name, tuple(cards)))
        _write_array(out, array)


@lru_cache(maxsize=16)
def _primary_cards(shape: tuple[int, ...], dtype: str) -> str:
    hdu = fits.PrimaryHDU(np.broadcast_to(np.zeros((), dtype), shape))
    hdu.update_header()
    return hdu.header.tostring(endcard=False, padding=False)


@lru_cache(maxsize=32)
def _extension_header(shape: tuple[int, ...], dtype: str, name: str,
                      cards: tuple[tuple[str, Any, str], ...]) -> bytes:
    # astropy writes it: its header is the bytes between the empty primary's and the data
    hdu = fits.ImageHDU(np.broadcast_to(np.zeros((), dtype), shape), name=name)
    for key, value, comment in cards:
        hdu.header[key] = (value, comment)
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buffer)
    with fits.open(io.BytesIO(buffer.getvalue())) as hdul:
        info = hdul[1].fileinfo()
    return buffer.getvalue()[info["hdrLoc"]:info["datLoc"]]


def _write_array(out: BinaryIO, array: np.ndarray) -> None:
    """The array big-endian, then zeros to the end of the block.

    A native writable array is swapped in place and back (no copy of the frame), as astropy does.
    """
    big = array.dtype.newbyteorder(">")
    if array.dtype.byteorder in ("<", "=") and array.dtype.itemsize > 1 and array.flags.writeable \
            and array.flags.c_contiguous and np.little_endian:
        array.byteswap(inplace=True)
        try:
            out.write(memoryview(array.view(big)).cast("B"))
        finally:
            array.byteswap(inplace=True)
    else:
        out.write(memoryview(np.ascontiguousarray(array, dtype=big)).cast("B"))
    rest = -array.nbytes % BLOCK
    if rest:
        out.write(bytes(rest))


def _padded(data: bytes, fill: bytes) -> bytes:
    return data + fill * (-len(data) % BLOCK)
