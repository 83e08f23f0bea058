"""What makes a FITS file unreadable: the exceptions a corrupt file raises, and unparsable cards."""

from __future__ import annotations

import math
import zlib

from astropy.io import fits
from astropy.io.fits.verify import VerifyError
from astropy.utils.exceptions import AstropyUserWarning

from ccdflow.errors import FrameReadError
from ccdflow.io.fits_plain import HeaderText

try:  # raised by astropy's tile decompression (its cfitsio code); the module is private
    from astropy.io.fits.hdu.compressed._compression import CfitsioException
except ImportError:  # pragma: no cover - an astropy without it raises the other kinds
    CfitsioException = OSError

__all__ = ["READ_ERRORS", "check_cards"]

#: Exceptions that reading a damaged file raises from astropy, zlib or the decompressor; each is
#: turned into a `FrameReadError` naming the file. The warnings arrive as exceptions only under an
#: "error" warnings filter (e.g. "File may have been truncated", an overflow decoding tile
#: descriptors).
READ_ERRORS = (
    OSError, EOFError, ValueError, TypeError, KeyError, IndexError, zlib.error, CfitsioException,
    VerifyError, AstropyUserWarning, RuntimeWarning,
)


def check_cards(header: fits.Header | HeaderText, *, path: str, hdu: int) -> None:
    """Raise if a card of ``header`` has a value astropy cannot parse, or ``BSCALE`` is 0.

    astropy parses card values only when they are used, and then either raises a bare
    ``VerifyError`` (``EXPTIME = 12x.0``) or rewrites the card with a warning (an unterminated
    string), depending on how it is used. Checking every card at once gives one behaviour.

    Parameters
    ----------
    header : astropy.io.fits.Header or HeaderText
        The header of the HDU read. A `HeaderText` whose cards all have values of a plain form
        (`ccdflow.io.fits_plain.simple_cards`) is not parsed: none of them can fail.
    path : str
        Its file, for the message.
    hdu : int
        Its HDU index, for the message.

    Raises
    ------
    FrameReadError
        Naming the file, the HDU and the first card that cannot be parsed, or ``BSCALE`` when
        it is 0 or not finite.

    Notes
    -----
    Only values are checked. Cards astropy reads despite the standard (a lowercase keyword,
    a missing space after ``=``) are accepted, as astropy accepts them.

    Examples
    --------
    >>> check_cards(fits.Header([("EXPTIME", 12.0)]), path="raw.fits", hdu=0)
    >>> damaged = fits.Header.fromstring("EXPTIME =                12x.0".ljust(80))
    >>> try:
    ...     check_cards(damaged, path="raw.fits", hdu=0)
    ... except FrameReadError as err:
    ...     print(err)
    raw.fits[0]: header card EXPTIME has a value that cannot be parsed
    """
    if isinstance(header, HeaderText):
        if header.simple:
            _check_scale(header.values({"BSCALE"}).get("BSCALE", 1.0), path=path, hdu=hdu)
            return
        header = header.header
    for card in header.cards:
        try:
            card.value  # noqa: B018 - parsing is the check
        except VerifyError as err:
            # not card.image: formatting an invalid card makes astropy "fix" it, with a warning
            raise FrameReadError(
                path, f"header card {card.keyword} has a value that cannot be parsed", hdu=hdu
            ) from err
    _check_scale(header.get("BSCALE", 1.0), path=path, hdu=hdu)


def _check_scale(value, *, path: str, hdu: int) -> None:
    # a zero (or non-finite) scale maps every stored value to BZERO: the pixels are lost
    if isinstance(value, int | float) and not (math.isfinite(value) and value != 0):
        raise FrameReadError(path, f"BSCALE = {value!r}: the pixel values cannot be recovered",
                             hdu=hdu)
