"""Calibrated-frame products: the provenance header and the two-extension FITS file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from ccdflow._version import __version__
from ccdflow.array.calibration import CalibrationParams, Master, Masters
from ccdflow.array.combination import CombineParams
from ccdflow.array.masks import MASK_DTYPE, mask_header
from ccdflow.errors import FrameReadError
from ccdflow.io.fits import read_header, read_rows
from ccdflow.io.fits_write import plain_header, write_image_hdus
from ccdflow.io.headers import GAIN_KEYS, READ_NOISE_KEYS, SATURATION_KEYS, find_exposure_time
from ccdflow.io.location import RemotePath, as_location, open_binary, open_fits
from ccdflow.io.names import header_text
from ccdflow.io.write import write_fits, write_stream

__all__ = ["add_combine_cards", "add_fallback_notes", "calibrated_header", "file_sha1", "master_header",
           "read_extensions", "read_master", "stack_header", "write_calibrated", "write_master"]

# Cards that describe the raw file's storage or layout, not the calibrated image.
_STRUCTURAL = ("SIMPLE", "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "BZERO",
               "BSCALE", "BLANK", "CHECKSUM", "DATASUM", "PCOUNT", "GCOUNT", "BIASSEC", "TRIMSEC",
               "DATASEC", "ZIMAGE", "ZBITPIX", "ZNAXIS", "ZNAXIS1", "ZNAXIS2", "ZCMPTYPE")
_MASTER_KEYS = {"bias": "MBIAS", "dark": "MDARK", "flat": "MFLAT", "bpm": "MBPM"}
# CombineParams field -> master header card
_COMBINE_KEYS = {"method": "CMETHOD", "clip": "CCLIP", "sigma_lower": "CSIGLO",
                 "sigma_upper": "CSIGHI", "maxiters": "CMAXITER", "cenfunc": "CCENFUNC",
                 "stdfunc": "CSTDFUNC", "nlow": "CNLOW", "nhigh": "CNHIGH", "nkeep": "CNKEEP",
                 "gain": "CGAIN", "read_noise": "CRDNOISE", "sensitivity_noise": "CSENSNS",
                 "scale": "CSCALE", "uncertainty": "CERRFORM"}
#: Card of a master dark: the mean 1/t of its darks (see `Master.inv_exptime`).
DARK_INV_EXPTIME_KEY = "DKINVEXP"


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
    if params.multi_amplifier:
        # the raw's single gain, read noise and saturation cards (Kast's GAIN = 1 is a gain index)
        # would contradict the per-amplifier values this product was made with (GAINi, RDNOISi)
        for key in (*GAIN_KEYS, *READ_NOISE_KEYS, *SATURATION_KEYS):
            header.remove(key, ignore_missing=True, remove_all=True)
        # the WCS cards come with the first amplifier's raw HDU: move them to where its pixels
        # land (SAMI's prescan shifts them by 16 binned columns); a mirrored one has no shift
        first = params.layout.amplifiers[0]
        if not (first.flip_x or first.flip_y):
            _shift_wcs(header, first.data.xmin - first.destination.xmin,
                       first.data.ymin - first.destination.ymin)
    else:
        _shift_wcs(header, area.xmin, area.ymin)  # keep a WCS valid across the trim
    unit = params.units.value
    cards = [("BUNIT", unit, f"calibrated counts ({unit})"),
             *_detector_cards(params, stats),
             ("EXPTIME", params.exptime, "[s] exposure time")]
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
    steps = ["overscan" if params.has_overscan else None] + [k for k, _ in masters.items()]
    done = ", ".join(s for s in steps if s) or "no steps"
    header.add_history(f"ccdflow {__version__}: calibrated ({done})")
    if history:
        header.add_history(history)
    return header


def _shift_wcs(header: fits.Header, dx: int, dy: int) -> None:
    """Move ``CRPIX1/2`` for an image whose pixel (0, 0) was the raw pixel (dx, dy)."""
    for axis, offset in (("1", dx), ("2", dy)):
        if f"CRPIX{axis}" in header and offset:
            header[f"CRPIX{axis}"] = header[f"CRPIX{axis}"] - offset


def _detector_cards(params: CalibrationParams, stats: dict) -> list[tuple[str, Any, str]]:
    """Gain, read noise, sections and overscan: of the one amplifier, or numbered per amplifier."""
    method = params.to_dict()["overscan_method"] if params.has_overscan else "none"
    if not params.multi_amplifier:
        cards = [
            ("GAIN", params.gain, "[e-/ADU] gain used for the noise model"),
            ("RDNOISE", params.read_noise, "[e-] read noise used for the noise model"),
            ("IMAGAREA", params.image_area.to_section(), "raw pixels kept (FITS section)"),
            ("OVSCMETH", method, "overscan method"),
            ("OVSCAREA", " ".join(r.to_section() for r in params.overscans) or "none",
             "overscan areas (FITS sections)"),
        ]
        if params.overscans and np.isfinite(stats.get("overscan_level", np.nan)):
            cards.append(("OVSCLVL", round(float(stats["overscan_level"]), 4),
                          "[adu] median overscan level subtracted"))
        if params.saturation is not None:
            cards.append(("SATURATE", params.saturation, "[adu] raw level flagged saturated"))
        return cards
    layout = params.layout
    levels = stats.get("overscan_levels", {})
    cards = [("DETNAME", layout.name, "detector (CCD) calibrated"),
             ("NAMPS", len(layout.amplifiers), "amplifiers assembled"),
             ("CCDSUM", f"{layout.binning[0]} {layout.binning[1]}", "binning (x y)"),
             ("OVSCMETH", method, "overscan method")]
    for i, amp in enumerate(layout.amplifiers, start=1):
        cards += [
            (f"AMPNAM{i}", amp.name, f"amplifier {i}, read from HDU {amp.hdu}"),
            (f"AMPSEC{i}", amp.data.to_section(), "its data in the raw HDU"),
            (f"DETSEC{i}", amp.destination.to_section()
             + (" flipped" if amp.flip_x or amp.flip_y else ""), "its place in this image"),
            (f"GAIN{i}", amp.gain, f"[e-/ADU] {amp.gain_source}"[:46]),
            (f"RDNOIS{i}", amp.read_noise, f"[e-] {amp.read_noise_source}"[:46]),
        ]
        if np.isfinite(levels.get(amp.name, np.nan)):
            cards.append((f"OVSCLV{i}", round(float(levels[amp.name]), 4),
                          "[adu] median overscan level subtracted"))
        if amp.saturation is not None:
            cards.append((f"SATUR{i}", amp.saturation, "[adu] raw level flagged saturated"))
    return cards


def write_calibrated(path: str | os.PathLike, *, image: np.ndarray, error: np.ndarray,
                     header: fits.Header, mask: np.ndarray | None = None,
                     overwrite: bool = True, sha1: Any = None,
                     raw_cards_checked: bool = False) -> Path:
    """Write the calibrated image (primary), ``ERROR`` and optional ``MASK`` extensions atomically.

    Parameters
    ----------
    path : str or path-like
        Output file; written through a temporary file and renamed, never half-written.
    image, error : numpy.ndarray
        float32 calibrated image and per-pixel error. Byte-swapped in place while they are
        written and restored before returning: do not read them from another thread meanwhile.
    header : astropy.io.fits.Header
        Primary header (see `calibrated_header`).
    mask : numpy.ndarray, optional
        uint8 flags for a ``MASK`` extension.
    overwrite : bool
        Whether an existing file may be replaced.
    sha1 : hashlib object, optional
        Fed the file's bytes as they are written (its digest without reading it back).
    raw_cards_checked : bool
        The raw cards in ``header`` are all of the plain forms astropy writes as they are
        (`ccdflow.io.fits_plain.simple_cards`), and the others were made by `calibrated_header`:
        astropy's verification of every card on output is skipped (about 1 ms a light). Otherwise
        it fixes what it can (a lowercase keyword is written in upper case, as FITS requires).

    Returns
    -------
    pathlib.Path
    """
    # FITS is big-endian: a writeable native array is swapped in place while it is written and
    # swapped back, so no big-endian copy of the frame is held (32 MiB at 2048^2, 128 at 4096^2)
    image = np.asarray(image, dtype=np.float32)
    extensions = [(np.asarray(error, dtype=np.float32), "ERROR",
                   (("BUNIT", header.get("BUNIT", "adu"), "1-sigma error of the primary image"),))]
    if mask is not None:
        extensions.append((np.asarray(mask, dtype=MASK_DTYPE), "MASK",
                           tuple(mask_header(dtype=MASK_DTYPE))))
    if raw_cards_checked and plain_header(header) and not isinstance(as_location(path), RemotePath):
        # the same bytes as astropy's writeto, without building its HDUs (fits_write)
        return write_stream(path, lambda out: write_image_hdus(out, header, image, extensions),
                            overwrite=overwrite, sha1=sha1)
    hdus = [fits.PrimaryHDU(image, header=header)]
    for array, name, cards in extensions:
        hdus.append(fits.ImageHDU(array, name=name))
        for key, value, comment in cards:
            hdus[-1].header[key] = (value, comment)
    return write_fits(path, fits.HDUList(hdus), overwrite=overwrite, sha1=sha1,
                      output_verify="ignore" if raw_cards_checked else "silentfix")


# cards of one calibrated frame that say nothing true about a combination of frames
_PER_FRAME = ("NFLAGGED", "NERRUNDF", "OVSCLVL", "CHECKSUM", "DATASUM", "HISTORY", "NCOMBINE")


def add_combine_cards(header: fits.Header, params: dict) -> None:
    """Record ``CombineParams.to_dict()`` as ``CMETHOD``, ``CCLIP``, ``CSIGLO``, ... cards.

    The one convention for combine provenance: masters, stacks and `ImageReduction` images.

    Examples
    --------
    >>> header = fits.Header()
    >>> add_combine_cards(header, {"method": "median", "sigma_lower": 5.0, "scale": None})
    >>> header["CMETHOD"], header["CSIGLO"], header["CSCALE"]
    ('median', 5.0, 'none')
    """
    for field, key in _COMBINE_KEYS.items():
        if field in params:
            value = params[field]
            header[key] = ("none" if value is None else value, f"combine {field}")


def stack_header(first: fits.Header, *, exptimes: list[float], params: dict,
                 inputs: list[str]) -> fits.Header:
    """The header of combined calibrated frames, from the first one's calibrated header.

    That header already describes the image area (its WCS shifted by `calibrated_header`, no
    section cards), so the combination keeps a valid WCS. Per-frame statistics and history are
    dropped; the count, exposures, combine parameters and inputs are added.

    Parameters
    ----------
    first : astropy.io.fits.Header
        The first calibrated frame's header.
    exptimes : list of float
        Exposure time of every input, s.
    params : dict
        ``CombineParams.to_dict()``.
    inputs : list of str
        The input raw files (recorded as ``INPUTnnn`` cards).

    Returns
    -------
    astropy.io.fits.Header

    Examples
    --------
    >>> first = fits.Header([("CRPIX1", 90.0), ("EXPTIME", 60.0), ("NFLAGGED", 3)])
    >>> header = stack_header(first, exptimes=[60.0, 120.0], params={"method": "mean"},
    ...                       inputs=["raw/a.fits", "raw/b.fits"])
    >>> header["CRPIX1"], header["EXPTOTAL"], header["CMETHOD"], header["INPUT002"], "NFLAGGED" in header
    (90.0, 180.0, 'mean', 'b.fits', False)
    """
    header = first.copy(strip=True)
    for key in _PER_FRAME:
        header.remove(key, ignore_missing=True, remove_all=True)
    header["NCOMBINE"] = (len(inputs), "calibrated frames combined")
    header["EXPTOTAL"] = (float(np.sum(exptimes)), "[s] total exposure of the inputs")
    header["EXPMEAN"] = (float(np.mean(exptimes)), "[s] mean exposure of the inputs")
    add_combine_cards(header, params)
    header["CCDFLVER"] = (__version__, "ccdflow version")
    for i, name in enumerate(inputs, start=1):
        header[f"INPUT{i:03d}" if i < 1000 else "HISTORY"] = header_text(Path(name).name)
    return header


def master_header(*, kind: str, inputs: list[str], params: CombineParams, n_frames: int,
                  rejected_fraction: float, exptime: float | None, filter: str = "",
                  extra: dict | None = None, units: str = "adu") -> fits.Header:
    """The provenance header of a master: type, inputs, combine parameters, rejected fraction.

    Parameters
    ----------
    kind : str
        ``bias``, ``dark`` or ``flat``.
    inputs : list of str
        The input files (recorded as ``INPUTnnn`` cards).
    params : CombineParams
        How the master was combined: every field, and the clip and error formula that ran
        (``CCLIPRUN``, ``CERRRUN``).
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
    units : str
        ``BUNIT`` of a bias or dark (``"adu"`` or ``"electron"``: the frames' calibration
        units); a flat is unitless.

    Returns
    -------
    astropy.io.fits.Header
    """
    header = fits.Header()
    header["IMAGETYP"] = (f"MASTER {kind.upper()}", "ccdflow master frame")
    # a dark rate is stored as the ADU of a 1 s exposure (EXPTIME = 1), so that tools scaling a
    # dark by EXPTIME (ccdproc.subtract_dark) subtract ADU from ADU
    header["BUNIT"] = ("" if kind == "flat" else units)
    if exptime is not None:
        header["EXPTIME"] = (exptime, "[s] exposure the values correspond to")
    if filter:
        header["FILTER"] = filter
    header["NCOMBINE"] = (n_frames, "frames combined")
    header["REJFRAC"] = (round(float(rejected_fraction), 6), "fraction of input values rejected")
    add_combine_cards(header, params.to_dict())
    header["CCLIPRUN"] = (params.effective_clip.value, "combine clip that ran")
    header["CERRRUN"] = (params.effective_uncertainty.value, "combine error formula used")
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


def file_sha1(path: str | os.PathLike | RemotePath) -> str:
    """SHA-1 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha1(usedforsecurity=False)
    with open_binary(path) as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_extensions(path: str | os.PathLike, *, shape: tuple[int, ...]
                    ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A product's per-pixel error and mask extensions, when present.

    The error is ccdflow's ``ERROR`` or ccdproc's ``UNCERT`` (a standard deviation, or a variance
    or inverse variance as its ``UTYPE`` card says); the mask is ``MASK`` as stored (nonzero =
    flagged).

    Returns
    -------
    (numpy.ndarray or None, numpy.ndarray or None)
        float32 error and the mask.

    Raises
    ------
    FrameReadError
        If an extension cannot be read or its shape differs from ``shape``.
    """
    source = path if isinstance(path, RemotePath) else str(path)
    path = str(path)
    error = mask = None
    try:
        with open_fits(source, memmap=False) as hdul:
            name = next((n for n in ("ERROR", "UNCERT") if n in hdul), None)
            if name is not None:
                error = np.array(hdul[name].data, dtype=np.float64)
                utype = str(hdul[name].header.get("UTYPE", "StdDevUncertainty"))
                if utype.startswith("Variance"):
                    error = np.sqrt(error)
                elif utype.startswith("InverseVariance"):
                    with np.errstate(divide="ignore"):
                        error = 1.0 / np.sqrt(error)
                error = error.astype(np.float32)
            if "MASK" in hdul:
                mask = np.array(hdul["MASK"].data)
    except (OSError, ValueError, TypeError) as err:
        raise FrameReadError(path, f"cannot read the ERROR/UNCERT or MASK extension: {err}") from err
    for label, array in (("error", error), ("MASK", mask)):
        if array is not None and array.shape != tuple(shape):
            raise FrameReadError(path, f"{label} shape {array.shape} differs from data {tuple(shape)}")
    return error, mask


def read_master(path: str | os.PathLike, *, hdu: int = 0) -> Master:
    """Read a master frame (any FITS image; error and mask extensions are used when present).

    Parameters
    ----------
    path : str or path-like
        The master's file: ccdflow's (``ERROR``) or ccdproc's (``UNCERT``, ``MASK``).
    hdu : int
        The HDU holding the master's data.

    Returns
    -------
    Master
        Data and error as float32 (masked pixels NaN: they have no value), ``exptime`` from the
        header (``None`` when absent), a master dark's ``inv_exptime`` from ``DKINVEXP``, file
        name and SHA-1.

    Raises
    ------
    FrameReadError
        If the file cannot be read or an extension has another shape.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "bias.fits"
    >>> fits.HDUList([fits.PrimaryHDU(np.full((2, 2), 300.0, np.float32)),
    ...               fits.ImageHDU(np.array([[0, 1], [0, 0]], np.uint8), name="MASK")]).writeto(path)
    >>> read_master(path).data.tolist()
    [[300.0, nan], [300.0, 300.0]]
    """
    path = path if isinstance(path, RemotePath) else str(path)
    index, header = read_header(path, hdu=hdu)
    data = read_rows(path, index, slice(None))
    error, mask = read_extensions(path, shape=data.shape)
    if mask is not None:
        data[mask != 0] = np.nan
    inv_exptime = header.get(DARK_INV_EXPTIME_KEY)
    return Master(
        data=data,
        error=error,
        exptime=find_exposure_time(header, path=str(path)),
        inv_exptime=float(inv_exptime) if isinstance(inv_exptime, int | float) else None,
        name=as_location(path).name,
        sha1=file_sha1(path),
        header=header,
    )
