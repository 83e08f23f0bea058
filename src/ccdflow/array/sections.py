"""Image regions: 0-based half-open numpy boxes, and their conversion from FITS section strings."""

from __future__ import annotations

import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ccdflow.errors import ConfigError

__all__ = ["Region", "parse_region", "region_from_section"]

_SECTION = re.compile(r"^\[\s*(\d+)\s*:\s*(\d+)\s*,\s*(\d+)\s*:\s*(\d+)\s*\]$", re.ASCII)
_KEYS = ("xmin", "xmax", "ymin", "ymax")


@dataclass(frozen=True, kw_only=True)
class Region:
    """A rectangle of an image, selecting ``data[ymin:ymax, xmin:xmax]``.

    Parameters
    ----------
    xmin, xmax, ymin, ymax : int
        0-based, half-open bounds in numpy order (the seed convention).

    Examples
    --------
    >>> Region(xmin=0, xmax=4, ymin=2, ymax=3).shape
    (1, 4)
    """

    xmin: int
    xmax: int
    ymin: int
    ymax: int

    def __post_init__(self):
        for key in _KEYS:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ConfigError(key, f"bounds must be non-negative integers, got {value!r}")
            object.__setattr__(self, key, int(value))  # numpy integers become plain ints
        if self.xmax <= self.xmin or self.ymax <= self.ymin:
            raise ConfigError("region", f"empty region {self.to_dict()}")

    @property
    def shape(self) -> tuple[int, int]:
        """The (rows, columns) shape of the selected block."""
        return (self.ymax - self.ymin, self.xmax - self.xmin)

    @property
    def slices(self) -> tuple[slice, slice]:
        """The numpy index selecting the region."""
        return (slice(self.ymin, self.ymax), slice(self.xmin, self.xmax))

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        """``(ymin, ymax, xmin, xmax)``, the form the kernels take."""
        return (self.ymin, self.ymax, self.xmin, self.xmax)

    def fits_in(self, shape: tuple[int, ...]) -> bool:
        """Whether the region lies inside an image of the given (rows, columns) shape."""
        return self.ymax <= shape[-2] and self.xmax <= shape[-1]

    def to_dict(self) -> dict[str, int]:
        """Return the region as ``dict(xmin=, xmax=, ymin=, ymax=)``."""
        return {key: getattr(self, key) for key in _KEYS}

    def to_section(self) -> str:
        """Return the region as a 1-based inclusive FITS section string ``[x1:x2,y1:y2]``."""
        return f"[{self.xmin + 1}:{self.xmax},{self.ymin + 1}:{self.ymax}]"


def region_from_section(section: str) -> Region:
    """Convert a FITS section string (``BIASSEC``, ``DATASEC``, ``TRIMSEC``) to a `Region`.

    Parameters
    ----------
    section : str
        ``"[x1:x2,y1:y2]"``, 1-based and inclusive, x first.

    Returns
    -------
    Region
        The same pixels as a 0-based half-open region.

    Raises
    ------
    ConfigError
        If the string is not a section or its ranges are reversed.

    Examples
    --------
    >>> region_from_section("[1:2048,21:4116]").to_dict()
    {'xmin': 0, 'xmax': 2048, 'ymin': 20, 'ymax': 4116}
    """
    match = _SECTION.match(str(section).strip())
    if match is None:
        raise ConfigError("section", f"not a FITS section string: {section!r}")
    x1, x2, y1, y2 = (int(v) for v in match.groups())
    if x1 < 1 or y1 < 1 or x2 < x1 or y2 < y1:
        raise ConfigError("section", f"reversed or zero-based FITS section: {section!r}")
    return Region(xmin=x1 - 1, xmax=x2, ymin=y1 - 1, ymax=y2)


def parse_region(value: Region | Mapping[str, int] | str, *, key: str = "region") -> Region:
    """Accept a `Region`, a ``dict(xmin=, xmax=, ymin=, ymax=)`` or a FITS section string.

    Parameters
    ----------
    value : Region, mapping or str
        The region in any of its accepted spellings.
    key : str
        The parameter name reported in errors.

    Returns
    -------
    Region

    Raises
    ------
    ConfigError
        Naming ``key`` when the value is not a valid region.
    """
    if isinstance(value, Region):
        return value
    if isinstance(value, str):
        try:
            return region_from_section(value)
        except ConfigError as err:
            raise ConfigError(key, str(err)) from None
    if isinstance(value, Mapping):
        missing = [k for k in _KEYS if k not in value]
        extra = [k for k in value if k not in _KEYS]
        if missing or extra:
            raise ConfigError(
                key, f"a region needs exactly {_KEYS}; missing {missing}, unknown {extra}"
            )
        try:
            return Region(**{k: value[k] for k in _KEYS})
        except ConfigError as err:
            raise ConfigError(key, str(err)) from None
    raise ConfigError(
        key, f"expected a region dict or FITS section string, got {type(value).__name__}"
    )
