"""astropy in and out: CCDData, NDData and numpy arrays as frames and masters, Quantities as numbers.

The one place where ccdflow's inputs and outputs meet `astropy.nddata`: the `Calibrator` turns
what a user gives it into a `Frame` or a `Master` here, and `read_product` turns any ccdflow
product file back into a `~astropy.nddata.CCDData`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import astropy.units as u
import dask.array as da
import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData, NDData, StdDevUncertainty
from astropy.wcs import WCS, FITSFixedWarning

from ccdflow.array.calibration import Master
from ccdflow.errors import ConfigError
from ccdflow.io.fits import Frame, open_frame, read_header, read_rows
from ccdflow.io.headers import exposure_time, find_exposure_time
from ccdflow.io.location import PATH_TYPES
from ccdflow.io.products import read_extensions, read_master

__all__ = ["IN_MEMORY", "as_frame", "as_master", "parse_quantity", "parse_unit", "read_product",
           "to_ccddata"]

#: The name a frame or master given in memory goes by in headers, errors and reports.
IN_MEMORY = "<in memory>"
# units a raw frame may be in: the calibration works in ADU
_RAW_UNITS = (u.adu, u.dimensionless_unscaled)


def parse_unit(text: str | None) -> u.UnitBase:
    """A ``BUNIT`` card as a unit: as astropy spells it, else lower-cased (``ADU``); none is ADU.

    Examples
    --------
    >>> parse_unit("ADU"), parse_unit(None), parse_unit("")
    (Unit("adu"), Unit("adu"), Unit(dimensionless))
    """
    if text is None:
        return u.adu
    for spelling in (str(text).strip(), str(text).strip().lower()):
        try:
            return u.Unit(spelling)
        except ValueError:
            continue
    raise ConfigError("BUNIT", f"{text!r} is not a unit astropy knows")


def parse_quantity(value: Any, *, key: str, unit: u.UnitBase) -> Any:
    """A number given as an astropy `~astropy.units.Quantity` in ``unit``'s units, as a float.

    Anything else is returned as given (numbers, ``None``, ``"header"`` are validated later).

    Raises
    ------
    ConfigError
        If ``value`` is a Quantity whose unit cannot be converted to ``unit`` (``key`` named).

    Examples
    --------
    >>> parse_quantity(2.5 * u.electron / u.adu, key="gain", unit=u.electron / u.adu)
    2.5
    >>> parse_quantity(4.0, key="read_noise", unit=u.electron)
    4.0
    """
    if not isinstance(value, u.Quantity):
        return value
    if not value.isscalar:
        raise ConfigError(key, f"expected one value in {unit}, got {value!r}")
    try:
        return float(value.to_value(unit))
    except u.UnitConversionError:
        raise ConfigError(key, f"expected a quantity in {unit.to_string()}, got "
                               f"{value.unit.to_string()}") from None


def _header_of(data: Any, header: fits.Header | None) -> fits.Header:
    """The header of an in-memory frame: given, else its ``meta`` (plus its WCS), else empty."""
    if header is not None:
        return fits.Header(header)
    if not isinstance(data, NDData):
        return fits.Header()
    meta = data.meta
    out = meta.copy() if isinstance(meta, fits.Header) else fits.Header(list(meta.items()))
    if getattr(data, "wcs", None) is not None:
        # CCDData.read moves the WCS cards from the header into .wcs: put them back
        out.update(data.wcs.to_header(relax=True))
    return out


def _pixels(data: Any, *, key: str, units: tuple[u.UnitBase, ...] | None) -> np.ndarray:
    """float32 pixels of an array or NDData; masked pixels NaN; the unit checked."""
    if isinstance(data, NDData):
        if units is not None and data.unit is not None and u.Unit(data.unit) not in units:
            raise ConfigError(key, f"expected ADU, got {u.Unit(data.unit).to_string()}")
        pixels = np.array(data.data, dtype=np.float32)
        if data.mask is not None:
            pixels[np.asarray(data.mask, dtype=bool)] = np.nan
    else:
        pixels = np.array(data, dtype=np.float32)
    if pixels.ndim != 2:
        raise ConfigError(key, f"expected a 2-D image, got shape {pixels.shape}")
    return pixels


def as_frame(raw: Any, *, header: fits.Header | None = None, hdu: int = 0,
             exptime: float | None = None) -> Frame:
    """A raw frame given as a path, a `~astropy.nddata.CCDData`/NDData or a numpy array.

    Parameters
    ----------
    raw : path-like, CCDData, NDData or numpy.ndarray
        A path is opened lazily (`open_frame`); an in-memory image is used as float32 with its
        masked pixels as NaN (so they are flagged as bad input).
    header : astropy.io.fits.Header, optional
        The header of an in-memory image; by default a CCDData's ``meta`` (with its WCS), an
        empty header for a plain array (parameters then come from settings and defaults).
    hdu : int
        The HDU of a file.
    exptime : float, optional
        Exposure-time override, s.

    Returns
    -------
    Frame
        ``path`` is ``"<in memory>"`` for an in-memory image.

    Raises
    ------
    ConfigError
        If an in-memory image is not 2-D or its unit is not ADU.

    Examples
    --------
    >>> frame = as_frame(np.ones((3, 4)), header=fits.Header([("EXPTIME", 5.0)]))
    >>> frame.shape, frame.exptime, str(frame.path)
    ((3, 4), 5.0, '<in memory>')
    """
    if isinstance(raw, PATH_TYPES):
        return open_frame(raw, hdu=hdu, exptime=exptime)
    pixels = _pixels(raw, key="raw", units=_RAW_UNITS)
    head = _header_of(raw, header)
    t = exptime if exptime is not None else exposure_time(head, path=IN_MEMORY)
    return Frame(data=da.from_array(pixels, chunks=-1), header=head, path=Path(IN_MEMORY), hdu=0,
                 exptime=float(t))


def as_master(value: Any, *, kind: str) -> Master | None:
    """A master given as a path, a `Master`, a CCDData/NDData or a numpy array (or ``None``).

    An NDData's ``uncertainty`` is its error (any astropy uncertainty class, as a standard
    deviation), its masked pixels have no value (NaN, flagged when applied), and its ``EXPTIME``
    (or another exposure card) is the exposure its values correspond to. A dark in a rate unit
    (``adu/s``) is taken as a rate, ``EXPTIME = 1``. A plain array has no error and, for a dark,
    counts as a rate.

    Examples
    --------
    >>> dark = as_master(CCDData(np.full((2, 2), 30.0), unit="adu", meta={"EXPTIME": 60.0}),
    ...                  kind="dark")
    >>> dark.exptime, dark.name
    (60.0, '<in memory>')
    """
    if value is None or isinstance(value, Master):
        return value
    if isinstance(value, PATH_TYPES):
        return read_master(value)
    key = f"master_{kind}"
    units = (u.dimensionless_unscaled,) if kind == "flat" else (u.adu, u.adu / u.s)
    if kind == "flat" and isinstance(value, NDData) and value.unit is not None:
        units = (u.Unit(value.unit),)  # a flat's scale is divided out: any unit will do
    pixels = _pixels(value, key=key, units=units)
    error = None
    if isinstance(value, NDData) and value.uncertainty is not None:
        error = value.uncertainty.represent_as(StdDevUncertainty).array
    header = _header_of(value, None)
    exptime = find_exposure_time(header, path=IN_MEMORY)
    if kind == "dark" and isinstance(value, NDData) and value.unit == u.adu / u.s:
        exptime = 1.0
    elif exptime is None and not isinstance(value, NDData):
        exptime = 1.0  # a bare array: a bias has no exposure, a dark is a rate
    return Master(data=pixels, error=error, exptime=exptime, name=IN_MEMORY, header=header)


def to_ccddata(image: np.ndarray, *, error: np.ndarray | None, mask: np.ndarray | None,
               header: fits.Header) -> CCDData:
    """A product as a `~astropy.nddata.CCDData`: unit from ``BUNIT``, WCS from the header.

    Examples
    --------
    >>> ccd = to_ccddata(np.zeros((2, 2), np.float32), error=np.ones((2, 2), np.float32),
    ...                  mask=np.array([[0, 2], [0, 0]], np.uint8), header=fits.Header())
    >>> ccd.unit, ccd.mask.tolist(), float(ccd.uncertainty.array[0, 0])
    (Unit("adu"), [[False, True], [False, False]], 1.0)
    """
    wcs = None
    if any(key.startswith("CTYPE") for key in header):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)  # astropy's notes on DATE-OBS & co
            wcs = WCS(header)
    return CCDData(np.asarray(image, dtype=np.float32), unit=parse_unit(header.get("BUNIT")),
                   uncertainty=None if error is None else StdDevUncertainty(error, copy=False),
                   mask=None if mask is None else np.asarray(mask) != 0, meta=header, wcs=wcs)


def read_product(path: str | os.PathLike) -> CCDData:
    """Read any ccdflow product (calibrated light, master, stack) as a `~astropy.nddata.CCDData`.

    Parameters
    ----------
    path : str or path-like
        The product: primary image, optional ``ERROR`` (or ccdproc's ``UNCERT``) and ``MASK``
        extensions.

    Returns
    -------
    astropy.nddata.CCDData
        The image; ``uncertainty`` a `~astropy.nddata.StdDevUncertainty` from ``ERROR``; ``mask``
        boolean (any ``MASK`` bit set); ``unit`` from ``BUNIT`` (ADU when absent); ``wcs`` from
        the header when it has ``CTYPE`` cards; ``meta`` the primary header.

    Raises
    ------
    FrameReadError
        If the file or one of its extensions cannot be read.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "light.fits"
    >>> fits.HDUList([fits.PrimaryHDU(np.ones((2, 3), np.float32),
    ...                               fits.Header([("BUNIT", "adu"), ("EXPTIME", 30.0)])),
    ...               fits.ImageHDU(np.full((2, 3), 0.5, np.float32), name="ERROR")]).writeto(path)
    >>> ccd = read_product(path)
    >>> ccd.unit, ccd.shape, float(ccd.uncertainty.array[0, 0]), ccd.header["EXPTIME"]
    (Unit("adu"), (2, 3), 0.5, 30.0)
    """
    path = str(path)
    index, header = read_header(path)
    image = read_rows(path, index, slice(None))
    error, mask = read_extensions(path, shape=image.shape)
    return to_ccddata(image, error=error, mask=mask, header=header)
