"""Header conventions in one place: exposure-time keywords and frame-type names."""

from __future__ import annotations

import logging
import math
import numbers
import warnings

from astropy.io import fits

from ccdflow.errors import ConfigError, FrameError

__all__ = [
    "EXPTIME_KEYS",
    "FRAME_TYPES",
    "ExposureTimeWarning",
    "exposure_time",
    "find_exposure_time",
    "frame_type",
]

logger = logging.getLogger(__name__)

#: Keywords searched, in order, for a frame's exposure time in seconds.
EXPTIME_KEYS = (
    "EXPTIME", "EXPOSURE", "XPOSURE", "EXP_TIME", "EXPOSED", "ITIME", "TELAPSED", "ELAPSED",
)

#: Canonical frame types and the header/file-list spellings that mean them.
FRAME_TYPES = {
    "bias": ("bias", "zero"),
    "dark": ("dark",),
    "flat": ("flat", "dome", "domeflat", "dome flat", "sky", "skyflat", "sky flat", "twilight",
             "twilight flat", "flatfield", "flat field", "lampflat", "lamp flat"),
    "light": ("light", "object", "science", "expose", "standard", "std"),
    "arc": ("arc", "comp", "comparison", "lamp", "wave", "wavecal"),
}


class ExposureTimeWarning(UserWarning):
    """A frame has no exposure-time keyword and 1 s was assumed."""


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
        If that keyword holds something that is not a non-negative number.
    """
    for key in EXPTIME_KEYS:
        if key in header:
            value = header[key]
            # numbers.Real: numpy scalars set in memory count too; bool does not, nor NaN/inf
            if (isinstance(value, bool) or not isinstance(value, numbers.Real)
                    or not math.isfinite(value) or value < 0):
                raise FrameError(path, f"{key} = {value!r} is not a non-negative exposure time")
            return float(value)
    return None


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
