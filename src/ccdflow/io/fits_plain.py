"""The primary image of a plain FITS file, its header read with ``pread`` instead of `fits.open`.

Opening a file through `astropy.io.fits.open` costs about 0.5 ms before a card is parsed, and
formatting the parsed header back into text another 1 ms: most of a night plan's time, for
frames that are nearly all plain files whose primary HDU is the image. That case is read here:
the header blocks with one or two ``pread`` calls, the cards parsed by astropy
(`astropy.io.fits.Header.fromstring`), and the header kept as the file's own text. Anything else
(a compressed or gzip file, an extension, random groups, a truncated file, a header astropy
would have to repair) gives None and is read through `fits.open` as before, so its result and
its errors stay astropy's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from astropy.io import fits

__all__ = ["LAYOUT_KEYS", "HeaderText", "PrimaryImage", "read_primary", "simple_cards"]

BLOCK = 2880
CARD = 80
_START = b"SIMPLE  =                    T"
_END = b"END" + b" " * 77
_FIRST_READ = 4 * BLOCK  # 144 cards: most headers in one read
_MAX_HEADER = 1 << 20  # beyond 13,000 cards, leave the file to astropy

#: A card whose value astropy parses without fail: a keyword, ``= `` in columns 9-10, then
#: nothing, a logical, an integer, a real or a string of printable characters without quotes,
#: then an optional comment.
#: Everything else (quotes inside strings, complex numbers, long strings and their ``CONTINUE``
#: cards, ``HIERARCH``, lowercase keywords) is left to astropy's own check.
_SIMPLE_CARD = re.compile(
    r"(?=.{8}= )[A-Z0-9_-]+ *= *"
    r"(?:[TF]|[+-]?\d+|[+-]?(?:\d+\.\d*|\.\d+)(?:[EeDd][+-]?\d+)?|[+-]?\d+[EeDd][+-]?\d+"
    r"|'[ -&(-~]*')?"
    r" *(?:/[ -~]*)?"
)
_COMMENTARY = re.compile(r"(?:COMMENT |HISTORY |        )[ -~]*")

_BITPIX_BYTES = {8: 1, 16: 2, 32: 4, 64: 8, -32: 4, -64: 8}


class HeaderText:
    """A header as FITS text or as astropy parsed it, each made from the other only when needed.

    Attributes
    ----------
    text : str
        The cards, 80 characters each, without ``END`` and padding.
    header : astropy.io.fits.Header
        The whole header, parsed once.
    simple : bool
        Made from text whose every card is a plain value or commentary card (`simple_cards`):
        no value can fail to parse, and each keyword's value is read from its own card.

    Examples
    --------
    >>> cards = HeaderText.of("EXPTIME =                 30.0 / s".ljust(80))
    >>> cards.simple, cards.values({"EXPTIME", "GAIN"}), cards.keywords
    (True, {'EXPTIME': 30.0}, {'EXPTIME'})
    """

    def __init__(self, *, text: str | None = None, header: fits.Header | None = None,
                 simple: bool = False) -> None:
        if (text is None) == (header is None):
            raise TypeError("HeaderText needs its text or its parsed header")
        if text is not None:
            self.__dict__["text"] = text
        if header is not None:
            self.__dict__["header"] = header
        self.simple = simple

    @classmethod
    def of(cls, text: str) -> HeaderText:
        """The header of this text."""
        return cls(text=text, simple=simple_cards(text))

    @classmethod
    def parsed(cls, header: fits.Header) -> HeaderText:
        """A header astropy has parsed already (its text is made when asked for)."""
        return cls(header=header)

    @cached_property
    def text(self) -> str:
        """The cards as FITS text."""
        return self.header.tostring()

    @cached_property
    def header(self) -> fits.Header:
        """The whole header, parsed once."""
        return fits.Header.fromstring(self.text)

    @cached_property
    def keywords(self) -> set[str]:
        """The keywords of the cards."""
        return set(self._first) if self.simple else set(self.header.keys())

    @cached_property
    def _first(self) -> dict[str, int]:
        # where each keyword's first card starts (simple text only: one card, one keyword)
        first: dict[str, int] = {}
        for i in range(len(self.text) - CARD, -1, -CARD):
            first[self.text[i:i + 8].rstrip()] = i
        first.pop("", None)
        return first

    def values(self, keys: Collection[str]) -> dict[str, Any]:
        """The value of each of ``keys`` present, as ``header[key]`` gives it (the first card's)."""
        if not self.simple:
            header = self.header
            return {key: header[key] for key in keys if key in header}
        first, parsed = self._first, self._parsed
        missing = [key for key in keys if key in first and key not in parsed]
        if missing:  # astropy's reading of just these cards: its values, undefined and all
            few = fits.Header.fromstring("".join(self.text[first[k]:first[k] + CARD]
                                                 for k in missing))
            parsed.update((key, few[key]) for key in missing)
        return {key: parsed[key] for key in keys if key in first}

    @cached_property
    def _parsed(self) -> dict[str, Any]:
        return {}  # the values parsed so far, by keyword


@dataclass(frozen=True)
class PrimaryImage:
    """A plain file's 2-D primary image: its header and where its pixels are.

    Attributes
    ----------
    cards : HeaderText
        The header as it is in the file.
    values : dict
        The values of the header's `LAYOUT_KEYS` present.
    offset : int
        Where the pixels start in the file.
    stamp : (int, int)
        The file's size and modification time (ns) when it was read.
    """

    cards: HeaderText
    values: dict[str, Any]
    offset: int
    stamp: tuple[int, int]


#: The cards saying what a primary HDU holds and how its pixels are stored.
LAYOUT_KEYS = frozenset({"BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "GROUPS", "PCOUNT", "GCOUNT",
                         "BSCALE", "BZERO", "BLANK"})


def read_primary(path: str) -> PrimaryImage | None:
    """Read a local plain FITS file's primary header when it is a complete 2-D image HDU.

    Parameters
    ----------
    path : str
        A local file.

    Returns
    -------
    PrimaryImage or None
        None when the file is not that simple case, cannot be opened or is damaged: the caller
        then reads it through `astropy.io.fits.open`, which says what is wrong.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> path = tempfile.mkdtemp() + "/raw.fits"
    >>> fits.writeto(path, np.zeros((3, 4), np.uint16), fits.Header([("EXPTIME", 30.0)]))
    >>> image = read_primary(path)
    >>> image.cards.header["EXPTIME"], image.values["NAXIS1"], image.offset
    (30.0, 4, 2880)
    >>> read_primary(path + ".missing") is None
    True
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        raw = os.pread(fd, _FIRST_READ, 0)
        if not raw.startswith(_START):
            return None
        end = _end_card(raw, 0)
        while end is None and len(raw) % BLOCK == 0 and len(raw) < _MAX_HEADER:
            more = os.pread(fd, _FIRST_READ, len(raw))
            if not more:
                return None
            searched, raw = len(raw), raw + more
            end = _end_card(raw, searched)
    except OSError:
        return None
    finally:
        os.close(fd)
    if end is None:
        return None
    return _image(raw[:end], st)


def _end_card(raw: bytes, start: int) -> int | None:
    """Where the ``END`` card starts (a card boundary at or after ``start``), or None."""
    at = raw.find(_END, start)
    while at >= 0 and at % CARD:
        at = raw.find(_END, at + 1)
    return None if at < 0 else at


def _image(raw: bytes, st: os.stat_result) -> PrimaryImage | None:
    try:
        cards = HeaderText.of(raw.decode("ascii"))
        values = cards.values(LAYOUT_KEYS)
    except (ValueError, KeyError, TypeError, fits.VerifyError):
        return None
    naxis, bitpix, nx, ny = (values.get(k) for k in ("NAXIS", "BITPIX", "NAXIS1", "NAXIS2"))
    if (not all(type(n) is int for n in (naxis, bitpix, nx, ny)) or naxis != 2 or nx < 1
            or ny < 1 or bitpix not in _BITPIX_BYTES or values.get("GROUPS", False)
            or values.get("PCOUNT", 0) != 0 or values.get("GCOUNT", 1) != 1):
        return None
    offset = _padded(len(raw) + CARD)
    if st.st_size < offset + _padded(_BITPIX_BYTES[bitpix] * nx * ny):
        return None  # truncated: astropy's reading says so
    return PrimaryImage(cards=cards, values=values, offset=offset,
                        stamp=(st.st_size, st.st_mtime_ns))


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def simple_cards(text: str) -> bool:
    """Whether every card of a header's text is one whose value astropy parses without fail.

    Examples
    --------
    >>> simple_cards("EXPTIME =                 30.0 / s".ljust(80) + "HISTORY made".ljust(80))
    True
    >>> simple_cards("EXPTIME =                12x.0".ljust(80))
    False
    """
    return all(_SIMPLE_CARD.fullmatch(card) or _COMMENTARY.fullmatch(card)
               for card in (text[i:i + CARD] for i in range(0, len(text), CARD)))
