"""Header conventions in one place: the cards for exposure time, gain, read noise, saturation.

Also the section cards and frame-type names, and what a missing or unparsable card means.
"""

from __future__ import annotations

import logging
import math
import numbers
import warnings
from typing import NamedTuple

from astropy.io import fits

from ccdflow.errors import ConfigError, ExposureTimeWarning, FrameError

__all__ = [
    "EXPTIME_KEYS",
    "FILTER_KEYS",
    "FILTER_WHEEL_KEYS",
    "UNSET_TEXT",
    "FRAME_TYPES",
    "MAX_EXPTIME",
    "GAIN_KEYS",
    "IMAGE_AREA_KEYS",
    "OVERSCAN_KEYS",
    "READ_NOISE_KEYS",
    "SATURATION_KEYS",
    "ExposureTimeWarning",
    "HeaderNumber",
    "exposure_time",
    "find_exposure_time",
    "frame_filter",
    "frame_type",
    "header_number",
    "header_section",
]

logger = logging.getLogger(__name__)

#: Keywords searched, in order, for a frame's exposure time in seconds.
EXPTIME_KEYS = (
    "EXPTIME", "EXPOSURE", "XPOSURE", "EXP_TIME", "EXPOSED", "ITIME", "TELAPSED", "ELAPSED",
)

#: The longest exposure time believed, s (about 11.6 days). Nothing exposes longer; a larger
#: value is a corrupt or misread card, and dividing or scaling by it would give garbage.
MAX_EXPTIME = 1e6

#: Keywords searched, in order, for the gain in e-/ADU.
GAIN_KEYS = ("GAIN", "EGAIN")
#: Keywords searched, in order, for the read noise in electrons.
READ_NOISE_KEYS = ("RDNOISE", "READNOIS", "RON")
#: Keywords searched, in order, for the saturation level in raw ADU.
SATURATION_KEYS = ("SATURATE", "SATLEVEL")
#: Keywords holding the serial overscan section (FITS, 1-based inclusive).
OVERSCAN_KEYS = ("BIASSEC",)
#: Keywords searched, in order, for the image area (FITS section).
IMAGE_AREA_KEYS = ("TRIMSEC", "DATASEC")

#: Canonical frame types and the header/file-list spellings that mean them.
FRAME_TYPES = {
    "bias": ("bias", "zero"),
    "dark": ("dark",),
    "flat": ("flat", "dome", "domeflat", "dome flat", "sky", "skyflat", "sky flat", "twilight",
             "twilight flat", "flatfield", "flat field", "lampflat", "lamp flat"),
    "light": ("light", "object", "science", "expose", "standard", "std"),
    "arc": ("arc", "comp", "comparison", "lamp", "wave", "wavecal"),
}


class HeaderNumber(NamedTuple):
    """A number read from a header and where it came from.

    Attributes
    ----------
    value : float or None
        The number; ``None`` when no card of the list holds one.
    key : str or None
        The card it came from.
    problem : str or None
        Why a card that is present could not be used (e.g. ``GAIN = 'unavail'``).
    """

    value: float | None
    key: str | None = None
    problem: str | None = None


def header_number(header: fits.Header, keys: tuple[str, ...]) -> HeaderNumber:
    """The first card of ``keys`` that holds a finite number.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The header.
    keys : tuple of str
        Card names in order of preference (e.g. `GAIN_KEYS`).

    Returns
    -------
    HeaderNumber
        The value and its card; a present card holding text, a boolean, NaN or inf is skipped
        and named in ``problem`` (so the caller can say which default it used instead).

    Examples
    --------
    >>> header = fits.Header([("GAIN", "unavail"), ("EGAIN", 2.5)])
    >>> header_number(header, GAIN_KEYS)
    HeaderNumber(value=2.5, key='EGAIN', problem="GAIN = 'unavail' is not a number")
    >>> header_number(fits.Header(), GAIN_KEYS).value is None
    True
    """
    problems = []
    for key in keys:
        if key not in header:
            continue
        value = header[key]
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
            return HeaderNumber(float(value), key, "; ".join(problems) or None)
        problems.append(f"{key} = {value!r} is not a number")
    return HeaderNumber(None, None, "; ".join(problems) or None)


def header_section(header: fits.Header, keys: tuple[str, ...]) -> tuple[str | None, str | None]:
    """The first card of ``keys`` present, as ``(key, section string)``; ``(None, None)`` if none.

    Examples
    --------
    >>> header_section(fits.Header([("DATASEC", "[1:100,1:50]")]), IMAGE_AREA_KEYS)
    ('DATASEC', '[1:100,1:50]')
    """
    for key in keys:
        value = header.get(key)
        if isinstance(value, str) and value.strip():
            return key, value.strip()
    return None, None


def exposure_time(header: fits.Header, *, path: str = "<header>", strict: bool = False) -> float:
    """Return a frame's exposure time in seconds from the first keyword of `EXPTIME_KEYS` present.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The frame's header.
    path : str
        The file, named in the warning or error.
    strict : bool
        Raise instead of assuming 1 s when no keyword is present.

    Returns
    -------
    float
        The exposure time; 1.0 (with an `ExposureTimeWarning` naming the file) if none is found.

    Raises
    ------
    FrameError
        If the keyword holds something that is not a non-negative number, or none is present and
        ``strict`` is set.
    """
    found = find_exposure_time(header, path=path)
    if found is not None:
        return found
    if strict:
        raise FrameError(path, f"no exposure time keyword (looked for {', '.join(EXPTIME_KEYS)})")
    warnings.warn(
        f"{path}: no exposure time keyword ({', '.join(EXPTIME_KEYS)}); assuming 1 s",
        ExposureTimeWarning,
        stacklevel=3,
    )
    return 1.0


def find_exposure_time(header: fits.Header, *, path: str = "<header>") -> float | None:
    """Return the value of the first `EXPTIME_KEYS` keyword present, or ``None`` if there is none.

    Raises
    ------
    FrameError
        If that keyword holds something that is not a number between 0 and `MAX_EXPTIME`.

    Examples
    --------
    >>> find_exposure_time(fits.Header([("EXPOSURE", 30.0)]))
    30.0
    >>> try:
    ...     find_exposure_time(fits.Header([("EXPTIME", 1e30)]), path="raw.fits")
    ... except FrameError as err:
    ...     print(err)
    raw.fits: EXPTIME = 1e+30 s is beyond 1e+06 s: not a plausible exposure time
    """
    for key in EXPTIME_KEYS:
        if key in header:
            value = header[key]
            # numbers.Real: numpy scalars set in memory count too; bool does not, nor NaN/inf
            if (isinstance(value, bool) or not isinstance(value, numbers.Real)
                    or not math.isfinite(value) or value < 0):
                raise FrameError(path, f"{key} = {value!r} is not a non-negative exposure time")
            if value > MAX_EXPTIME:
                raise FrameError(path, f"{key} = {value:g} s is beyond {MAX_EXPTIME:g} s: "
                                 "not a plausible exposure time")
            return float(value)
    return None


#: Cards naming a frame's filter, in order: one card, a summary card, or a filter wheel per card.
FILTER_KEYS = ("FILTER", "FILTERS")
FILTER_WHEEL_KEYS = ("FILTER1", "FILTER2", "FILTER3")
#: Card text meaning "no value" (SAMI writes ``GAIN = 'unavail'``), lower case.
UNSET_TEXT = ("", "unavail", "unavailable", "unknown", "none", "n/a", "na")


def frame_filter(header: fits.Header) -> str:
    """The filter a frame was taken through, as flats are matched to lights by it.

    ``FILTER``, else ``FILTERS``, else the wheels ``FILTER1``, ``FILTER2``, ``FILTER3`` joined
    with ``+`` (a wheel that says it holds nothing, ``'s9999 unavailable'``, is left out);
    ``""`` when no card names one.

    Examples
    --------
    >>> frame_filter(fits.Header([("FILTER1", "c0100 R"), ("FILTER2", "s9999 unavailable")]))
    'c0100 R'
    """
    for key in FILTER_KEYS:
        value = str(header.get(key, "")).strip()
        if value.lower() not in UNSET_TEXT:
            return value
    wheels = [str(header.get(k, "")).strip() for k in FILTER_WHEEL_KEYS]
    return "+".join(w for w in wheels
                    if w.lower() not in UNSET_TEXT and not w.lower().endswith(" unavailable"))


def frame_type(value: str, *, key: str = "type") -> str:
    """Map a frame-type spelling (``zero``, ``object``, ``sky flat``, ...) to its canonical name.

    Parameters
    ----------
    value : str
        The spelling, from a file list or an ``IMAGETYP``/``OBSTYPE`` card; case-insensitive.
    key : str
        What is named in the error.

    Returns
    -------
    str
        One of ``bias``, ``dark``, ``flat``, ``light``, ``arc``.

    Raises
    ------
    ConfigError
        If the spelling is not recognised.
    """
    words = str(value).lower().replace("_", " ").replace("-", " ").split()
    if len(words) > 1 and words[-1] == "frame":  # MaxIm DL and friends: "Light Frame", "Bias Frame"
        words = words[:-1]
    word = "".join(words)  # spaces do not matter: "sky flat" == "skyflat"
    for canonical, spellings in FRAME_TYPES.items():
        if word in {s.replace(" ", "") for s in spellings}:
            return canonical
    raise ConfigError(key, f"unknown frame type {value!r}; expected one of {list(FRAME_TYPES)}")
