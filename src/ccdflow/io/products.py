"""Calibrated-frame products: the provenance header and the two-extension FITS file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from astropy.io import fits

from ccdflow._version import __version__
from ccdflow.array.calibration import CalibrationParams, Master, Masters
from ccdflow.errors import FrameReadError
from ccdflow.io.fits import read_header, read_rows
from ccdflow.io.headers import find_exposure_time
from ccdflow.io.names import header_text
from ccdflow.io.write import write_fits

__all__ = ["add_fallback_notes", "calibrated_header", "file_sha1", "master_header", "read_master",
           "write_calibrated", "write_master"]

# Cards that describe the raw file's storage or layout, not the calibrated image.
_STRUCTURAL = ("SIMPLE", "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "BZERO",
               "BSCALE", "BLANK", "CHECKSUM", "DATASUM", "PCOUNT", "GCOUNT", "BIASSEC", "TRIMSEC",
               "DATASEC", "ZIMAGE", "ZBITPIX", "ZNAXIS", "ZNAXIS1", "ZNAXIS2", "ZCMPTYPE")
_MASTER_KEYS = {"bias": "MBIAS", "dark": "MDARK", "flat": "MFLAT"}


def calibrated_header(raw: fits.Header, *, params: CalibrationParams, masters: Masters,
                      dark_scale: float, flat_norm: float, stats: dict,
                      history: str | None = None) -> fits.Header:
    """Build a calibrated frame's header: the raw cards plus the reduction's provenance.

    Parameters
    ----------
    raw : astropy.io.fits.Header
        The raw frame's header (structural and layout cards are dropped).
    params : CalibrationParams
        The resolved parameters.
    masters : Masters
        The masters applied (file name and SHA-1 recorded).
    dark_scale, flat_norm : float
        ``t_raw / t_dark`` and the flat's clipped mean (NaN when not applied: card omitted).
    stats : dict
        The computed frame statistics of `ccdflow.array.calibration.calibrate_array`.
    history : str, optional
        Extra HISTORY line.

    Returns
    -------
    astropy.io.fits.Header
    """
    header = raw.copy(strip=True)
    for key in _STRUCTURAL:
        header.remove(key, ignore_missing=True, remove_all=True)
    area = params.image_area
    # keep a WCS valid across the trim
    for axis, offset in (("1", area.xmin), ("2", area.ymin)):
        if f"CRPIX{axis}" in header and offset:
            header[f"CRPIX{axis}"] = header[f"CRPIX{axis}"] - offset
    method = params.to_dict()["overscan_method"]
    cards = [
        ("BUNIT", "adu", "calibrated counts (ADU)"),
        ("GAIN", params.gain, "[e-/ADU] gain used for the noise model"),
        ("RDNOISE", params.read_noise, "[e-] read noise used for the noise model"),
        ("EXPTIME", params.exptime, "[s] exposure time"),
        ("IMAGAREA", area.to_section(), "raw pixels kept (FITS section)"),
        ("OVSCMETH", method if params.overscans else "none", "overscan method"),
        ("OVSCAREA", " ".join(r.to_section() for r in params.overscans) or "none",
         "overscan areas (FITS sections)"),
    ]
    if params.overscans and np.isfinite(stats.get("overscan_level", np.nan)):
        cards.append(("OVSCLVL", round(float(stats["overscan_level"]), 4),
                      "[adu] median overscan level subtracted"))
    if params.saturation is not None:
        cards.append(("SATURATE", params.saturation, "[adu] raw level flagged saturated"))
    for kind, master in masters.items():
        prefix = _MASTER_KEYS[kind]
        cards.append((f"{prefix}FNM", master.name or "(in memory)", f"master {kind} file"))
        cards.append((f"{prefix}SHA", master.sha1 or "none", f"SHA-1 of the master {kind}"))
    if masters.dark is not None:
        cards.append(("DARKSCL", float(dark_scale), "dark scale t_raw / t_dark"))
    if masters.flat is not None:
        cards.append(("FLATNORM", float(flat_norm), "clipped mean of the master flat"))
    cards += [
        ("NERRUNDF", int(stats.get("undefined_master_error", 0)),
         "pixels with an undefined master error (as 0)"),
        ("NFLAGGED", int(stats.get("flagged", 0)), "pixels with a mask flag"),
        ("CCDFLVER", __version__, "ccdflow version"),
    ]
    for key, value, comment in cards:
        header[key] = (value, comment)
    steps = ["overscan" if params.overscans else None] + [k for k, _ in masters.items()]
    done = ", ".join(s for s in steps if s) or "no steps"
    header.add_history(f"ccdflow {__version__}: calibrated ({done})")
    if history:
        header.add_history(history)
    return header


def write_calibrated(path: str | os.PathLike, *, image: np.ndarray, error: np.ndarray,
                     header: fits.Header, mask: np.ndarray | None = None,
                     overwrite: bool = True) -> Path:
    """Write the calibrated image (primary), ``ERROR`` and optional ``MASK`` extensions atomically.

    Parameters
    ----------
    path : str or path-like
        Output file; written through a temporary file and renamed, never half-written.
    image, error : numpy.ndarray
        float32 calibrated image and per-pixel error.
    header : astropy.io.fits.Header
        Primary header (see `calibrated_header`).
    mask : numpy.ndarray, optional
        uint8 flags for a ``MASK`` extension.
    overwrite : bool
        Whether an existing file may be replaced.

    Returns
    -------
    pathlib.Path
    """
    # FITS is big-endian: converting once here spares astropy a byteswap there and back
    hdus = [fits.PrimaryHDU(np.asarray(image, dtype=">f4"), header=header),
            fits.ImageHDU(np.asarray(error, dtype=">f4"), name="ERROR")]
    hdus[1].header["BUNIT"] = ("adu", "1-sigma error of the primary image")
    if mask is not None:
        hdus.append(fits.ImageHDU(np.asarray(mask, dtype=np.uint8), name="MASK"))
        hdus[2].header["COMMENT"] = "bits: 1 bad input, 2 saturated, 4 flat<=0, 8 no master value"
    return write_fits(path, fits.HDUList(hdus), overwrite=overwrite)


def master_header(*, kind: str, inputs: list[str], params: dict, n_frames: int,
                  rejected_fraction: float, exptime: float | None, filter: str = "",
                  extra: dict | None = None) -> fits.Header:
    """The provenance header of a master: type, inputs, combine parameters, rejected fraction.

    Parameters
    ----------
    kind : str
        ``bias``, ``dark`` or ``flat``.
    inputs : list of str
        The input files (recorded as ``INPUTnnn`` cards).
    params : dict
        ``CombineParams.to_dict()``.
    n_frames : int
        Frames combined.
    rejected_fraction : float
        Fraction of input values rejected.
    exptime : float, optional
        ``EXPTIME`` of the master's values (1 for a dark rate).
    filter : str
        ``FILTER`` of a flat.
    extra : dict, optional
        More cards ``{key: (value, comment)}``.

    Returns
    -------
    astropy.io.fits.Header
    """
    header = fits.Header()
    header["IMAGETYP"] = (f"MASTER {kind.upper()}", "ccdflow master frame")
    header["BUNIT"] = ("adu/s" if kind == "dark" else ("" if kind == "flat" else "adu"))
    if exptime is not None:
        header["EXPTIME"] = (exptime, "[s] exposure the values correspond to")
    if filter:
        header["FILTER"] = filter
    header["NCOMBINE"] = (n_frames, "frames combined")
    header["REJFRAC"] = (round(float(rejected_fraction), 6), "fraction of input values rejected")
    names = {"method": "CMETHOD", "clip": "CCLIP", "sigma_lower": "CSIGLO", "sigma_upper": "CSIGHI",
             "maxiters": "CMAXITER", "cenfunc": "CCENFUNC", "stdfunc": "CSTDFUNC", "nlow": "CNLOW",
             "nhigh": "CNHIGH", "scale": "CSCALE", "uncertainty": "CERRFORM"}
    for field, key in names.items():
        value = params.get(field)
        header[key] = ("none" if value is None else value, f"combine {field}")
    for key, (value, comment) in (extra or {}).items():
        header[key] = (value, comment)
    header["CCDFLVER"] = (__version__, "ccdflow version")
    for i, name in enumerate(inputs, start=1):
        header[f"INPUT{i:03d}" if i < 1000 else "HISTORY"] = header_text(Path(name).name)
    return header


def add_fallback_notes(header: fits.Header, notes: list[str] | tuple[str, ...]) -> fits.Header:
    """Record the fallbacks a product was made with: ``CCDFNWRN`` and one ``COMMENT`` each.

    A fallback is a documented default used because a card was missing or unusable (a gain of
    1 e-/ADU, an exposure time of 1 s, a zero-second dark used as a bias). ``CCDFNWRN`` counts
    them (0: none), and each is written as a ``COMMENT`` starting ``ccdflow fallback:``;
    non-ASCII text is escaped (`ccdflow.io.names.header_text`).

    Parameters
    ----------
    header : astropy.io.fits.Header
        Changed in place.
    notes : sequence of str
        The fallbacks, in words.

    Returns
    -------
    astropy.io.fits.Header
        The same header.

    Examples
    --------
    >>> header = add_fallback_notes(fits.Header(), ["raw.fits: no GAIN card; gain 1.0 assumed"])
    >>> header["CCDFNWRN"], header["COMMENT"][0]
    (1, 'ccdflow fallback: raw.fits: no GAIN card; gain 1.0 assumed')
    """
    header["CCDFNWRN"] = (len(notes), "fallbacks used (COMMENT ccdflow fallback lines)")
    for note in notes:
        header.add_comment(f"ccdflow fallback: {header_text(note)}")
    return header


def write_master(path: str | os.PathLike, *, data: np.ndarray, error: np.ndarray,
                 count: np.ndarray, header: fits.Header, overwrite: bool = True) -> Path:
    """Write a master: primary data, ``ERROR`` and ``NCOMBINE`` (per-pixel count) extensions."""
    hdus = fits.HDUList([
        fits.PrimaryHDU(np.asarray(data, dtype=np.float32), header=header),
        fits.ImageHDU(np.asarray(error, dtype=np.float32), name="ERROR"),
        fits.ImageHDU(np.asarray(count, dtype=np.int16 if count.max(initial=0) < 2**15
                                 else np.int32), name="NCOMBINE"),
    ])
    return write_fits(path, hdus, overwrite=overwrite, checksum=True)


def file_sha1(path: str | os.PathLike) -> str:
    """SHA-1 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha1(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_master(path: str | os.PathLike, *, hdu: int = 0) -> Master:
    """Read a master frame (any FITS image; an ``ERROR`` extension is used when present).

    Parameters
    ----------
    path : str or path-like
        The master's file.
    hdu : int
        The HDU holding the master's data.

    Returns
    -------
    Master
        Data and error as float32, ``exptime`` from the header (``None`` when absent), file name
        and SHA-1.

    Raises
    ------
    FrameReadError
        If the file cannot be read or its ``ERROR`` extension has another shape.
    """
    path = str(path)
    index, header = read_header(path, hdu=hdu)
    data = read_rows(path, index, slice(None))
    error = None
    try:
        with fits.open(path, memmap=False) as hdul:
            if "ERROR" in hdul:
                error = np.array(hdul["ERROR"].data, dtype=np.float32)
    except (OSError, ValueError) as err:
        raise FrameReadError(path, f"cannot read the ERROR extension: {err}") from err
    if error is not None and error.shape != data.shape:
        raise FrameReadError(path, f"ERROR shape {error.shape} differs from data {data.shape}")
    return Master(
        data=data,
        error=error,
        exptime=find_exposure_time(header, path=path),
        name=Path(path).name,
        sha1=file_sha1(path),
        header=header,
    )
