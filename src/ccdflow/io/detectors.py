"""Detectors from FITS headers and from YAML instrument files.

Headers, two conventions:

- one amplifier per image extension (SAMI, GMOS, ...): ``DATASEC``, ``BIASSEC``, ``DETSEC`` (else
  ``CCDSEC``), ``CCDSUM``, ``GAIN``, ``RDNOISE``, ``SATURATE``. Extensions are grouped into CCDs by
  ``CCDNAME`` (all in one detector when it is absent or ``'unavail'``): several CCDs in one file give
  several detectors.
- lettered keys in one image (DECam style): ``DATASECA``, ``BIASSECA``, ``DETSECA`` (else
  ``CCDSECA``), ``GAINA``, ``RDNOISEA``, ``SATURATA``, then ``...B`` and so on; every image HDU with
  such keys is one detector.

``DETSEC`` is in unbinned detector pixels: an amplifier lands at ``(DETSEC - origin) / CCDSUM`` where
the origin is the detector's smallest ``DETSEC`` corner. A section given reversed (``[2048:1025,...]``)
means the amplifier's data are mirrored along that axis (in ``DATASEC`` or ``DETSEC``, not both).
A header without any of these keys is one amplifier: ``DATASEC`` (else the whole image), ``BIASSEC``.

A value the header lacks or cannot read as a number (SAMI's ``GAIN = 'unavail'``) comes from the
`Fallbacks` (recorded as ``"config"``, with the header value when there was one) or else from the
defaults (1 e-/ADU, 0 e-, no saturation; recorded as ``"default"``).

Instrument file (YAML), for layouts the header does not carry (see ``configs/instruments/``)::

    name: kast_blue            # detector name
    shape: [350, 2048]         # assembled (rows, columns), binned pixels
    binning: [1, 1]            # optional, (x, y)
    gain: 1.2                  # optional defaults for every amplifier: e-/ADU,
    read_noise: 3.7            # electrons,
    saturation: 65535          # ADU
    amplifiers:
      - name: "1"
        hdu: 0                 # optional, default 0
        data: "[1:1024,1:350]" # FITS section (1-based inclusive) or {xmin, xmax, ymin, ymax}
        overscans: ["[2050:2080,1:350]"]
        parallel_overscans: [] # optional
        destination: "[1:1024,1:350]"
        flip_x: false          # optional
        flip_y: false          # optional
        gain: 1.2              # optional, overrides the file-wide value

Every value written in the file is recorded as coming from ``"instrument file"``.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

from ccdflow.array.detector import Amplifier, Detector
from ccdflow.array.params import parse_number
from ccdflow.array.sections import Region
from ccdflow.errors import ConfigError, FrameError, FrameReadError
from ccdflow.io.fits import Frame, open_frame
from ccdflow.io.headers import UNSET_TEXT, exposure_time
from ccdflow.io.location import as_location, open_fits

__all__ = ["DetectorImages", "Fallbacks", "assembled_header", "detectors_from_hdul",
           "header_detectors", "load_instrument", "open_detector_frame", "parse_binning",
           "parse_section", "pick_detector", "read_detectors"]

_SECTION = re.compile(r"^\[\s*(\d+)\s*:\s*(\d+)\s*,\s*(\d+)\s*:\s*(\d+)\s*\]$", re.ASCII)
_DEFAULTS = {"gain": 1.0, "read_noise": 0.0, "saturation": None}


@dataclass(frozen=True, kw_only=True)
class Fallbacks:
    """Values used where a header lacks a gain, read noise or saturation, or cannot be read.

    Parameters
    ----------
    gain : float, optional
        e-/ADU.
    read_noise : float, optional
        Electrons.
    saturation : float, optional
        ADU.

    Examples
    --------
    >>> Fallbacks(gain=1.5).gain
    1.5
    """

    gain: float | None = None
    read_noise: float | None = None
    saturation: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "gain", parse_number(self.gain, key="gain", strict=True,
                                                      allow_none=True))
        object.__setattr__(self, "read_noise", parse_number(self.read_noise, key="read_noise",
                                                            allow_none=True))
        object.__setattr__(self, "saturation", parse_number(self.saturation, key="saturation",
                                                            strict=True, allow_none=True))


def parse_section(text: Any, *, key: str = "section") -> tuple[Region, bool, bool]:
    """Read a FITS section that may be given reversed.

    Parameters
    ----------
    text : str
        ``"[x1:x2,y1:y2]"``, 1-based inclusive; ``x1 > x2`` (or ``y1 > y2``) means reversed.
    key : str
        Header key or config key named in errors.

    Returns
    -------
    region : Region
        The pixels covered, 0-based half-open.
    flip_x, flip_y : bool
        Whether the section runs backwards along x / y.

    Raises
    ------
    ConfigError
        Naming `key` when the text is not a section.

    Examples
    --------
    >>> region, flip_x, flip_y = parse_section("[2048:1025,1:2056]", key="DETSEC")
    >>> region.xmin, region.xmax, flip_x, flip_y
    (1024, 2048, True, False)
    """
    match = _SECTION.match(str(text).strip()) if isinstance(text, str) else None
    if match is None:
        raise ConfigError(key, f"not a FITS section string: {text!r}")
    x1, x2, y1, y2 = (int(v) for v in match.groups())
    if min(x1, x2, y1, y2) < 1:
        raise ConfigError(key, f"FITS sections are 1-based: {text!r}")
    region = Region(xmin=min(x1, x2) - 1, xmax=max(x1, x2), ymin=min(y1, y2) - 1, ymax=max(y1, y2))
    return region, x1 > x2, y1 > y2


def parse_binning(value: Any, *, key: str = "CCDSUM") -> tuple[int, int]:
    """Read ``CCDSUM`` (``"2 2"``, x first) as ``(x, y)``; a missing value means ``(1, 1)``.

    Examples
    --------
    >>> parse_binning("4 2")
    (4, 2)
    """
    if value is None:
        return (1, 1)
    parts = str(value).split()
    if len(parts) != 2 or not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise ConfigError(key, f"expected two positive integers 'x y', got {value!r}")
    return (int(parts[0]), int(parts[1]))


def _number(header: fits.Header, key: str, name: str, fallbacks: Fallbacks) -> tuple[Any, str]:
    """A value and its provenance: the header's when it is a finite number, else the fallback."""
    raw = header.get(key)
    if isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw):
        return float(raw), f"header {key}"
    if isinstance(raw, str) and raw.strip().lower() not in UNSET_TEXT:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            return value, f"header {key}"
    why = "" if raw is None else f" (header {key}={raw!r})"
    given = getattr(fallbacks, name)
    if given is not None:
        return given, f"config{why}"
    return _DEFAULTS[name], f"default{why}"


@dataclass(frozen=True)
class _Entry:
    """One amplifier as read from a header, before it is placed in its detector."""

    name: str
    hdu: int
    data: Region
    data_flip: tuple[bool, bool]
    overscans: tuple[Region, ...]
    place: Region | None  # DETSEC/CCDSEC, unbinned
    place_flip: tuple[bool, bool]
    values: dict[str, Any]


def _entry(header: fits.Header, *, hdu: int, name: str, suffix: str, fallbacks: Fallbacks,
           shape: tuple[int, int]) -> _Entry:
    datasec = header.get(f"DATASEC{suffix}")
    if datasec is None:
        data, dflip = Region(xmin=0, xmax=shape[1], ymin=0, ymax=shape[0]), (False, False)
    else:
        data, *dflip = parse_section(datasec, key=f"DATASEC{suffix}")
    overscans = ()
    if header.get(f"BIASSEC{suffix}") is not None:
        overscans = (parse_section(header[f"BIASSEC{suffix}"], key=f"BIASSEC{suffix}")[0],)
    place, pflip = None, (False, False)
    for key in (f"DETSEC{suffix}", f"CCDSEC{suffix}"):
        if header.get(key) is not None:
            place, *pflip = parse_section(header[key], key=key)
            break
    keys = {"gain": f"GAIN{suffix}", "read_noise": f"RDNOISE{suffix}",
            "saturation": f"SATURAT{suffix}" if suffix else "SATURATE"}
    values = {}
    for value_name, key in keys.items():
        values[value_name], values[f"{value_name}_source"] = _number(header, key, value_name,
                                                                    fallbacks)
    return _Entry(name=name, hdu=hdu, data=data, data_flip=tuple(dflip), overscans=overscans,
                  place=place, place_flip=tuple(pflip), values=values)


def _detector(name: str, entries: list[_Entry], binning: tuple[int, int]) -> Detector:
    """Place the entries: destination = (DETSEC - origin) / binning, or the data at the origin."""
    bx, by = binning
    placed = [e.place for e in entries if e.place is not None]
    if placed and len(placed) != len(entries):
        raise ConfigError("DETSEC", "some amplifiers give DETSEC/CCDSEC and others do not")
    x0 = min((p.xmin for p in placed), default=0)
    y0 = min((p.ymin for p in placed), default=0)
    amps = []
    for e in entries:
        if e.place is None:
            dest = Region(xmin=0, xmax=e.data.shape[1], ymin=0, ymax=e.data.shape[0])
        else:
            p = e.place
            bounds = (p.xmin - x0, p.xmax - x0, p.ymin - y0, p.ymax - y0)
            if any(b % f for b, f in zip(bounds, (bx, bx, by, by), strict=True)):
                raise ConfigError("DETSEC", f"{p.to_section()} of amplifier {e.name} is not a "
                                  f"whole number of {bx}x{by} binned pixels")
            dest = Region(xmin=bounds[0] // bx, xmax=bounds[1] // bx,
                          ymin=bounds[2] // by, ymax=bounds[3] // by)
        amps.append(Amplifier(
            name=e.name, hdu=e.hdu, data=e.data, overscans=e.overscans, destination=dest,
            flip_x=e.data_flip[0] != e.place_flip[0], flip_y=e.data_flip[1] != e.place_flip[1],
            **e.values))
    shape = (max(a.destination.ymax for a in amps), max(a.destination.xmax for a in amps))
    return Detector(name=name, amplifiers=tuple(amps), shape=shape, binning=binning)


def _label(header: fits.Header, key: str) -> str | None:
    value = header.get(key)
    if value is None or str(value).strip().lower() in UNSET_TEXT:
        return None
    return str(value).strip()


def _image_hdus(hdul: fits.HDUList) -> list[tuple[int, fits.Header, tuple[int, int]]]:
    out = []
    for index, hdu in enumerate(hdul):
        header = hdu.header
        if header.get("NAXIS") == 2 and not isinstance(hdu, fits.BinTableHDU | fits.TableHDU):
            out.append((index, header, (int(header["NAXIS2"]), int(header["NAXIS1"]))))
    return out


def _lettered(index: int, header: fits.Header, shape: tuple[int, int], primary: fits.Header,
              fallbacks: Fallbacks) -> Detector:
    letters = sorted(k[-1] for k in header if re.fullmatch(r"DATASEC[A-Z]", k))
    entries = [_entry(header, hdu=index, name=letter, suffix=letter, fallbacks=fallbacks,
                      shape=shape) for letter in letters]
    name = (_label(header, "CCDNAME") or _label(header, "EXTNAME") or _label(primary, "DETECTOR")
            or f"hdu{index}")
    return _detector(name, entries, parse_binning(header.get("CCDSUM")))


def detectors_from_hdul(hdul: fits.HDUList, *, path: str | os.PathLike = "<memory>",
                        fallbacks: Fallbacks = Fallbacks()) -> list[Detector]:
    """Every detector described by the headers of an open FITS file.

    Parameters
    ----------
    hdul : astropy.io.fits.HDUList
        The file's HDUs (only headers are read).
    path : str or PathLike
        Named in errors.
    fallbacks : Fallbacks
        Values for what the headers lack or cannot read.

    Returns
    -------
    list of Detector
        One per CCD (``CCDNAME`` group, or image HDU with lettered keys), in file order.

    Raises
    ------
    FrameError
        Naming the file (and HDU) when a section, ``CCDSUM`` or the layout is invalid, or the file
        has no 2-D image.

    Examples
    --------
    >>> import numpy as np
    >>> header = fits.Header({"DATASECA": "[1:4,1:2]", "DETSECA": "[1:4,1:2]",
    ...                       "DATASECB": "[5:8,1:2]", "DETSECB": "[8:5,1:2]", "GAINA": 1.5})
    >>> det, = detectors_from_hdul(fits.HDUList([fits.PrimaryHDU(np.zeros((2, 8)), header)]))
    >>> [(a.name, a.flip_x, a.gain, a.gain_source) for a in det.amplifiers]
    [('A', False, 1.5, 'header GAINA'), ('B', True, 1.0, 'default')]
    """
    images = _image_hdus(hdul)
    if not images:
        raise FrameError(path, "no 2-D image HDU to describe")
    primary = hdul[0].header
    detectors, groups = [], {}
    index = images[0][0]
    try:
        for index, header, shape in images:
            if any(re.fullmatch(r"DATASEC[A-Z]", k) for k in header):
                detectors.append(_lettered(index, header, shape, primary, fallbacks))
                continue
            ccd = _label(header, "CCDNAME") or _label(primary, "DETECTOR") or "detector"
            name = _label(header, "EXTNAME") or _label(header, "AMPNAME") or str(index)
            groups.setdefault(ccd, []).append(
                (_entry(header, hdu=index, name=name, suffix="", fallbacks=fallbacks, shape=shape),
                 parse_binning(header.get("CCDSUM"))))
        for ccd, members in groups.items():
            binnings = {b for _, b in members}
            if len(binnings) != 1:
                raise ConfigError("CCDSUM", f"amplifiers of {ccd} disagree: {sorted(binnings)}")
            index = members[0][0].hdu
            detectors.append(_detector(ccd, [e for e, _ in members], binnings.pop()))
    except ConfigError as err:
        raise FrameError(path, str(err), hdu=index) from None
    return detectors


def read_detectors(path: str | os.PathLike, *, fallbacks: Fallbacks = Fallbacks()) -> list[Detector]:
    """Open a FITS file and return `detectors_from_hdul` of it.

    Raises
    ------
    FrameReadError
        When the file cannot be opened.

    Examples
    --------
    >>> read_detectors("sami_bias_20170331_4x4.fits.gz", fallbacks=Fallbacks(gain=2.1))  # doctest: +SKIP
    """
    try:
        with open_fits(path) as hdul:
            return detectors_from_hdul(hdul, path=path, fallbacks=fallbacks)
    except OSError as err:
        raise FrameReadError(path, f"cannot read: {err}") from err


#: Cards of an amplifier's HDU that describe its layout, not the exposure: never copied into the
#: header of an assembled product.
_AMPLIFIER_CARDS = ("DATASEC", "BIASSEC", "TRIMSEC", "DETSEC", "CCDSEC", "AMPSEC", "EXTNAME",
                    "EXTVER", "GAIN", "RDNOISE", "SATURATE", "INHERIT")


def _is_multi(detector: Detector, hdu: int) -> bool:
    return len(detector.amplifiers) > 1 or detector.hdus != (hdu,)


def header_detectors(path: str | os.PathLike, *, hdu: int = 0) -> list[Detector] | None:
    """The detectors a file's headers describe, when that is more than one plain image.

    Only the primary header is read unless it points further: lettered sections in it
    (``DATASECA``) describe its amplifiers; an empty primary followed by image extensions makes
    every extension's header read. A plain one-image frame gives ``None`` (its sections come from
    the settings, as for any single-amplifier frame).

    Parameters
    ----------
    path : str or PathLike
        The raw file.
    hdu : int
        The HDU a single-image frame is read from.

    Returns
    -------
    list of Detector or None
        One per CCD, each with several amplifiers or HDUs; ``None`` for a plain frame.

    Raises
    ------
    FrameReadError
        The file cannot be read.
    FrameError
        A section, ``CCDSUM`` or the layout is invalid.

    Examples
    --------
    >>> header_detectors("sami_bias_20170331_4x4.fits.gz")[0].shape  # doctest: +SKIP
    (514, 512)
    """
    try:
        # a damaged file (or HDU, read when first reached) is named by the frame
        # reader, which checks it fully
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyUserWarning)
            hdul = open_fits(path)
            with hdul:
                try:
                    header = hdul[hdu].header
                except IndexError:
                    return None  # opening the frame says the HDU is missing
                lettered = any(re.fullmatch(r"DATASEC[A-Z]", k) for k in header)
                empty_primary = hdu == 0 and hdul[0].header.get("NAXIS", 0) == 0
                if not lettered and not empty_primary:
                    return None
                if lettered:
                    shape = (int(header.get("NAXIS2", 0)), int(header.get("NAXIS1", 0)))
                    detectors = [_lettered(hdu, header, shape, hdul[0].header, Fallbacks())]
                else:
                    images = [h for h in hdul[1:] if isinstance(h, fits.ImageHDU)]
                    if len(images) < 2 and not any(re.fullmatch(r"DATASEC[A-Z]", k)
                                                   for h in images for k in h.header):
                        return None  # one image extension: a plain frame (fpack and the like)
                    detectors = detectors_from_hdul(hdul, path=path)
    except AstropyUserWarning:
        # a damaged header parsed lazily, with warnings escalated to errors: the frame reader,
        # which checks the file fully, names the damage
        return None
    except OSError as err:
        raise FrameReadError(path, f"cannot read: {err}") from err
    except ConfigError as err:
        raise FrameError(path, str(err), hdu=hdu) from None
    multi = [d for d in detectors if _is_multi(d, hdu)]
    return multi or None


def pick_detector(detectors: list[Detector], *, ccd: str | None, path: str) -> Detector:
    """The detector called `ccd`, or the only one; `FrameError` naming the choices otherwise."""
    names = [d.name for d in detectors]
    if ccd is None and len(detectors) == 1:
        return detectors[0]
    for det in detectors:
        if det.name == ccd:
            return det
    raise FrameError(path, f"holds the detectors {names}; say which one (ccd=...)"
                     if ccd is None else f"has no detector {ccd!r}; it holds {names}")


def assembled_header(path: str | os.PathLike, detector: Detector) -> fits.Header:
    """The header describing an assembled frame.

    The primary's cards, then the first amplifier HDU's cards the primary lacks (its own layout
    cards left out).

    Examples
    --------
    >>> assembled_header("sami_bias_20170331_4x4.fits.gz", det)["OBSTYPE"]  # doctest: +SKIP
    'ZERO'
    """
    try:
        with open_fits(path) as hdul:
            header = hdul[0].header.copy()
            first = hdul[detector.amplifiers[0].hdu].header
            for card in first.cards:
                if card.keyword and card.keyword not in header \
                        and card.keyword not in _AMPLIFIER_CARDS and card.keyword not in ("COMMENT",
                                                                                        "HISTORY"):
                    header.append(card)
            for key in ("CCDSUM", "CCDNAME"):
                if key in first:
                    header[key] = first[key]
    except OSError as err:
        raise FrameReadError(path, f"cannot read: {err}") from err
    return header


@dataclass(frozen=True)
class DetectorImages:
    """A raw frame read through a detector: its header, exposure and each HDU's lazy image.

    Attributes
    ----------
    frame : Frame
        The header of the assembled frame (`assembled_header`), its exposure time, the path, and
        the first HDU's pixels.
    images : dict
        HDU index -> lazy float32 image, every HDU the detector reads.
    """

    frame: Frame
    images: dict[int | str, Any]

    @property
    def shapes(self) -> dict[int | str, tuple[int, int]]:
        """Each HDU's (rows, columns)."""
        return {h: tuple(a.shape) for h, a in self.images.items()}


def open_detector_frame(path: str | os.PathLike, detector: Detector, *,
                        exptime: float | None = None) -> DetectorImages:
    """Open every HDU a detector reads from one raw file, lazily.

    Examples
    --------
    >>> det = header_detectors("sami_bias_20170331_4x4.fits.gz")[0]  # doctest: +SKIP
    >>> open_detector_frame("sami_bias_20170331_4x4.fits.gz", det).shapes[1]  # doctest: +SKIP
    (514, 544)
    """
    images = {h: open_frame(path, hdu=h, exptime=exptime if exptime is not None else 0.0).data
              for h in detector.hdus}
    header = assembled_header(path, detector)
    t = exptime if exptime is not None else exposure_time(header, path=str(path))
    frame = Frame(data=images[detector.hdus[0]], header=header, path=as_location(path),
                  hdu=detector.hdus[0] if isinstance(detector.hdus[0], int) else 0, exptime=t)
    return DetectorImages(frame=frame, images=images)


def _instrument_amp(raw: Any, shared: Mapping[str, Any], *, key: str) -> Amplifier:
    if not isinstance(raw, Mapping):
        raise ConfigError(key, f"expected a mapping, got {type(raw).__name__}")
    raw = dict(raw)
    sources = [k for k in raw if k.endswith("_source")]
    if sources:
        raise ConfigError(f"{key}.{sources[0]}", "sources are set by the loader, not the file")
    for name in ("gain", "read_noise", "saturation"):
        if name in raw or name in shared:
            raw.setdefault(name, shared.get(name))
            raw[f"{name}_source"] = "instrument file"
    return Amplifier.from_dict(raw, key=key)


def load_instrument(path: str | os.PathLike) -> Detector:
    """Read a YAML instrument file (format in the module docstring) into a `Detector`.

    Raises
    ------
    ConfigError
        Naming the file and key when the file cannot be read or a value is invalid.

    Examples
    --------
    >>> load_instrument("configs/instruments/kast_blue.yaml").amplifiers[1].gain  # doctest: +SKIP
    1.2
    """
    try:
        with open(path) as stream:
            doc = yaml.safe_load(stream)
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(str(path), f"cannot read instrument file: {err}") from err
    try:
        if not isinstance(doc, Mapping):
            raise ConfigError("instrument", "expected a mapping at the top level")
        doc = dict(doc)
        shared = {k: doc.pop(k) for k in ("gain", "read_noise", "saturation") if k in doc}
        amps = doc.get("amplifiers")
        if not isinstance(amps, list):
            raise ConfigError("amplifiers", "expected a list of amplifiers")
        doc["amplifiers"] = [_instrument_amp(a, shared, key=f"amplifiers[{i}]").to_dict()
                             for i, a in enumerate(amps)]
        return Detector.from_dict(doc, key="instrument")
    except ConfigError as err:
        raise ConfigError(f"{path}: {err.key}", err.reason) from None
